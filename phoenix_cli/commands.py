"""One handler per subcommand: call the API, print a view (or the raw JSON), return the exit code."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Any

from phoenix_cli import views
from phoenix_cli.client import Client, quote
from phoenix_cli.config import CliSettings
from phoenix_cli.errors import EXIT_NEGATIVE, EXIT_OK, ApiError
from phoenix_cli.render import dumps


@dataclass
class Context:
    """What every handler needs: the settings, a client per service and the output mode."""

    settings: CliSettings
    json: bool

    @property
    def api(self) -> Client:
        s = self.settings
        return Client(s.api_url, token=s.token, timeout=s.timeout, service="control plane")

    @property
    def generator(self) -> Client:
        s = self.settings
        # The API token is the control plane's; it is not sent to another service.
        return Client(s.generator_url, timeout=s.timeout, service="config generator")

    def out(self, data: Any, human: str) -> None:
        """The raw JSON with --json, else the human view."""
        print(dumps(data) if self.json else human)


def _exp(experiment_id: str, suffix: str = "") -> str:
    return f"/api/v1/experiments/{quote(experiment_id)}{suffix}"


def _destination(name: str) -> str:
    return f"/api/v1/destinations/{quote(name)}"


def _given(**fields: Any) -> dict[str, Any]:
    """The fields a flag was given for (None: left to the API's default)."""
    return {k: v for k, v in fields.items() if v is not None}


# --- agents -----------------------------------------------------------------------------------


def agents_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get("/api/v1/agents", namespace=args.namespace, limit=args.limit)
    ctx.out(data, views.agents_table(data.get("agents") or []))
    return EXIT_OK


def agents_show(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(f"/api/v1/agents/{quote(args.host)}")
    ctx.out(data, views.agent_view(data))
    return EXIT_OK


def agents_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.delete(f"/api/v1/agents/{quote(args.host)}")
    ctx.out(
        data,
        f"agent {data.get('host_id')} is deleted: {data.get('tasks_removed')} unfinished task(s) removed, "
        "its token revoked",
    )
    return EXIT_OK


def agents_move(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.patch(f"/api/v1/agents/{quote(args.host)}", {"namespace": args.namespace})
    ctx.out(data, f"agent {data.get('host_id')} is in namespace {data.get('namespace')}")
    return EXIT_OK


def agents_token(ctx: Context, args: argparse.Namespace) -> int:
    path = f"/api/v1/agents/{quote(args.host)}/token"
    if args.revoke:
        data = ctx.api.delete(path)
        ctx.out(data, f"the agent token of {data.get('host_id')} is revoked")
        return EXIT_OK
    data = ctx.api.post(path, {"namespace": args.namespace} if args.namespace else None)
    if not ctx.json:
        # The token alone on stdout, so that it can go straight into the agent's config; it is not kept.
        print(
            f"token for {data.get('host_id')}: shown once, give it to the agent as its `token` setting"
            + (" (the previous one no longer works)" if data.get("replaced") else ""),
            file=sys.stderr,
        )
    ctx.out(data, str(data.get("agent_token")))
    return EXIT_OK


# --- deployments ------------------------------------------------------------------------------


def deploy_create(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "namespace": args.namespace,
        "template": args.template,
        "parameters": dict(args.param or []),
    }
    if args.allow_empty_namespace:
        body["allow_empty_namespace"] = True
    body.update(_given(max_failed_hosts=args.max_failed_hosts, destination=args.destination))
    if args.no_destination:
        body["destination"] = None
    data = ctx.api.post("/api/v1/pipeline-deployments", body)
    replaces = f", replacing {data['previous_id']}" if data.get("previous_id") else ""
    ships = f"; {views.shipping(data['destination'])}" if "destination" in data else ""
    ctx.out(
        data,
        f"deployment {data.get('id')} created: {data.get('template')} on namespace "
        f"{data.get('namespace')}, sent to {data.get('hosts', 0)} host(s){replaces}{ships}",
    )
    return EXIT_OK


def deploy_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get("/api/v1/pipeline-deployments", namespace=args.namespace)
    ctx.out(data, views.deployments_table(data.get("deployments") or []))
    return EXIT_OK


def deploy_show(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(f"/api/v1/pipeline-deployments/{quote(args.id)}")
    human = views.deployment_view(data)
    if args.config:
        human = data.get("config_yaml") or ""
    ctx.out(data, human.rstrip("\n"))
    return EXIT_OK


def deploy_rollback(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.delete(f"/api/v1/pipeline-deployments/{quote(args.id)}")
    restored = data.get("restored_deployment_id")
    what = (
        f"restored {restored} on {data.get('hosts', 0)} host(s)"
        if restored
        else "there was no earlier deployment to restore; agents keep their current configuration"
    )
    ctx.out(data, f"deployment {data.get('id')} rolled back: {what}")
    return EXIT_OK


# --- experiments ------------------------------------------------------------------------------


def experiment_create(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "baseline_pipeline": args.baseline,
        "candidate_pipeline": args.candidate,
        "target_namespaces": args.namespace or [],
        "start": not args.no_start,
    }
    body.update(
        _given(
            target_hosts=args.host,
            critical_processes=args.critical,
            duration=args.duration,
            warmup=args.warmup,
            sample_interval=args.sample_interval,
            load_profile=args.load_profile,
            min_billed_reduction_percent=args.min_reduction,
            min_cpu_coverage_percent=args.min_cpu_coverage,
            max_collector_overhead_percent=args.max_collector_overhead,
            # Flags a newer parser may define (phoenix_cli/cli.py); absent, the API's defaults apply.
            billing_window=getattr(args, "billing_window", None),
            overhead_probe=getattr(args, "overhead_probe", None),
            min_cpu_coverage_p10_percent=getattr(args, "min_cpu_coverage_p10", None),
            max_cpu_rate_deviation_percent=getattr(args, "max_cpu_rate_deviation", None),
            max_collector_overhead_ratio=getattr(args, "max_collector_overhead_ratio", None),
            min_samples_per_host=getattr(args, "min_samples_per_host", None),
            candidate_destination=args.candidate_destination,
        )
    )
    given = (("baseline", args.param_baseline), ("candidate", args.param_candidate))
    parameters = {variant: dict(params) for variant, params in given if params}
    if parameters:
        body["parameters"] = parameters
    data = ctx.api.post("/api/v1/experiments", body)
    if ctx.json:
        print(dumps(data))
    else:
        print(f"experiment {data.get('id')} created")
        print(views.experiment_line(data))
    if data.get("start_error"):
        print(
            f"phoenix: experiment {data.get('id')} was created but did not start: {data['start_error']}; "
            f"fix the cause, then run 'phoenix experiment start {data.get('id')}'",
            file=sys.stderr,
        )
        return EXIT_NEGATIVE
    if not ctx.json and data.get("phase") != "pending":
        print(f"follow it with: phoenix experiment watch {data.get('id')}")
    return EXIT_OK


def experiment_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get("/api/v1/experiments", phase=args.phase)
    ctx.out(data, views.experiments_table(data.get("experiments") or []))
    return EXIT_OK


def experiment_status(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(_exp(args.id))
    ctx.out(data, views.experiment_view(data))
    return EXIT_OK


def experiment_start(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.post(_exp(args.id, "/start"))
    ctx.out(data, views.experiment_line(data))
    return EXIT_OK


def experiment_stop(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.post(_exp(args.id, "/stop"))
    ctx.out(data, views.experiment_line(data))
    return EXIT_OK


def experiment_promote(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.post(_exp(args.id, "/promote"), {"force": True} if args.force else {})
    ctx.out(data, views.promotion_view(data, "candidate promoted"))
    return EXIT_OK


def experiment_rollback(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.post(_exp(args.id, "/rollback"))
    ctx.out(data, views.promotion_view(data, "baseline restored"))
    return EXIT_OK


def experiment_results(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(_exp(args.id, "/results"))
    ctx.out(data, views.results_view(data))
    return EXIT_OK


def experiment_analysis(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(_exp(args.id, "/analysis"))
    ctx.out(data, views.analysis_view(data))
    # Promotable: verdict promote on at least one full billing window (older APIs: the verdict alone).
    promotable = data.get("promotable", data.get("verdict") == "promote")
    if args.check and not (data.get("final") and promotable):
        return EXIT_NEGATIVE
    return EXIT_OK


def experiment_watch(ctx: Context, args: argparse.Namespace) -> int:
    from phoenix_cli.watch import watch

    return watch(ctx, args.id)


# --- destinations -----------------------------------------------------------------------------


def _duration(text: str | None) -> str | float | None:
    """A bare number is seconds, sent as a number; other text ('10s', '1m') goes as the API's duration."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return text
    # 'nan' and 'inf' parse as floats but have no JSON form; the API names what is wrong with the text.
    return seconds if math.isfinite(seconds) else text


def destination_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST body from the flags; what was not given is left to the API's defaults."""
    tls = _given(
        ca_pem=args.ca_file,
        insecure=args.insecure or None,
        insecure_skip_verify=args.insecure_skip_verify or None,
    )
    return {
        "name": args.name,
        "type": args.type,
        "endpoint": args.endpoint,
        **_given(
            headers=args.header,
            tls=tls or None,
            compression=args.compression,
            timeout=_duration(args.export_timeout),
        ),
    }


def destinations_create(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.post("/api/v1/destinations", destination_body(args))
    ctx.out(data, f"destination {data.get('name')} created\n{views.destination_view(data)}")
    return EXIT_OK


def destinations_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get("/api/v1/destinations")
    ctx.out(data, views.destinations_table(data.get("destinations") or []))
    return EXIT_OK


def destinations_show(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get(_destination(args.name))
    ctx.out(data, views.destination_view(data))
    return EXIT_OK


def destinations_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.api.delete(_destination(args.name))
    # The API answers 204 without a body: with --json there is nothing to print.
    if not ctx.json:
        print(f"destination {args.name} deleted")
    return EXIT_OK


# --- cost flow and templates ---------------------------------------------------------------


def cost_flow(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.api.get("/api/v1/cost-flow")
    ctx.out(data, views.cost_flow_view(data, args.top))
    return EXIT_OK


def templates(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.generator.get("/api/v1/templates")
    found = data.get("templates") or []
    if args.name is None:
        ctx.out(data, views.templates_table(found))
        return EXIT_OK
    for template in found:
        if template.get("name") == args.name:
            ctx.out(template, views.template_view(template))
            return EXIT_OK
    names = ", ".join(t.get("name", "?") for t in found) or "none"
    raise ApiError(404, f"the generator has no template {args.name!r} (it has: {names})")
