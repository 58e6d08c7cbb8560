"""A destination as the API takes it: control_plane.destination_spec, every field checked (no I/O)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane.destination_spec import MASK, Destination, masked, parse
from phoenix_common.problems import Problem

SECRET = "Bearer s3cr3t-value"


def pem_certificate() -> str:
    """A freshly made self-signed CA certificate, PEM encoded."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phoenix-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def body(kind: str = "prometheus_remote_write", **overrides: Any) -> dict[str, Any]:
    endpoints = {
        "otlp_grpc": "collector.example.com:4317",
        "otlp_http": "https://otlp.example.com",
        "prometheus_remote_write": "https://mimir.example.com/api/v1/push",
    }
    out: dict[str, Any] = {"name": "prod-mimir", "type": kind, "endpoint": endpoints[kind]}
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def rejected(payload: dict[str, Any], field: str, name: str | None = None) -> Problem:
    """The 400 problem `parse` raises for `payload`, after checking it names `field`."""
    with pytest.raises(Problem) as caught:
        parse(payload, name=name)
    problem = caught.value
    assert problem.status == 400, problem.detail
    assert problem.extra.get("field") == field, problem.detail
    return problem


# -- accepted bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "endpoint", "compression"),
    [
        ("otlp_grpc", "collector.example.com:4317", "gzip"),
        ("otlp_grpc", "10.0.0.7:4317", "gzip"),
        ("otlp_grpc", "[2001:db8::1]:4317", "gzip"),
        ("otlp_grpc", "https://otlp.example.com:4317", "gzip"),
        ("otlp_http", "https://otlp.example.com", "gzip"),
        ("otlp_http", "http://127.0.0.1:4318/prefix", "gzip"),
        ("prometheus_remote_write", "https://mimir.example.com/api/v1/push", "snappy"),
    ],
)
def test_each_type_is_accepted_with_its_defaults(kind: str, endpoint: str, compression: str) -> None:
    destination = parse(body(kind, endpoint=endpoint))
    assert destination == Destination(
        name="prod-mimir",
        type=kind,
        endpoint=endpoint,
        headers=None,
        tls={},
        compression=compression,
        timeout_seconds=10.0,
    )


def test_every_field_given_is_kept() -> None:
    pem = pem_certificate()
    destination = parse(
        body(
            "otlp_grpc",
            headers={"Authorization": SECRET, "X-Scope-OrgID": "team-a"},
            tls={"insecure": False, "insecure_skip_verify": True, "ca_pem": pem},
            compression="zstd",
            timeout="30s",
        )
    )
    assert destination.headers == {"Authorization": SECRET, "X-Scope-OrgID": "team-a"}
    assert destination.tls == {"insecure": False, "insecure_skip_verify": True, "ca_pem": pem}
    assert (destination.compression, destination.timeout_seconds) == ("zstd", 30.0)


def test_plain_text_grpc_may_be_insecure() -> None:
    assert parse(body("otlp_grpc", tls={"insecure": True})).tls == {"insecure": True}


@pytest.mark.parametrize(("timeout", "seconds"), [("1s", 1.0), ("5m", 300.0), (2.5, 2.5), (60, 60.0)])
def test_a_timeout_is_a_duration_or_seconds(timeout: Any, seconds: float) -> None:
    assert parse(body(timeout=timeout)).timeout_seconds == seconds


@pytest.mark.parametrize("given", [None, "prod-mimir"])
def test_a_put_may_leave_the_name_out_or_repeat_it(given: str | None) -> None:
    payload = body(name=given)
    assert ("name" in payload) == (given is not None)
    assert parse(payload, name="prod-mimir").name == "prod-mimir"


def test_a_put_naming_another_destination_is_400() -> None:
    problem = rejected(body(name="other"), "name", name="prod-mimir")
    assert "'prod-mimir'" in problem.detail


def test_header_values_read_back_masked() -> None:
    assert masked(["Authorization", "X-Scope-OrgID"]) == {"Authorization": MASK, "X-Scope-OrgID": MASK}
    assert MASK == "********" and masked([]) == {}


# -- rejected bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (body(name="Prod"), "name"),
        (body(name="-prod"), "name"),
        (body(name="p" * 64), "name"),
        ({"type": "otlp_http", "endpoint": "https://x.example.com"}, "name"),
        (body(type="kafka"), "type"),
        (body(type=None), "type"),
        (body(token="abc"), "token"),
        (body(endpoint=None), "endpoint"),
        (body(endpoint=""), "endpoint"),
        (body(endpoint=42), "endpoint"),
        (body(endpoint="mimir.example.com/api/v1/push"), "endpoint"),
        (body(endpoint="ftp://mimir.example.com/push"), "endpoint"),
        (body(endpoint="https:///push"), "endpoint"),
        (body(endpoint="https://mimir.example.com:99999/push"), "endpoint"),
        (body(endpoint="https://mimir.example.com:port/push"), "endpoint"),
        (body("otlp_http", endpoint="otlp.example.com:4318"), "endpoint"),
        (body("otlp_grpc", endpoint="collector.example.com:0"), "endpoint"),
        (body("otlp_grpc", endpoint="collector.example.com:70000"), "endpoint"),
        (body(endpoint="https://mimir.example.com/push\n"), "endpoint"),
        (body(endpoint="https://${env:HOST}/push"), "endpoint"),
        (body("otlp_grpc", endpoint="${env:HOST}:4317"), "endpoint"),
        (body(compression="gzip"), "compression"),
        (body(compression="none"), "compression"),
        (body("otlp_http", compression="brotli"), "compression"),
        (body(timeout="0.5s"), "timeout"),
        (body(timeout="301s"), "timeout"),
        (body(timeout="6m"), "timeout"),
        (body(timeout=0), "timeout"),
        (body(timeout="soon"), "timeout"),
        (body(timeout=True), "timeout"),
        (body(timeout=-5), "timeout"),
        (body(timeout=10**400), "timeout"),
        (body(endpoint="http://x\ud800y/push"), "endpoint"),
    ],
)
def test_a_bad_field_is_400_naming_it(payload: dict[str, Any], field: str) -> None:
    rejected(payload, field)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://user:password@mimir.example.com/push",
        "https://token@mimir.example.com/push",
        "https://:password@mimir.example.com/push",
    ],
)
def test_credentials_in_the_endpoint_are_refused(endpoint: str) -> None:
    problem = rejected(body(endpoint=endpoint), "endpoint")
    assert "credentials" in problem.detail
    assert "mimir.example.com" not in problem.detail, "the message repeats the endpoint"


