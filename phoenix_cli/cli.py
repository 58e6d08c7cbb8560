"""The argument parser and `main`: settings, dispatch, and one-line errors with meaningful exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from phoenix_cli import commands
from phoenix_cli.config import DEFAULT_API_URL, DEFAULT_GENERATOR_URL, resolve
from phoenix_cli.errors import EXIT_OK, EXIT_USAGE, CliError

LOAD_PROFILES = ("realistic", "high-cardinality", "process-churn", "spike", "steady")
PHASES = ("pending", "deploying", "warming_up", "running", "analyzing", "completed", "failed", "stopped")
DESTINATION_TYPES = ("otlp_grpc", "otlp_http", "prometheus_remote_write")
COMPRESSIONS = ("gzip", "zstd", "snappy", "none")
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110)

EPILOG = f"""\
settings (flags win over the environment, the environment over the config file):
  --api-url        PHOENIX_API_URL        api_url        default {DEFAULT_API_URL}
  --token          PHOENIX_API_TOKEN      token          (prefer the variable or file: flags show in ps)
  --generator-url  PHOENIX_GENERATOR_URL  generator_url  default {DEFAULT_GENERATOR_URL}
  config file: --cli-config PATH, else $XDG_CONFIG_HOME/phoenix/cli.yaml (~/.config/phoenix/cli.yaml)

exit codes:
  0  ok
  1  the command ran but the outcome is negative: watch ended failed or stopped, `experiment analysis
     --check` without a final promote verdict, an experiment created but not started
  2  usage error: bad flags, settings or config file
  3  the API answered 4xx (the problem's detail is printed: phoenix: error: <detail>)
  4  the API answered 5xx
  5  the API is unreachable (refused, timed out, unknown host)
"""


def parse_param(text: str) -> tuple[str, Any]:
    """`key=value`, the value read as a YAML scalar or list (k=10, k=true, k=[sshd,postgres])."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    if not raw.strip():
        return key, ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(
            f"the value of {key!r} is not a YAML scalar or list: {raw!r}"
        ) from None
    # Dates and other YAML-only types have no JSON form; such a value is meant as text.
    return key, value if _is_json(value) else raw


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value`. The value is a secret: no message here repeats it (nor the text, which may be one)."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected 'Name: value' (a header name, a colon, the value)")
    if not HEADER_NAME.fullmatch(name):
        # Checked here, not only by the API, so that a misplaced colon ('Bearer s3:cr3t') never sends part of
        # a secret as a name that an error message would then repeat.
        raise argparse.ArgumentTypeError(
            "a header name is letters, digits and !#$%&'*+-.^_`|~ only: expected 'Name: value'"
        )
    if not value:
        raise argparse.ArgumentTypeError(f"the value of header {name!r} is empty (an unset shell variable?)")
    return name, value


