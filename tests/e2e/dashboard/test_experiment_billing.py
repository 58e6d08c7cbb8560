"""The dashboard creates experiments and shows what backends bill: billed series per arm, the coverage band.

Real API and config generator; the agent side is played over HTTP (heartbeat, measurements) so that the
figures on the page are known in advance.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.e2e.dashboard.test_dashboard import heartbeat, open_page, pct, screenshot
from tests.support import http_json
from tests.support.services import Service, Stack

WINDOW = 600.0


def started_experiment(api: Service, name: str, namespace: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "target_namespaces": [namespace],
        "critical_processes": ["postgres"],
        "duration": "1h",
        "warmup": 0,
        "sample_interval": 1,
        "billing_window": "10m",
        "start": False,
        **extra,
    }
    status, created, _ = http_json("POST", f"{api.url}/api/v1/experiments", body)
    assert status == 201, created
    status, started, _ = http_json("POST", f"{api.url}/api/v1/experiments/{created['id']}/start")
    assert status == 200, started
    assert started["hosts"], started
    return dict(started)


def sample(variant: str, ts: float, i: int) -> dict[str, Any]:
    """One tick of one arm: the candidate keeps postgres and nginx under their names, the rest in `other`."""
    baseline = variant == "baseline"
    # postgres 0.5, nginx 0.3 CPU s/s; 40 idle services share 0.2. The candidate's coverage dips at tick 3.
    cpu = {"postgres": 0.5, "nginx": 0.3, **{f"svc-{n}": 0.005 for n in range(40)}}
    if baseline:
        rates = cpu
        kept = sorted(cpu)
    else:
        nginx = 0.3 if i != 3 else 0.0
        rates = {"postgres": 0.5, "nginx": nginx, "other": 0.2 + (0.3 - nginx)}
        kept = ["nginx", "postgres", "other"] if i != 3 else ["postgres", "other"]
    memory = {name: 50e6 for name in rates}
    return {
        "variant": variant,
        "pipeline": "process-baseline-v1" if baseline else "process-intelligent-v1",
        "ts": ts,
        "active_series": 800 if baseline else 90,
        "billed_series": 1000 + 10 * i if baseline else 80,
        "billing_window_seconds": WINDOW,
        "observed_seconds": float(i),
        "new_series_per_hour": 120.0 if baseline else 0.0,
        "datapoints_per_minute": 4800.0 if baseline else 540.0,
        "datapoints_per_second": 80.0 if baseline else 9.0,
        "cpu_total_rate": 1.0,
        "memory_total_bytes": sum(memory.values()),
        "interval_seconds": 1.0,
        "collector_cpu_percent": 3.0,
        "collector_memory_bytes": 80e6,
        "process_cpu_seconds_rate": rates,
        "process_cpu_seconds_total": {k: v * (i + 1) for k, v in rates.items()},
        "process_memory_bytes": memory,
        "kept_processes": kept,
        "critical_present": {"postgres": True},
    }


def post_measurements(api: Service, host: str, experiment_id: str, ticks: int) -> float:
    t0 = time.time() - ticks
    samples = [sample(v, t0 + i, i) for i in range(ticks) for v in ("baseline", "candidate")]
    status, answer, _ = http_json(
        "POST",
        f"{api.url}/api/v1/agent/measurements",
        {"experiment_id": experiment_id, "samples": samples},
        {"X-Agent-Host-ID": host},
    )
    assert status == 202, answer
    return t0


def test_create_experiment_form_shows_the_problem_then_creates_and_starts(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    api = stack.api
    heartbeat(api, "web-1", "web")
    heartbeat(api, "db-1", "db")
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            sent.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/v1/experiments")
            else None
        ),
    )
    open_page(page, api, "experiments")
    page.locator("#create-experiment summary").click()
    form = page.get_by_role("form", name="Create an experiment")
    # The templates select and the fleet's namespaces.
    baseline = form.get_by_label("Baseline template")
    expect(baseline).to_have_value("process-baseline-v1")
    options = baseline.locator("option").all_text_contents()
    assert {"process-baseline-v1", "process-topk-v1", "process-adaptive-v1", "process-intelligent-v1"} <= set(
        options
    ), options
    expect(form.get_by_label("Candidate template")).to_have_value("process-intelligent-v1")
    expect(form.get_by_label("Billing window")).to_have_value("20m")
    expect(form.locator("input[name='target_namespaces']")).to_have_count(2)

    form.get_by_label("Name", exact=True).fill("intelligent on web")
    form.get_by_label("Candidate template").select_option("process-topk-v1")
    form.get_by_label("web", exact=True).check()
    form.get_by_label("Critical processes (comma separated)").fill("postgres, nginx")
    form.get_by_label("Duration").fill("5s")
    form.get_by_label("Load profile (optional)").select_option("process-churn")
    form.get_by_role("button", name="Create experiment").click()
    # The API's problem, naming the field; the input is marked.
    alert = page.locator("#create-outcome").get_by_role("alert")
    expect(alert).to_contain_text("field duration")
    expect(alert).to_contain_text("'duration' must be between 10")
    expect(form.get_by_label("Duration")).to_have_attribute("aria-invalid", "true")
    status, listed, _ = http_json("GET", f"{api.url}/api/v1/experiments")
    assert status == 200 and listed["experiments"] == [], listed

    # The new field is checked by the API too: under a minute is refused, naming it.
    form.get_by_label("Duration").fill("15m")
    form.get_by_label("Billing window").fill("30s")
    form.get_by_role("button", name="Create experiment").click()
    expect(alert).to_contain_text("field billing_window")
    expect(form.get_by_label("Billing window")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Duration")).not_to_have_attribute("aria-invalid", "true")

    form.get_by_label("Billing window").fill("5m")
    form.get_by_role("button", name="Create experiment").click()
    created = page.locator("[data-outcome='created']")
    expect(created).to_contain_text("pending")
    experiment_id = created.get_attribute("data-experiment-id")
    assert experiment_id
    row = page.locator(f"tr[data-experiment='{experiment_id}']")
    expect(row).to_contain_text("intelligent on web")
    expect(row).to_contain_text("process-baseline-v1 → process-topk-v1")
    expect(row).to_contain_text("namespaces web")
    expect(row).to_contain_text("pending")
    assert sent[-1] == {
        "name": "intelligent on web",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1",
        "target_namespaces": ["web"],
        "critical_processes": ["postgres", "nginx"],
        "duration": "15m",
        "warmup": "1m",
        "sample_interval": "10s",
        "billing_window": "5m",
        "load_profile": "process-churn",
        "start": False,
    }, sent[-1]
    status, stored, _ = http_json("GET", f"{api.url}/api/v1/experiments/{experiment_id}")
    assert status == 200, stored
    assert stored["duration_seconds"] == 900 and stored["load_profile"] == "process-churn", stored
    assert stored["critical_processes"] == ["postgres", "nginx"], stored
    assert stored["spec"]["billing_window_seconds"] == 300, stored

    # Then start it from the form's answer: the generator renders both arms and the task goes to web-1.
    page.get_by_role("button", name="Start it now").click()
    expect(page.locator("[data-outcome='started']")).to_contain_text("1 host(s)")
    expect(row).to_contain_text("deploying")
    screenshot(page, "dashboard-experiment-form.png")


def test_experiment_page_shows_billed_series_and_the_coverage_band(stack: Stack, page: Any) -> None:
    from playwright.sync_api import expect

    api = stack.api
    heartbeat(api, "web-1", "web")
    exp = started_experiment(api, "billed on web", "web")
    ticks = 12
    post_measurements(api, "web-1", exp["id"], ticks)
    open_page(page, api, f"experiments/{exp['id']}")

    billed = page.locator("#billed-chart")
    expect(billed).to_have_attribute("data-points", str(ticks))
    expect(billed).to_have_attribute("data-series", "baseline|candidate")
    expect(billed.locator("figcaption")).to_contain_text(
        f"Latest: baseline {1000 + 10 * (ticks - 1):,}, candidate 80"
    )
    expect(billed.locator("figcaption")).to_contain_text("trailing 10m window")
    assert billed.locator("canvas").count() >= 1

    status, analysis, _ = http_json("GET", f"{api.url}/api/v1/experiments/{exp['id']}/analysis")
    assert status == 200 and analysis["status"] == "ok", analysis
    fleet = analysis["fleet"]
    coverage = page.locator("#coverage-chart")
    expect(coverage).to_have_attribute("data-points", str(ticks))
    # The per-pair line of the host, then the fleet's mean and p10 from the analysis.
    expect(coverage).to_have_attribute("data-series", "CPU coverage (web-1)|mean (fleet)|p10 (fleet)")
    assert float(coverage.get_attribute("data-mean")) == fleet["cpu_coverage_percent"]
    assert float(coverage.get_attribute("data-p10")) == fleet["cpu_coverage_p10_percent"]
    expect(coverage.locator("figcaption")).to_contain_text(f"mean {pct(fleet['cpu_coverage_percent'])}")
    expect(coverage.locator("figcaption")).to_contain_text(f"p10 {pct(fleet['cpu_coverage_p10_percent'])}")
    assert coverage.locator("canvas").count() >= 1
    # The run is far shorter than its billing window: a warning, and Promote would need force.
    assert analysis["extrapolated"] is True, analysis
    expect(page.locator("#extrapolated")).to_contain_text("shorter than one billing window")
    expect(page.locator("#extrapolated")).to_contain_text("cannot be promoted without force")

    figures = page.locator("[data-analysis='fleet']")
    for key in (
        "billed_series_reduction_percent",
        "datapoints_per_minute_reduction_percent",
        "snapshot_series_reduction_percent",
        "cpu_coverage_p10_percent",
    ):
        expect(figures.locator(f"tr[data-figure='{key}']")).to_contain_text(pct(fleet[key]))
    expect(figures.locator("tr[data-figure='snapshot_series_reduction_percent'] th")).to_contain_text(
        "Snapshot"
    )
    fidelity = fleet["cpu_rate_fidelity"]
    expect(figures.locator("tr[data-figure='cpu_rate_fidelity']")).to_contain_text(
        f"{fidelity['median']:.4f}".rstrip("0").rstrip(".")
    )
    expect(figures.locator("tr[data-figure='price_model']")).to_contain_text(
        f"price_model {analysis['cost']['price_model']}"
    )
    expect(figures.locator("tr[data-figure='worst_host']")).to_contain_text(analysis["worst_host"]["host_id"])
    expect(page.locator("tr[data-host='web-1']")).to_contain_text(
        pct(fleet["billed_series_reduction_percent"])
    )
    expect(page.locator("#verdict")).to_have_attribute("data-verdict", analysis["verdict"])
    for criterion in analysis["criteria"]:
        expect(page.locator(f"tr[data-criterion='{criterion['name']}']")).to_contain_text(
            "passed" if criterion["passed"] else "failed"
        )
    expect(page.locator(".spec")).to_contain_text("10m")

    # More measurements arrive: the billed chart follows without a reload.
    later = time.time()
    status, answer, _ = http_json(
        "POST",
        f"{api.url}/api/v1/agent/measurements",
        {"experiment_id": exp["id"], "samples": [sample(v, later, ticks) for v in ("baseline", "candidate")]},
        {"X-Agent-Host-ID": "web-1"},
    )
    assert status == 202, answer
    expect(billed).to_have_attribute("data-points", str(ticks + 1))
    expect(coverage).to_have_attribute("data-points", re.compile(rf"^({ticks}|{ticks + 1})$"))
    screenshot(page, "dashboard-experiment-billing.png")
