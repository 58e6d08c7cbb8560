"""Human views of the API's answers; every figure shown comes from the answer itself."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from phoenix_cli.render import (
    Right,
    age,
    kv,
    listing,
    mapping,
    money,
    num,
    pct,
    seconds,
    short,
    short_hash,
    size,
    table,
    when,
)

CRITERION_LABELS = {
    "billed_series_reduction_percent": "billed series reduction %",
    "series_reduction_percent": "series reduction %",
    "cpu_coverage_percent": "CPU coverage %",
    "cpu_coverage_p10_percent": "CPU coverage p10 %",
    "cpu_rate_deviation_percent": "CPU rate deviation %",
    "samples_per_host": "samples per host",
    "collector_overhead_ratio": "collector overhead ratio",
    "collector_cpu_percent": "collector CPU %",
    "critical_processes_missing": "critical processes missing",
}


# --- agents -----------------------------------------------------------------------------------


def agents_table(agents: list[dict[str, Any]]) -> str:
    if not agents:
        return "No agents registered."
    rows = []
    for a in agents:
        collector = a.get("collector") or {}
        rows.append(
            [
                a.get("host_id"),
                a.get("namespace"),
                a.get("status"),
                a.get("pipeline"),
                collector.get("state"),
                collector.get("restarts"),
                a.get("version"),
                age(a.get("last_seen_at")),
            ]
        )
    return table(
        ["HOST", "NAMESPACE", "STATUS", "PIPELINE", "COLLECTOR", "RESTARTS", "VERSION", "LAST SEEN"], rows
    )


def agent_view(a: dict[str, Any]) -> str:
    collector = a.get("collector") or {}
    facts = a.get("facts") or {}
    seen = a.get("last_seen_at")
    pairs: list[tuple[str, Any]] = [
        ("host", a.get("host_id")),
        ("namespace", a.get("namespace")),
        ("status", f"{a.get('status')} (last seen {age(seen)}, {when(seen)})"),
        ("first seen", when(a.get("first_seen_at"))),
        ("version", a.get("version")),
        ("labels", mapping(a.get("labels"))),
        ("pipeline", a.get("pipeline")),
        ("config hash", short_hash(a.get("config_hash"))),
        ("collector", collector.get("state")),
        ("restarts", collector.get("restarts")),
        ("last error", collector.get("last_error")),
    ]
    export = a.get("export")
    if export:
        pairs += [
            ("ships to", export.get("destination")),
            (
                "export",
                f"{export.get('state')} (sent {export.get('sent_points')}, failed "
                f"{export.get('failed_points')}, dropped {export.get('dropped_points')} points)",
            ),
            ("queue", f"{export.get('queue_size')} of {export.get('queue_capacity')} points"),
        ]
        if export.get("error"):
            pairs.append(("export error", export["error"]))
    if facts:
        pairs += [
            ("hostname", facts.get("hostname")),
            ("os", facts.get("os")),
            ("cpus", facts.get("cpus")),
            ("memory", size(facts.get("memory_bytes")) if facts.get("memory_bytes") is not None else None),
        ]
    return kv(pairs)


# --- deployments ------------------------------------------------------------------------------


def _task_counts(counts: Any) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


def shipping(destination: str | None) -> str:
    """Where a deployment's data goes."""
    return f"ships to {destination}" if destination else "local only (not shipped)"


def deployments_table(deployments: list[dict[str, Any]]) -> str:
    if not deployments:
        return "No pipeline deployments."
    rows = [
        [
            d.get("id"),
            short(d.get("name"), 30),
            d.get("namespace"),
            d.get("template"),
            d.get("status"),
            d.get("version"),
            _task_counts(d.get("tasks")),
            when(d.get("created_at")),
            (d.get("destination") or "local only") if "destination" in d else None,
        ]
        for d in deployments
    ]
    return table(
        ["ID", "NAME", "NAMESPACE", "TEMPLATE", "STATUS", "VERSION", "TASKS", "CREATED", "DESTINATION"], rows
    )