def test_an_unknown_field_is_named_with_the_allowed_ones() -> None:
    problem = rejected(body(password="x"), "password")
    assert "allowed" in problem.detail and "endpoint" in problem.detail


@pytest.mark.parametrize(
    ("kind", "tls", "field"),
    [
        ("otlp_http", {"insecure": True}, "tls.insecure"),
        ("prometheus_remote_write", {"insecure": True}, "tls.insecure"),
        ("otlp_grpc", {"insecure": "yes"}, "tls.insecure"),
        ("otlp_grpc", {"insecure_skip_verify": 1}, "tls.insecure_skip_verify"),
        ("otlp_grpc", {"verify": False}, "tls.verify"),
        ("otlp_grpc", "insecure", "tls"),
        ("otlp_http", {"ca_pem": "not a certificate"}, "tls.ca_pem"),
        (
            "otlp_http",
            {"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "tls.ca_pem",
        ),
        ("otlp_http", {"ca_pem": "   "}, "tls.ca_pem"),
        ("otlp_http", {"ca_pem": 7}, "tls.ca_pem"),
    ],
)
def test_bad_tls_is_400_naming_the_field(kind: str, tls: Any, field: str) -> None:
    rejected(body(kind, tls=tls), field)


def test_a_ca_pem_that_would_expand_is_refused() -> None:
    pem = pem_certificate() + "${env:EXTRA}\n"
    rejected(body("otlp_http", tls={"ca_pem": pem}), "tls.ca_pem")


@pytest.mark.parametrize(
    ("headers", "field", "words"),
    [
        ({"Bad Header": "x"}, "headers", "must be an HTTP token"),
        ({"Bad:Header": "x"}, "headers", "must be an HTTP token"),
        ({"": "x"}, "headers", "must be an HTTP token"),
        ({"Authorization": "a", "authorization": "b"}, "headers", "given twice"),
        ({"Content-Type": "application/json"}, "headers", "fixed by the remote write protocol"),
        ({"content-encoding": "gzip"}, "headers", "fixed by the remote write protocol"),
        ({"X-Prometheus-Remote-Write-Version": "2.0"}, "headers", "fixed by the remote write protocol"),
        ({"User-Agent": "me"}, "headers", "fixed by the remote write protocol"),
        ({"Authorization": ""}, "headers.Authorization", "must be a string"),
        ({"Authorization": 7}, "headers.Authorization", "must be a string"),
        ({"Authorization": "x" * 8193}, "headers.Authorization", "must be a string"),
        (["Authorization"], "headers", "must be an object"),
        ({f"X-H{i}": "v" for i in range(33)}, "headers", "at most 32"),
    ],
)
def test_bad_headers_are_400_naming_the_field(headers: Any, field: str, words: str) -> None:
    problem = rejected(body(headers=headers), field)
    assert words in problem.detail


def test_fixed_headers_are_only_fixed_for_remote_write() -> None:
    assert parse(body("otlp_http", headers={"Content-Type": "x"})).headers == {"Content-Type": "x"}


@pytest.mark.parametrize(
    ("value", "character"),
    [
        (f"{SECRET}\r\nX-Evil: 1", "U+000D"),
        (f"{SECRET}\nX-Evil: 1", "U+000A"),
        (f"{SECRET}\x00", "U+0000"),
        (f"{SECRET}\t", "U+0009"),
        (f"{SECRET}\x7f", "U+007F"),
    ],
)
def test_a_header_value_with_a_control_character_is_400_without_the_value(value: str, character: str) -> None:
    problem = rejected(body(headers={"Authorization": value}), "headers.Authorization")
    assert character in problem.detail
    assert SECRET not in problem.detail and "s3cr3t" not in str(problem)


def test_a_header_value_that_would_expand_is_400_without_the_value() -> None:
    problem = rejected(body(headers={"Authorization": "Bearer ${env:TOKEN}"}), "headers.Authorization")
    assert "env:TOKEN" not in problem.detail


def test_a_header_value_with_a_c1_control_character_is_400() -> None:
    rejected(body(headers={"Authorization": f"{SECRET}\x85"}), "headers.Authorization")
