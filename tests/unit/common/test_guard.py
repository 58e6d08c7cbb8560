"""Loopback is an address, not a prefix; Host headers parse as browsers send them."""

from __future__ import annotations

import pytest

from phoenix_common.guard import host_allowed, host_name
from phoenix_common.settings import SettingsError, check_allowed_hosts, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses_and_localhost(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.evil.example", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", "", "::"])
def test_names_that_only_look_loopback_are_not(host: str) -> None:
    assert not is_loopback(host)


def test_host_headers() -> None:
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("phoenix.example.") == "phoenix.example"
    assert host_name("a:notaport") is None
    assert host_allowed("127.0.0.1:8080", ())
    assert not host_allowed("attacker.example:8080", ())
    assert host_allowed("phoenix.internal:8080", {"phoenix.internal"})
    assert not host_allowed("", ())


def test_allowed_hosts_are_names_or_addresses() -> None:
    check_allowed_hosts(("phoenix.example.com", "10.1.2.3", "fd00::1"))
    for bad in ("http://phoenix", "phoenix:8080", "two words", "-lead.example"):
        with pytest.raises(SettingsError, match="allowed_hosts"):
            check_allowed_hosts((bad,))