def deployment_view(d: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [
        ("id", d.get("id")),
        ("name", d.get("name")),
        ("namespace", d.get("namespace")),
        ("template", d.get("template")),
        ("parameters", mapping(d.get("parameters"))),
        ("status", d.get("status")),
        ("reason", d.get("status_reason")),
        ("max failed hosts", d.get("max_failed_hosts")),
        ("destination", shipping(d["destination"]) if "destination" in d else None),
        ("restored", when(d.get("restored_at")) if d.get("restored_at") else None),
        ("version", d.get("version")),
        ("config hash", short_hash(d.get("config_hash"))),
        ("replaces", d.get("previous_id")),
        ("experiment", d.get("experiment_id")),
        ("tasks", _task_counts(d.get("tasks"))),
        ("created", when(d.get("created_at"))),
    ]
    if "hosts" in d:
        pairs.append(("hosts", d["hosts"]))
    return kv(pairs)


# --- experiments ------------------------------------------------------------------------------


def _targets(e: dict[str, Any]) -> str:
    parts = []
    if e.get("target_namespaces"):
        parts.append("namespaces " + listing(e["target_namespaces"]))
    if e.get("target_hosts"):
        parts.append("hosts " + listing(e["target_hosts"]))
    return "; ".join(parts) or "-"


def experiments_table(experiments: list[dict[str, Any]]) -> str:
    if not experiments:
        return "No experiments."
    rows = []
    for e in experiments:
        summary = e.get("summary") or {}
        rows.append(
            [
                e.get("id"),
                short(e.get("name"), 30),
                e.get("phase"),
                e.get("baseline_pipeline"),
                e.get("candidate_pipeline"),
                short(_targets(e), 30),
                pct(summary.get("series_reduction_percent")),
                summary.get("verdict"),
                when(e.get("created_at")),
            ]
        )
    return table(
        ["ID", "NAME", "PHASE", "BASELINE", "CANDIDATE", "TARGETS", "REDUCTION", "VERDICT", "CREATED"], rows
    )


def _criteria(criteria: Any) -> str:
    if not criteria:
        return "-"
    labels = {
        "min_billed_reduction_percent": "billed series reduction >= {:g} %",
        "min_reduction_percent": "series reduction >= {:g} %",
        "min_cpu_coverage_percent": "CPU coverage >= {:g} %",
        "min_cpu_coverage_p10_percent": "CPU coverage p10 >= {:g} %",
        "max_cpu_rate_deviation_percent": "CPU rate within {:g} %",
        "max_collector_overhead_ratio": "collector overhead <= {:g}x baseline",
        "min_samples_per_host": "samples per host >= {:g}",
        "max_collector_overhead_percent": "collector CPU <= {:g} %",
    }
    return ", ".join(labels[k].format(v) if k in labels else f"{k}={v}" for k, v in criteria.items())


def _pipeline(name: Any, params: Any) -> str:
    return f"{name} ({mapping(params)})" if params else str(name)


def _candidate_shipping(e: dict[str, Any]) -> str | None:
    if "candidate_destination" not in e:
        return None  # an API from before destinations: not known, so not claimed
    destination = e["candidate_destination"]
    return f"candidate to {destination}" if destination else "candidate in shadow (measured, not shipped)"


def experiment_line(e: dict[str, Any]) -> str:
    reason = f" ({e['phase_reason']})" if e.get("phase_reason") else ""
    return f"experiment {e.get('id')}: {e.get('phase')}{reason}"


def experiment_view(e: dict[str, Any]) -> str:
    params = e.get("parameters") or {}
    summary = e.get("summary") or {}
    reason = f" - {e['phase_reason']}" if e.get("phase_reason") else ""
    pairs: list[tuple[str, Any]] = [
        ("experiment", f"{e.get('id')} ({e.get('name')})"),
        ("phase", f"{e.get('phase')} since {when(e.get('phase_changed_at'))}{reason}"),
        ("baseline", _pipeline(e.get("baseline_pipeline"), params.get("baseline"))),
        ("candidate", _pipeline(e.get("candidate_pipeline"), params.get("candidate"))),
        ("shipping", _candidate_shipping(e)),
        ("targets", _targets(e)),
        ("hosts", listing(e.get("hosts"))),
        (
            "timing",
            f"warm-up {seconds(e.get('warmup_seconds'))}, "
            f"measure {seconds(e.get('duration_seconds'))}, "
            f"sample every {seconds(e.get('sample_interval_seconds'))}",
        ),
        (
            "billing",
            None
            if e.get("billing_window_seconds") is None
            else f"window {seconds(e.get('billing_window_seconds'))}, "
            + (
                f"overhead probe {seconds(e['overhead_probe_seconds'])} per arm"
                if e.get("overhead_probe_seconds")
                else "no overhead probe"
            ),
        ),
        ("load profile", e.get("load_profile") or "none (the host's own processes)"),
        ("critical", listing(e.get("critical_processes"))),
        ("criteria", _criteria(e.get("success_criteria"))),
        ("created", when(e.get("created_at"))),
        ("started", when(e.get("started_at"))),
        ("running since", when(e.get("running_at"))),
        ("finished", when(e.get("finished_at"))),
    ]
    if e.get("promoted_deployments"):
        pairs.append(("promoted", listing(e["promoted_deployments"])))
    if e.get("rolled_back_at"):
        pairs.append(("rolled back", when(e["rolled_back_at"])))
    if summary:
        pairs.append(
            (
                "verdict",
                f"{summary.get('verdict')}: "
                f"{pct(summary.get('series_reduction_percent'))} fewer billed series, "
                f"{pct(summary.get('cpu_coverage_percent'))} of CPU covered"
                + (
                    f" (p10 {pct(summary['cpu_coverage_p10_percent'])})"
                    if "cpu_coverage_p10_percent" in summary
                    else ""
                ),
            )
        )
    out = [kv(pairs)]
    progress = e.get("progress") or {}
    if progress:
        out += [
            "",
            table(
                ["HOST", "TASK", "ERROR"],
                [
                    [h, p.get("task_status"), short(p.get("error"), 80) or None]
                    for h, p in sorted(progress.items())
                ],
            ),
        ]
    latest = e.get("latest_measurements") or {}
    if latest:
        rows = [
            [
                h,
                variant,
                _ts(m),
                m.get("billed_series"),
                m.get("active_series"),
                m.get("datapoints_per_minute"),
            ]
            for h, variants in sorted(latest.items())
            for variant, m in sorted(variants.items())
        ]
        out += [
            "",
            "Latest measurements",
            table(["HOST", "VARIANT", "AT", "BILLED SERIES", "SNAPSHOT SERIES", "DATAPOINTS/MIN"], rows),
        ]
    return "\n".join(out)


def _ts(measurement: dict[str, Any]) -> str:
    """A measurement's time: unix seconds or ISO."""
    ts = measurement.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    return when(ts)


def promotion_view(data: dict[str, Any], verb: str) -> str:
    deployments = data.get("deployments") or []
    head = f"experiment {data.get('experiment_id')}: {verb} through {len(deployments)} deployment(s)"
    if not deployments:
        return head
    rows = [[d.get("id"), d.get("hosts"), d.get("previous_id")] for d in deployments]
    return head + "\n" + table(["DEPLOYMENT", "HOSTS", "REPLACES"], rows)


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def results_view(r: dict[str, Any]) -> str:
    out = [
        f"experiment {r.get('experiment_id')} ({r.get('phase')}): {r.get('measurements', 0)} measurement(s)"
    ]
    rows = []
    for host, variants in sorted((r.get("time_series") or {}).items()):
        for variant, points in sorted(variants.items()):
            billed = [p.get("billed_series") for p in points if p.get("billed_series") is not None]
            cpu = [p["collector_cpu_percent"] for p in points if p.get("collector_cpu_percent") is not None]
            mem = [p["collector_memory_bytes"] for p in points if p.get("collector_memory_bytes") is not None]
            rows.append(
                [
                    host,
                    variant,
                    len(points),
                    billed[-1] if billed else None,
                    _mean([p.get("active_series") for p in points]),
                    _mean([p.get("datapoints_per_minute") for p in points]),
                    _mean([p.get("cpu_total_rate") for p in points]),
                    pct(max(cpu)) if cpu else None,
                    size(max(mem)) if mem else None,
                ]
            )
    if rows:
        out += [
            "",
            table(
                [
                    "HOST",
                    "VARIANT",
                    "SAMPLES",
                    "LAST BILLED",
                    "MEAN SNAPSHOT",
                    "MEAN DP/MIN",
                    "MEAN CPU RATE",
                    "MAX COLLECTOR CPU",
                    "MAX COLLECTOR MEM",
                ],
                rows,
            ),
        ]
    coverage = r.get("coverage") or {}
    if coverage:
        out += [
            "",
            table(
                ["HOST", "PAIRS", "MEAN CPU COVERAGE", "MIN CPU COVERAGE", "MEAN MEM COVERAGE"],
                [
                    [
                        host,
                        len(points),
                        pct(_mean([p.get("cpu_coverage_percent") for p in points])),
                        pct(
                            min(
                                (
                                    p["cpu_coverage_percent"]
                                    for p in points
                                    if p.get("cpu_coverage_percent") is not None
                                ),
                                default=None,
                            )
                        ),
                        pct(_mean([p.get("memory_coverage_percent") for p in points])),
                    ]
                    for host, points in sorted(coverage.items())
                ],
            ),
        ]
    summaries = r.get("host_summaries") or {}
    if summaries:
        out += ["", _hosts_table(summaries)]
    return "\n".join(out)


def _billed(h: dict[str, Any], arm: str) -> Any:
    """An arm's billed p95 from a host summary (older analyses: the snapshot under baseline_series)."""
    return h.get(f"{arm}_series")


def _hosts_table(hosts: dict[str, Any]) -> str:
    rows = []
    for host, h in sorted(hosts.items()):
        if "error" in h:
            rows.append([host, None, None, None, None, None, None, None, short(h["error"], 70)])
            continue
        failed = h.get("failed_criteria") or []
        note = listing(h.get("critical_missing")) if h.get("critical_missing") else None
        if failed:
            note = "FAIL " + ", ".join(failed) + (f"; missing {note}" if note else "")
        elif h.get("passed"):
            note = "pass"
        rows.append(
            [
                host,
                _billed(h, "baseline"),
                _billed(h, "candidate"),
                pct(h.get("billed_series_reduction_percent", h.get("series_reduction_percent"))),
                pct(h.get("datapoints_per_minute_reduction_percent")),
                pct(h.get("cpu_coverage_percent")),
                pct(h.get("cpu_coverage_p10_percent")),
                pct(h.get("memory_coverage_percent")),
                note,
            ]
        )
    return table(
        [
            "HOST",
            "BASELINE BILLED",
            "CANDIDATE BILLED",
            "REDUCTION",
            "DP/MIN REDUCTION",
            "CPU COVERAGE",
            "CPU P10",
            "MEM COVERAGE",
            "RESULT / NOTE",
        ],
        rows,
    )


# --- analysis ---------------------------------------------------------------------------------


def analysis_view(a: dict[str, Any]) -> str:
    if a.get("final"):
        state = "final"
    elif a.get("phase") in ("stopped", "failed"):
        state = f"from the measurements taken before it {a.get('phase')}"
    else:
        state = "provisional: the run has not finished"
    out = [f"Analysis of experiment {a.get('experiment_id')} ({a.get('phase')}, {state})"]
    if a.get("status") != "ok":
        out.append(f"status: {a.get('status')} - {a.get('detail') or 'no analysis'}")
        if a.get("hosts"):
            out += ["", _hosts_table(a["hosts"])]
        return "\n".join(out)
    pipelines = a.get("pipelines") or {}
    fleet = a.get("fleet") or {}
    cost = a.get("cost") or {}
    rows = []
    for variant in ("baseline", "candidate"):
        p = pipelines.get(variant) or {}
        rows.append(
            [
                variant,
                p.get("template"),
                p.get("billed_series"),
                p.get("billed_series_mean"),
                p.get("snapshot_series", p.get("active_series")),
                p.get("datapoints_per_minute"),
                p.get("new_series_per_hour"),
            ]
        )
    out += [
        "",
        table(
            [
                "PIPELINE",
                "TEMPLATE",
                "BILLED SERIES (P95)",
                "BILLED (MEAN)",
                "SNAPSHOT SERIES",
                "DATAPOINTS/MIN",
                "NEW SERIES/H",
            ],
            rows,
        ),
    ]
    spread = fleet.get("series_reduction_spread") or {}
    spread_text = (
        (
            f"  (per host: min {num(spread.get('min'), 1)} %, max {num(spread.get('max'), 1)} %, "
            f"stdev {num(spread.get('stdev'), 1)})"
        )
        if spread
        else ""
    )
    confidence = fleet.get("confidence") or {}
    missing = fleet.get("critical_missing") or []
    fidelity = fleet.get("cpu_rate_fidelity") or {}
    billed = fleet.get("billed_series_reduction_percent", fleet.get("series_reduction_percent"))
    out += [
        "",
        f"Fleet ({a.get('hosts_compared', len(a.get('hosts') or {}))} host(s) compared)",
        kv(
            [
                (
                    "billed series reduction",
                    f"{pct(billed)}{_interval(confidence.get('billed_series_reduction_percent'))}{spread_text}",
                ),
                ("snapshot series reduction", pct(fleet.get("snapshot_series_reduction_percent"))),
                ("datapoints/min reduction", pct(fleet.get("datapoints_per_minute_reduction_percent"))),
                (
                    "CPU coverage",
                    f"{pct(fleet.get('cpu_coverage_percent'))}"
                    f"{_interval(confidence.get('cpu_coverage_percent'))}, "
                    f"p10 {pct(fleet.get('cpu_coverage_p10_percent'))}",
                ),
                (
                    "memory coverage",
                    f"{pct(fleet.get('memory_coverage_percent'))}, "
                    f"p10 {pct(fleet.get('memory_coverage_p10_percent'))}",
                ),
                (
                    "CPU rate fidelity",
                    f"median {num(fidelity.get('median', fleet.get('cpu_totals_ratio')), 4)}, "
                    f"worst {num(fidelity.get('worst'), 4)} over {fidelity.get('pairs', '-')} pair(s); "
                    f"{fidelity.get('reload_pairs', 0)} reload pair(s) apart "
                    f"(worst with them {num(fidelity.get('worst_including_reloads'), 4)})",
                ),
                ("memory totals ratio", num(fleet.get("memory_totals_ratio"), 4)),
                ("samples per host", f"{fleet.get('samples_per_host', '-')} (the fewest pairs any host has)"),
                ("critical missing", listing(missing) if missing else "none"),
                ("collector overhead", _overhead(a.get("collector_overhead") or {}, fleet)),
                (
                    "agent (max)",
                    f"CPU {pct(fleet.get('agent_cpu_percent_max'))}, "
                    f"memory {size(fleet.get('agent_memory_bytes_max'))}",
                ),
                (
                    "billing window",
                    f"{seconds(a.get('billing_window_seconds'))}, "
                    f"measured {seconds(a.get('running_seconds'))}"
                    if a.get("billing_window_seconds") is not None
                    else None,
                ),
            ],
            indent="  ",
        ),
    ]
    if a.get("extrapolated"):
        out.append(
            "  EXTRAPOLATED: " + "; ".join(a.get("extrapolated_reasons") or ["less than one billing window"])
        )
    out += [
        "",
        table(
            ["COST", "MONTHLY", "ANNUAL"],
            [
                ["before", money(cost.get("monthly_before")), money(cost.get("annual_before"))],
                ["after", money(cost.get("monthly_after")), money(cost.get("annual_after"))],
                ["savings", money(cost.get("monthly_savings")), money(cost.get("annual_savings"))],
            ],
        ),
    ]
    if cost:
        out.append(
            f"(price model {cost.get('price_model', 'both')}: "
            f"{cost.get('price_per_series_month')} per billed series per month, "
            f"{cost.get('price_per_million_datapoints')} per million datapoints; "
            "billed series at their p95, datapoints as counted per minute)"
        )
    verdict = str(a.get("verdict") or "-")
    head = f"Verdict: {verdict.upper()}" + ("" if a.get("final") else " (provisional)")
    if a.get("promotable") is False and verdict == "promote":
        head += " - not promotable without --force (extrapolated)"
    out += ["", head]
    rows = [
        [
            CRITERION_LABELS.get(c.get("name"), c.get("name")),
            "not measured" if c.get("measured") is False else c.get("value"),
            Right(f"{c.get('op')} {_plain(c.get('threshold'))}"),
            ("pass" if c.get("passed") else "FAIL")
            + (f" (hosts: {short(listing(c['failing_hosts']), 40)})" if c.get("failing_hosts") else ""),
        ]
        for c in a.get("criteria") or []
    ]
    out.append(table(["CRITERION", "VALUE", "REQUIRED", "RESULT"], rows))
    worst = a.get("worst_host")
    if worst and not worst.get("passed"):
        out.append(
            f"Worst host: {worst.get('host_id')} fails {listing(worst.get('failed_criteria'))} "
            f"(billed reduction {pct(worst.get('billed_series_reduction_percent'))}, "
            f"CPU coverage {pct(worst.get('cpu_coverage_percent'))}, "
            f"p10 {pct(worst.get('cpu_coverage_p10_percent'))}, "
            f"{worst.get('pairs')} pair(s))"
        )
    hosts = a.get("hosts") or {}
    if len(hosts) > 1 or any("error" in h for h in hosts.values()):
        out += ["", _hosts_table(hosts)]
    return "\n".join(out)


def _interval(ci: Any) -> str:
    if not ci or ci.get("low") is None:
        return ""
    return f" (95% CI {num(ci['low'], 1)}-{num(ci['high'], 1)} %)"


def _overhead(overhead: dict[str, Any], fleet: dict[str, Any]) -> str:
    if overhead.get("measured"):
        base = overhead.get("baseline") or {}
        cand = overhead.get("candidate") or {}
        return (
            f"baseline alone {pct(base.get('collector_cpu_percent'))} CPU, "
            f"{size(base.get('collector_memory_bytes'))}; "
            f"candidate alone {pct(cand.get('collector_cpu_percent'))} CPU, "
            f"{size(cand.get('collector_memory_bytes'))}; "
            f"ratio {num(overhead.get('cpu_ratio'), 2)} (max over hosts)"
        )
    shared = overhead.get("shared_collector_cpu_percent", fleet.get("collector_cpu_percent_max"))
    memory = overhead.get("shared_collector_memory_bytes", fleet.get("collector_memory_bytes_max"))
    return f"not measured per arm; shared collector (both arms) {pct(shared)} CPU, {size(memory)}"


# --- destinations -----------------------------------------------------------------------------


def destinations_table(destinations: list[dict[str, Any]]) -> str:
    if not destinations:
        return "No destinations."
    rows = [
        [d.get("name"), d.get("type"), d.get("endpoint"), listing(d.get("namespaces"))] for d in destinations
    ]
    return table(["NAME", "TYPE", "ENDPOINT", "NAMESPACES"], rows)


def _tls(tls: Any) -> str:
    tls = tls or {}
    parts = [
        text
        for key, text in (
            ("ca_pem", "CA from the given PEM"),
            ("insecure", "plain text (no TLS)"),
            ("insecure_skip_verify", "certificate not verified"),
        )
        if tls.get(key)
    ]
    return ", ".join(parts) or "-"


def _timeout(value: float | None) -> str:
    # `seconds` shows whole seconds; a timeout of 2.5 s is shown as it is.
    return seconds(value) if value is None or float(value).is_integer() else f"{value:g}s"


def destination_view(d: dict[str, Any]) -> str:
    # Header values as the API shows them: masked. A value is never asked for or printed otherwise.
    return kv(
        [
            ("name", d.get("name")),
            ("type", d.get("type")),
            ("endpoint", d.get("endpoint")),
            ("headers", mapping(d.get("headers"))),
            ("tls", _tls(d.get("tls"))),
            ("compression", d.get("compression")),
            ("timeout", _timeout(d.get("timeout_seconds"))),
            ("namespaces", listing(d.get("namespaces"))),
            ("created", when(d.get("created_at"))),
            ("updated", when(d.get("updated_at"))),
        ]
    )


# --- cost flow and templates ---------------------------------------------------------------


def _cost_rows(rows: list[dict[str, Any]], top: int) -> list[list[Any]]:
    return [
        [
            short(r.get("key"), 50),
            r.get("billed_series", r.get("active_series")),
            r.get("datapoints_per_minute"),
            money(r.get("monthly_cost")),
        ]
        for r in rows[:top]
    ]


def cost_flow_view(c: dict[str, Any], top: int) -> str:
    now = c.get("now") or {}
    prices = c.get("prices") or {}
    out = [
        "Now",
        kv(
            [
                ("hosts reporting", now.get("hosts_reporting")),
                (
                    "billed series",
                    f"{num(now.get('billed_series', now.get('active_series')))}"
                    + (
                        " (snapshot: an older agent sent no billed series)"
                        if now.get("series_source") in ("snapshot", "mixed")
                        else ""
                    ),
                ),
                (
                    "datapoints/min",
                    f"{num(now.get('datapoints_per_minute'))}"
                    + (
                        " (derived from series: an older agent)"
                        if now.get("datapoints_source") in ("derived", "mixed")
                        else ""
                    ),
                ),
                ("monthly cost", money(now.get("monthly_cost"))),
                (
                    "annual cost",
                    money(now["monthly_cost"] * 12) if now.get("monthly_cost") is not None else None,
                ),
                (
                    "prices",
                    f"model {prices.get('model', 'both')}: "
                    f"{prices.get('per_series_month')} per billed series per month, "
                    f"{prices.get('per_million_datapoints')} per million datapoints",
                ),
            ],
            indent="  ",
        ),
    ]
    for key, title in (
        ("by_namespace", "NAMESPACE"),
        ("by_pipeline", "PIPELINE"),
        ("by_host", "HOST"),
        ("by_metric", "METRIC"),
    ):
        rows = now.get(key) or []
        if rows:
            out += [
                "",
                table([title, "BILLED SERIES", "DATAPOINTS/MIN", "MONTHLY COST"], _cost_rows(rows, top)),
            ]
            if len(rows) > top:
                out.append(f"(top {top} of {len(rows)} by cost; --top N for more)")
    candidates = c.get("after_candidates") or []
    out += ["", "After candidates (from completed experiments)"]
    if candidates:
        out.append(
            table(
                [
                    "NAMESPACE",
                    "EXPERIMENT",
                    "CANDIDATE",
                    "VERDICT",
                    "HOSTS",
                    "REDUCTION",
                    "MONTHLY BEFORE",
                    "MONTHLY AFTER",
                ],
                [
                    [
                        p.get("namespace"),
                        p.get("experiment_id"),
                        p.get("candidate_pipeline"),
                        p.get("verdict"),
                        p.get("measured_on_hosts"),
                        pct(p.get("billed_series_reduction_percent", p.get("series_reduction_percent"))),
                        money(p.get("monthly_before")),
                        money(p.get("monthly_after")),
                    ]
                    for p in candidates
                ],
            )
        )
    else:
        out.append("  none yet: run an experiment to measure a candidate")
    if c.get("source"):
        out += ["", f"Source: {c['source']}"]
    return "\n".join(out)


def templates_table(templates: list[dict[str, Any]]) -> str:
    if not templates:
        return "The generator has no templates."
    rows = [
        [t.get("name"), t.get("strategy"), len(t.get("parameters") or {}), short(t.get("description"), 70)]
        for t in templates
    ]
    return table(["TEMPLATE", "STRATEGY", "PARAMETERS", "DESCRIPTION"], rows)


def template_view(t: dict[str, Any]) -> str:
    out = [
        kv(
            [
                ("template", t.get("name")),
                ("strategy", t.get("strategy")),
                ("description", t.get("description")),
            ]
        )
    ]
    params = t.get("parameters") or {}
    if params:
        rows = []
        for name, p in sorted(params.items()):
            bounds = ""
            if p.get("minimum") is not None or p.get("maximum") is not None:
                bounds = f"{p.get('minimum', '')}..{p.get('maximum', '')}"
            rows.append(
                [
                    name,
                    p.get("type"),
                    _plain(p.get("default")),
                    bounds or None,
                    short(p.get("description"), 60),
                ]
            )
        out += ["", table(["PARAMETER", "TYPE", "DEFAULT", "RANGE", "DESCRIPTION"], rows)]
    return "\n".join(out)


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value)