def read_pem(path: str) -> str:
    """The text of a PEM file, read now so that a wrong path is a usage error before any call."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path} is not a PEM file (not text)") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _common(suppress: bool, http_timeout: bool = True) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand; after it, they only override when given.

    `http_timeout=False` leaves out --timeout, for a subcommand whose own --timeout means something else.
    """
    default: Any = argparse.SUPPRESS if suppress else None
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument("--api-url", metavar="URL", default=default, help="the control plane")
    group.add_argument("--token", metavar="TOKEN", default=default, help="the API token")
    group.add_argument("--generator-url", metavar="URL", default=default, help="the config generator")
    group.add_argument("--cli-config", metavar="PATH", default=default, help="the CLI's YAML config file")
    if http_timeout:
        group.add_argument(
            "--timeout", metavar="SECONDS", type=_number, default=default, help="HTTP timeout (default 30)"
        )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the API's raw JSON instead of tables",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    parser = argparse.ArgumentParser(
        prog="phoenix",
        parents=[_common(suppress=False)],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operate Phoenix: agents, pipeline deployments and where they ship, A/B experiments and "
        "their cost.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def leaf(
        sub: Any,
        name: str,
        handler: Callable[..., int],
        help_text: str,
        parent: argparse.ArgumentParser = common,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=[parent], help=help_text, description=help_text
        )
        p.set_defaults(handler=handler, parser=p)
        return p

    agents = groups.add_parser("agents", help="the fleet of host agents").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = leaf(agents, "list", commands.agents_list, "list agents with their health")
    p.add_argument("--namespace", metavar="NS")
    p.add_argument("--limit", type=int, metavar="N")
    p = leaf(agents, "show", commands.agents_show, "one agent in detail")
    p.add_argument("host", metavar="HOST")
    p = leaf(
        agents,
        "token",
        commands.agents_token,
        "issue (or rotate) a host's agent token, printed once; --revoke revokes it",
    )
    p.add_argument("host", metavar="HOST")
    p.add_argument("--revoke", action="store_true", help="revoke the host's token instead")
    p.add_argument("--namespace", metavar="NS", help="bind the host to this namespace")
    p = leaf(agents, "move", commands.agents_move, "move a host to another namespace")
    p.add_argument("host", metavar="HOST")
    p.add_argument("namespace", metavar="NS")
    p = leaf(
        agents,
        "delete",
        commands.agents_delete,
        "decommission a host: remove it, its unfinished tasks and its token (stop its agent first)",
    )
    p.add_argument("host", metavar="HOST")

    deploy = groups.add_parser("deploy", help="pipeline deployments").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    p = leaf(deploy, "create", commands.deploy_create, "deploy a template to every agent of a namespace")
    p.add_argument("--name", required=True, metavar="N")
    p.add_argument("--namespace", required=True, metavar="NS")
    p.add_argument("--template", required=True, metavar="T")
    p.add_argument(
        "--param",
        action="append",
        type=parse_param,
        metavar="K=V",
        help="a template parameter, value as YAML (repeatable)",
    )
    p.add_argument("--allow-empty-namespace", action="store_true", help="deploy before any agent joined")
    p.add_argument(
        "--max-failed-hosts",
        type=int,
        metavar="N",
        help="hosts that may fail the rollout before it is failed and the previous one restored "
        "(default 0: any host)",
    )
    shipping = p.add_mutually_exclusive_group()
    shipping.add_argument(
        "--destination",
        metavar="NAME",
        help="the destination to ship to (default: the namespace's current one)",
    )
    shipping.add_argument("--no-destination", action="store_true", help="ship nowhere: measured locally only")
    p = leaf(deploy, "list", commands.deploy_list, "list deployments, newest first")
    p.add_argument("--namespace", metavar="NS")
    p = leaf(deploy, "show", commands.deploy_show, "one deployment")
    p.add_argument("id", metavar="ID")
    p.add_argument("--config", action="store_true", help="print only the rendered collector config")
    p = leaf(deploy, "rollback", commands.deploy_rollback, "restore the deployment this one replaced")
    p.add_argument("id", metavar="ID")

    exp_group = groups.add_parser("experiment", help="A/B experiments: baseline vs candidate pipeline")
    exp = exp_group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = leaf(exp, "create", commands.experiment_create, "create (and by default start) an experiment")
    p.add_argument("--name", required=True, metavar="N")
    p.add_argument("--baseline", required=True, metavar="T", help="baseline template")
    p.add_argument("--candidate", required=True, metavar="T", help="candidate template")
    p.add_argument("--namespace", action="extend", nargs="+", metavar="NS", help="target namespace(s)")
    p.add_argument("--host", action="extend", nargs="+", metavar="HOST", help="target host(s)")
    p.add_argument(
        "--critical", action="extend", nargs="+", metavar="P", help="process(es) the candidate must keep"
    )
    p.add_argument("--duration", metavar="D", help="measuring time, e.g. 10m (default 10m)")
    p.add_argument("--warmup", metavar="D", help="warm-up before measuring, e.g. 1m (default 1m)")
    p.add_argument("--sample-interval", metavar="D", help="time between samples (default 10s)")
    p.add_argument("--load-profile", choices=LOAD_PROFILES, help="synthetic process load to run")
    p.add_argument("--param-baseline", action="append", type=parse_param, metavar="K=V")
    p.add_argument("--param-candidate", action="append", type=parse_param, metavar="K=V")
    p.add_argument(
        "--billing-window",
        metavar="D",
        help="window a backend bills distinct series over, e.g. 20m (default 20m, at least 1m); "
        "a run shorter than one window is extrapolated and cannot be promoted without --force",
    )
    p.add_argument(
        "--overhead-probe",
        metavar="D",
        help="at the end, run each arm alone this long to measure its collector's overhead (default 0: off)",
    )
    p.add_argument(
        "--min-reduction",
        type=_number,
        metavar="PCT",
        help="billed-series reduction needed, on the p95 (default 70)",
    )
    p.add_argument(
        "--min-cpu-coverage", type=_number, metavar="PCT", help="mean CPU coverage needed (default 95)"
    )
    p.add_argument(
        "--min-cpu-coverage-p10",
        type=_number,
        metavar="PCT",
        help="10th percentile of the per-pair CPU coverage needed (default 90)",
    )
    p.add_argument(
        "--max-cpu-rate-deviation",
        type=_number,
        metavar="PCT",
        help="worst candidate/baseline CPU rate deviation allowed (default 1)",
    )
    p.add_argument(
        "--max-collector-overhead-ratio",
        type=_number,
        metavar="R",
        help="candidate/baseline collector CPU allowed, when probed (default 1.5)",
    )
    p.add_argument(
        "--min-samples-per-host",
        type=int,
        metavar="N",
        help="sample pairs every host needs (default 5)",
    )
    p.add_argument(
        "--max-collector-overhead",
        type=_number,
        metavar="PCT",
        help="shared collector CPU allowed (default: not checked)",
    )
    p.add_argument(
        "--candidate-destination",
        metavar="NAME",
        help="ship the candidate's data there (default: in shadow, measured but not shipped)",
    )
    p.add_argument("--no-start", action="store_true", help="create it pending; start it later")
    p = leaf(exp, "list", commands.experiment_list, "list experiments")
    p.add_argument("--phase", choices=PHASES)
    for name, handler, text in (
        ("status", commands.experiment_status, "phase, progress and latest measurements"),
        ("start", commands.experiment_start, "start a pending experiment"),
        ("stop", commands.experiment_stop, "stop it and restore the hosts' configuration"),
        ("promote", commands.experiment_promote, "deploy the candidate to the target namespaces"),
        ("rollback", commands.experiment_rollback, "deploy the baseline to the target namespaces again"),
        ("results", commands.experiment_results, "the measurements, per host and pipeline"),
        ("analysis", commands.experiment_analysis, "reduction, coverage, cost and verdict"),
        ("watch", commands.experiment_watch, "follow it live until it ends; exit 0 only if it completed"),
    ):
        p = leaf(exp, name, handler, text)
        p.add_argument("id", metavar="ID")
        if name == "promote":
            p.add_argument(
                "--force",
                action="store_true",
                help="promote even though the verdict is reject or the run is extrapolated",
            )
        if name == "analysis":
            p.add_argument(
                "--check",
                action="store_true",
                help="exit 1 unless the analysis is final with verdict promote",
            )

    dest = groups.add_parser("destinations", help="named backends that pipelines ship to").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    # Here --timeout is the destination's export timeout; this call's HTTP timeout goes before the command.
    p = leaf(
        dest,
        "create",
        commands.destinations_create,
        "create a destination (header values are secrets: they are stored encrypted and never shown)",
        parent=_common(suppress=True, http_timeout=False),
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--type", required=True, choices=DESTINATION_TYPES)
    p.add_argument(
        "--endpoint", required=True, metavar="URL", help="http(s) URL; for otlp_grpc also host:port"
    )
    p.add_argument(
        "--header",
        action="append",
        type=parse_header,
        metavar="'NAME: VALUE'",
        help="a header sent with every export (repeatable); its value is never printed, but as a "
        "flag it shows in ps while this command runs",
    )
    p.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        help="default: the type's (prometheus_remote_write: snappy only)",
    )
    p.add_argument(
        "--timeout",
        dest="export_timeout",
        metavar="D",
        help="export timeout, e.g. 10s or 30 (seconds), 1s to 5m (default 10s); the HTTP timeout "
        "of this call goes before the command: phoenix --timeout N destinations create",
    )
    p.add_argument(
        "--ca-file",
        type=read_pem,
        metavar="PATH",
        help="PEM certificate(s) to verify the endpoint with instead of the system's",
    )
    p.add_argument("--insecure", action="store_true", help="plain-text gRPC, no TLS (otlp_grpc only)")
    p.add_argument(
        "--insecure-skip-verify", action="store_true", help="TLS without verifying the endpoint's certificate"
    )
    p = leaf(dest, "list", commands.destinations_list, "list destinations and the namespaces shipping there")
    for name, handler, text in (
        ("show", commands.destinations_show, "one destination (header values masked)"),
        (
            "delete",
            commands.destinations_delete,
            "delete a destination no active deployment or experiment ships to",
        ),
    ):
        p = leaf(dest, name, handler, text)
        p.add_argument("name", metavar="NAME")

    p = leaf(groups, "cost-flow", commands.cost_flow, "where the metrics bill comes from, now and after")
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows per breakdown (default 10)")
    p = leaf(groups, "templates", commands.templates, "the generator's pipeline templates")
    p.add_argument("name", nargs="?", metavar="NAME", help="show one template's parameters")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phoenix-metrics")
    except PackageNotFoundError:
        return "unknown"


def _check_params(args: argparse.Namespace) -> None:
    """Repeated --param flags become one mapping; the same key twice is a mistake, not an override."""
    parser: argparse.ArgumentParser = args.parser
    for name in ("param", "param_baseline", "param_candidate"):
        pairs = getattr(args, name, None)
        if pairs is None:
            continue
        merged: dict[str, Any] = {}
        for key, value in pairs:
            if key in merged:
                parser.error(f"--{name.replace('_', '-')} {key} is given twice")
            merged[key] = value
        setattr(args, name, merged)
    headers = getattr(args, "header", None)
    if headers is not None:
        seen: set[str] = set()
        for key, _ in headers:
            # HTTP header names are case-insensitive: two spellings are the same header given twice.
            if key.lower() in seen:
                parser.error(f"--header {key} is given twice")
            seen.add(key.lower())
        args.header = dict(headers)
    for name in ("limit", "top"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_params(args)
    try:
        settings = resolve(vars(args), os.environ)
        ctx = commands.Context(settings, json=bool(args.json))
        code: int = args.handler(ctx, args)
    except CliError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `phoenix ... | head`: the reader left; keep the interpreter's final flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code


__all__ = ["EXIT_USAGE", "build_parser", "main"]
