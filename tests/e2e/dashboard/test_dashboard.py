"""The dashboard in headless Chromium against the real API: data made through HTTP, updates seen live."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import ROOT, free_port, http_json
from tests.support.agents import deploy, free_ports, wait_registered, wait_running
from tests.support.services import Service, Stack, start_api

ARTIFACTS = ROOT / "test-artifacts"


# --- making data the way agents and operators do: over HTTP -----------------------------------------


def heartbeat(
    api: Service,
    host: str,
    namespace: str,
    *,
    state: str = "running",
    pipeline: str | None = "process-baseline-v1",
    headers: dict[str, str] | None = None,
    export: dict[str, Any] | None = None,
) -> None:
    body = {
        "namespace": namespace,
        "version": "0.1.0",
        "collector": {
            "state": state,
            "restarts": 0,
            "last_error": None,
            "config_hash": None,
            "pipeline": pipeline,
            "export": export,
        },
        "facts": {"hostname": host, "os": "linux", "cpus": 2},
    }
    status, answer, _ = http_json(
        "POST", f"{api.url}/api/v1/agent/heartbeat", body, {"X-Agent-Host-ID": host, **(headers or {})}
    )
    assert status == 200, answer


def create_experiment(api: Service, name: str, namespace: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1",
        "target_namespaces": [namespace],
        "start": False,
        **extra,
    }
    status, answer, _ = http_json("POST", f"{api.url}/api/v1/experiments", body)
    assert status == 201, answer
    return answer


def experiment(api: Service, experiment_id: str) -> dict[str, Any]:
    status, answer, _ = http_json("GET", f"{api.url}/api/v1/experiments/{experiment_id}")
    assert status == 200, answer
    return answer


def pct(value: float) -> str:
    """What the dashboard's pct(value, 2) shows: ICU rounds the shortest decimal half away from zero."""
    rounded = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{rounded:,.2f}".rstrip("0").rstrip(".") + " %"


def money(value: float) -> str:
    """What Intl.NumberFormat('en-US', USD) shows."""
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def open_page(page: Any, api: Service, route: str) -> None:
    """Load the dashboard and wait until its event stream is subscribed, so no event can be missed."""
    from playwright.sync_api import expect

    page.goto(f"{api.url}/#/{route}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.evaluate("window.__phoenixNoReload = true")


def screenshot(page: Any, name: str) -> None:
    """Kept for people reviewing a CI run: what the page looked like when the test passed."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__phoenixNoReload === true"), "the page was reloaded"


# --- serving ------------------------------------------------------------------------------------------


def test_index_and_static_files_have_cache_headers(api: Service) -> None:
    status, html, headers = http_json("GET", f"{api.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-cache"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    prefix = re.search(r'src="(/static/[0-9a-f]{12})/js/app\.js"', html)
    assert prefix, html
    status, _, headers = http_json("GET", f"{api.url}{prefix.group(1)}/js/app.js")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript")
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = headers["ETag"]
    status, _, headers = http_json(
        "GET", f"{api.url}{prefix.group(1)}/js/app.js", headers={"If-None-Match": etag}
    )
    assert status == 304 and headers["ETag"] == etag
    # Unversioned paths work too, but are revalidated.
    status, _, headers = http_json("GET", f"{api.url}/static/vendor/uPlot.min.css")
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    import urllib.request

    request = urllib.request.Request(
        f"{api.url}{prefix.group(1)}/vendor/uPlot.iife.min.js", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert b"uPlot" in gzip.decompress(response.read())
    status, problem, headers = http_json("GET", f"{api.url}/static/../control_plane/app.py")
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json"), problem


# --- pages ----------------------------------------------------------------------------------------------


def test_fleet_lists_agents_with_their_status(api: Service, database_url: str, page: Any) -> None:
    from playwright.sync_api import expect

    failing = {
        "destination": "prod",
        "exporter": "otlphttp/ship",
        "state": "failing",
        "sent_points": 0,
        "failed_points": 0,
        "dropped_points": 0,
        "queue_size": 1200,
        "queue_capacity": 5000000,
    }
    heartbeat(api, "web-1", "web", export=failing)
    heartbeat(api, "db-1", "db", state="failed", pipeline=None)
    # An agent that went quiet an hour ago: its status is derived from the time, so set the time.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE agents SET last_seen_at = now() - interval '1 hour' WHERE host_id = 'db-1'")
    open_page(page, api, "fleet")
    web = page.locator("tr[data-host='web-1']")
    expect(web).to_contain_text("healthy")
    expect(web).to_contain_text("web")
    expect(web).to_contain_text("running")
    expect(web).to_contain_text("process-baseline-v1")
    # Its collector cannot deliver: the export column says so, with what waits in the queue.
    expect(web).to_contain_text("failing to prod")
    expect(web).to_contain_text("1200 point(s) queued")
    db = page.locator("tr[data-host='db-1']")
    expect(db).to_contain_text("not shipped")
    expect(db).to_contain_text("offline")
    expect(db).to_contain_text("failed")
    expect(db).to_contain_text("60m ago")
    expect(page.locator("[data-count='healthy']")).to_have_text("1 healthy")
    expect(page.locator("[data-count='offline']")).to_have_text("1 offline")
    # A new agent shows up without a reload.
    heartbeat(api, "web-2", "web")
    expect(page.locator("tr[data-host='web-2']")).to_contain_text("healthy")
    assert_not_reloaded(page)
    screenshot(page, "dashboard-fleet.png")


def test_experiment_page_follows_a_phase_change_without_reload(api: Service, page: Any) -> None:
    from playwright.sync_api import expect

    exp = create_experiment(api, "topk on web", "web", critical_processes=["postgres"], duration="15m")
    open_page(page, api, "experiments")
    row = page.locator(f"tr[data-experiment='{exp['id']}']")
    expect(row).to_contain_text("pending")
    expect(row).to_contain_text("process-baseline-v1 → process-topk-v1")
    later = create_experiment(api, "created while watching", "web")
    expect(page.locator(f"tr[data-experiment='{later['id']}']")).to_contain_text("pending")
    row.get_by_role("link", name="topk on web").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("topk on web")
    expect(page.locator("#experiment-phase")).to_have_text("pending")
    expect(page.locator(".timeline [aria-current='step']")).to_contain_text("pending")
    expect(page.locator(".timeline li")).to_have_count(6)
    expect(page.get_by_role("button", name="Start")).to_be_enabled()
    expect(page.get_by_role("button", name="Promote")).to_be_disabled()
    expect(page.locator("#series-chart figcaption")).to_contain_text("No measurement yet")
    expect(page.locator("#analysis")).to_contain_text("Provisional")
    expect(page.locator(".spec")).to_contain_text("postgres")
    expect(page.locator(".spec")).to_contain_text("15m")

    status, _, _ = http_json("POST", f"{api.url}/api/v1/experiments/{exp['id']}/stop")
    assert status == 200
    expect(page.locator("#experiment-phase")).to_have_text("stopped")
    expect(page.locator(".timeline li[data-step='stopped']")).to_have_attribute("aria-current", "step")
    expect(page.locator(".reason")).to_contain_text("stopped by operator")
    expect(page.locator("#analysis")).to_contain_text("ended stopped before")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    assert_not_reloaded(page)


def test_buttons_reach_the_api_and_show_its_answer(api: Service, page: Any) -> None:
    from playwright.sync_api import expect

    exp = create_experiment(api, "nobody home", "empty-ns")
    open_page(page, api, f"experiments/{exp['id']}")
    expect(page.locator("#experiment-phase")).to_have_text("pending")
    # The API refuses to start an experiment without agents; the page says why.
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("alert")).to_contain_text("has no agents seen in the last")
    assert experiment(api, exp["id"])["phase"] == "pending"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("[data-outcome='stop']")).to_contain_text("Stopped")
    expect(page.locator("#experiment-phase")).to_have_text("stopped")
    assert experiment(api, exp["id"])["phase"] == "stopped"
    # Rolling back a stopped experiment needs the config generator, which is not running here: 502 shown.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back").click()
    expect(page.get_by_role("alert")).to_contain_text("generator")
    page.goto(f"{api.url}/#/experiments/exp-missing")
    expect(page.get_by_role("alert")).to_contain_text("experiment 'exp-missing' does not exist")


def test_reconnects_after_the_api_restarts_and_catches_up(api: Service, page: Any) -> None:
    from playwright.sync_api import expect

    exp = create_experiment(api, "survives a restart", "web")
    open_page(page, api, f"experiments/{exp['id']}")
    expect(page.locator("#experiment-phase")).to_have_text("pending")
    api.stop()
    expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    api.start()
    # Changed while the page may not be subscribed yet: the page re-reads what it shows once it is back.
    status, _, _ = http_json("POST", f"{api.url}/api/v1/experiments/{exp['id']}/stop")
    assert status == 200
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#experiment-phase")).to_have_text("stopped")
    assert_not_reloaded(page)


def test_deploy_form_shows_the_problem_detail(api: Service, page: Any) -> None:
    from playwright.sync_api import expect

    open_page(page, api, "deployments")
    expect(page.locator("table caption")).to_have_text("Pipeline deployments, newest first")
    page.get_by_text("Deploy a pipeline to a namespace").click()
    page.get_by_label("Name", exact=True).fill("topk everywhere")
    page.get_by_label("Namespace").fill("nowhere")
    page.get_by_label("Template").fill("process-topk-v1")
    page.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("alert")).to_contain_text("namespace 'nowhere' has no registered agents")


def test_cost_flow_shows_cost_by_namespace_pipeline_and_metric(api: Service, page: Any) -> None:
    from playwright.sync_api import expect

    for host, namespace, series in (("web-1", "web", 900), ("web-2", "web", 700), ("db-1", "db", 300)):
        heartbeat(api, host, namespace)
        sample = {
            "variant": "main",
            "pipeline": "process-baseline-v1",
            "ts": time.time(),
            "active_series": series,
            "datapoints_per_second": series / 10,
            "series_per_metric": {"process.cpu.time": series * 2 // 3, "system.cpu.time": series // 3},
        }
        status, answer, _ = http_json(
            "POST", f"{api.url}/api/v1/agent/measurements", {"samples": [sample]}, {"X-Agent-Host-ID": host}
        )
        assert status == 202, answer
    status, flow, _ = http_json("GET", f"{api.url}/api/v1/cost-flow")
    assert status == 200
    open_page(page, api, "cost")
    expect(page.locator("#monthly-now")).to_have_text(money(flow["now"]["monthly_cost"]))
    for row in flow["now"]["by_namespace"]:
        expect(page.locator(f"[data-dimension='namespace'] tr[data-key='{row['key']}']")).to_contain_text(
            money(row["monthly_cost"])
        )
    expect(page.locator("[data-dimension='pipeline'] tr[data-key='process-baseline-v1']")).to_be_visible()
    expect(page.locator("[data-dimension='metric'] tbody tr")).to_have_count(2)
    # The bars are drawn to scale: the largest namespace fills its track.
    widths = page.locator("[data-dimension='namespace'] .bar-fill").evaluate_all(
        "els => els.map(e => e.style.width)"
    )
    assert widths[0] == "100%" and 0 < float(widths[1].rstrip("%")) < 100, widths
    screenshot(page, "dashboard-cost.png")


def test_destinations_page_and_where_each_deployment_ships(stack: Stack, page: Any) -> None:
    """A destination made over HTTP is listed with the namespaces shipping there; no header value shows."""
    from playwright.sync_api import expect

    api = stack.api
    heartbeat(api, "web-1", "web")
    heartbeat(api, "db-1", "db")
    body = {
        "name": "prod-otlp",
        "type": "otlp_http",
        "endpoint": "https://otlp.example.com:4318",
        "headers": {"Authorization": "Bearer dash-s3cr3t"},
    }
    status, answer, _ = http_json("POST", f"{api.url}/api/v1/destinations", body)
    assert status == 201, answer

    def deploy_to(namespace: str, **extra: Any) -> dict[str, Any]:
        request = {"name": f"{namespace} pipeline", "namespace": namespace, "template": "process-baseline-v1"}
        status, deployment, _ = http_json(
            "POST", f"{api.url}/api/v1/pipeline-deployments", {**request, **extra}
        )
        assert status == 201, deployment
        return dict(deployment)

    shipped = deploy_to("web", destination="prod-otlp")
    local = deploy_to("db")
    open_page(page, api, "destinations")
    row = page.locator("tr[data-destination='prod-otlp']")
    for text in ("otlp_http", "https://otlp.example.com:4318", "Authorization"):
        expect(row).to_contain_text(text)
    expect(row.locator("td").nth(2)).to_have_text("web")
    # A namespace that starts shipping there is listed live, from the deployments event.
    deploy_to("db", destination="prod-otlp")
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^(db, web|web, db)$"))
    assert "dash-s3cr3t" not in page.content()
    assert_not_reloaded(page)
    screenshot(page, "dashboard-destinations.png")

    page.get_by_role("link", name="Deployments", exact=True).click()
    expect(page.locator(f"tr[data-deployment='{shipped['id']}']")).to_contain_text("prod-otlp")
    expect(page.locator(f"tr[data-deployment='{local['id']}']")).to_contain_text("local only (not shipped)")


# --- the operator token ---------------------------------------------------------------------------------


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(
        database_url, tmp_path, env={"PHOENIX_API_TOKEN": "dash-secret-7-0123456789"}, name="secured"
    )
    yield service
    service.stop()


def test_asks_for_the_token_once_and_uses_it_for_http_and_websocket(secured: Service, page: Any) -> None:
    from playwright.sync_api import expect

    heartbeat(secured, "web-1", "web")
    page.goto(f"{secured.url}/#/fleet")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Token").fill("wrong")
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog.get_by_role("alert")).to_contain_text("not accepted")
    dialog.get_by_label("Token").fill("dash-secret-7-0123456789")
    dialog.get_by_role("button", name="Sign in").click()
    expect(page.locator("tr[data-host='web-1']")).to_contain_text("healthy")
    expect(dialog).to_be_hidden()
    # The WebSocket handshake passed the token check too.
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    assert page.evaluate("sessionStorage.getItem('phoenix.apiToken')") == "dash-secret-7-0123456789"
    page.reload()
    expect(page.locator("tr[data-host='web-1']")).to_be_visible()
    expect(page.get_by_role("dialog")).to_be_hidden()


# --- a whole experiment, live ---------------------------------------------------------------------------


def test_live_experiment_chart_analysis_and_promotion(stack: Stack, page: Any, agent_factory: Any) -> None:
    """A real agent and collector measure both pipelines; the page follows it all without a reload."""
    from playwright.sync_api import expect

    api = stack.api
    agent = agent_factory(api.url)
    wait_registered(api, agent)
    baseline_dep = deploy(api, free_ports())
    wait_running(api, agent.host_id, baseline_dep["config_hash"], "the baseline deployment to run")
    shared = {"health_port": free_port(), "telemetry_port": free_port(), "collection_interval": 1}
    parameters = {
        "baseline": {**shared, "prometheus_port": free_port()},
        "candidate": {**shared, "prometheus_port": free_port(), "observe_port": free_port(), "k": 10},
    }
    # Criteria anyone passes, so that the Promote button is the one under test. The run is shorter than
    # one billing window: the analysis is extrapolated, and the page promotes it only with force.
    exp = create_experiment(
        api,
        "topk vs baseline",
        "default",
        start=False,
        warmup=2,
        duration=12,
        sample_interval=1,
        parameters=parameters,
        billing_window="1m",
        min_billed_reduction_percent=0,
        min_cpu_coverage_percent=0,
        min_cpu_coverage_p10_percent=0,
        max_cpu_rate_deviation_percent=100,
        min_samples_per_host=1,
        max_collector_overhead_percent=100,
    )
    open_page(page, api, f"experiments/{exp['id']}")
    expect(page.locator("#experiment-phase")).to_have_text("pending")
    status, answer, _ = http_json("POST", f"{api.url}/api/v1/experiments/{exp['id']}/start")
    assert status == 200, answer
    expect(page.locator("#experiment-phase")).to_have_text("running", timeout=90_000)
    expect(page.locator(".timeline li[data-step='warming_up']")).to_have_class(re.compile("step-done"))

    # Points arrive from the agent's measurements through the WebSocket.
    chart = page.locator("#series-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"^([3-9]|\d{2,})$"), timeout=60_000)
    expect(chart.locator("figcaption")).to_contain_text("Latest: baseline")
    expect(page.locator(f"tr[data-host='{agent.host_id}']")).to_be_visible()
    assert chart.locator("canvas").count() >= 1

    expect(page.locator("#experiment-phase")).to_have_text("completed", timeout=90_000)
    status, analysis, _ = http_json("GET", f"{api.url}/api/v1/experiments/{exp['id']}/analysis")
    assert status == 200 and analysis["final"], analysis
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", analysis["verdict"])
    figures = page.locator("[data-analysis='fleet']")
    billed = analysis["fleet"]["billed_series_reduction_percent"]
    expect(figures.locator("tr[data-figure='billed_series_reduction_percent']")).to_contain_text(pct(billed))
    # The billing charts are drawn from what the agent measured: billed series if it reports them.
    status, results, _ = http_json("GET", f"{api.url}/api/v1/experiments/{exp['id']}/results")
    assert status == 200, results
    reported = any(
        p.get("billed_series") is not None
        for v in results["time_series"].values()
        for arm in v.values()
        for p in arm
    )
    billed_chart = page.locator("#billed-chart")
    if reported:
        expect(billed_chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    else:
        expect(billed_chart.locator("figcaption")).to_contain_text("do not report billed_series")
        expect(figures.locator("tr[data-figure='billed_series_reduction_percent']")).to_contain_text(
            "from snapshots"
        )
    expect(page.locator("#coverage-chart")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    expect(figures).to_contain_text(money(analysis["cost"]["monthly_before"]))
    expect(figures).to_contain_text(money(analysis["cost"]["annual_savings"]))
    for criterion in analysis["criteria"]:
        expect(page.locator(f"tr[data-criterion='{criterion['name']}']")).to_contain_text(
            "passed" if criterion["passed"] else "failed"
        )
    expect(page.locator(".timeline li[data-step='completed']")).to_have_class(re.compile("step-done"))

    assert analysis["verdict"] == "promote", [c for c in analysis["criteria"] if not c["passed"]]
    assert analysis["extrapolated"] is True, analysis
    expect(page.locator("#extrapolated")).to_contain_text("cannot be promoted without force")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Promote anyway").click()
    expect(page.locator("[data-outcome='promote']")).to_contain_text("Promoted: dep")
    promoted = experiment(api, exp["id"])["promoted_deployments"]
    assert len(promoted) == 1
    expect(page.get_by_role("button", name="Promote")).to_be_disabled()
    assert_not_reloaded(page)

    screenshot(page, "dashboard-experiment.png")
