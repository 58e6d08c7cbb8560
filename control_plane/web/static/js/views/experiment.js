// One experiment: phase timeline, live chart of both pipelines, per-host figures, analysis, actions.

import { get, post } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { bytes, datetime, duration, money, num, pct, phaseLabel, seconds } from "../format.js";
import { Refresher } from "../live.js";
import { phaseBadge } from "./experiments.js";
import { pageHeader, problemBox } from "./common.js";

const STEPS = ["pending", "deploying", "warming_up", "running", "analyzing", "completed"];
const FINAL = ["completed", "failed", "stopped"];
const VARIANTS = ["baseline", "candidate"];
const COLOURS = { baseline: "#2563eb", candidate: "#ea580c" };

// --- measurements ------------------------------------------------------------------------------

/** Every active-series sample per host and pipeline, deduplicated by time (ms). */
class Samples {
  constructor() {
    this.byKey = new Map();
  }

  add(host, variant, ts, value) {
    const t = seconds(ts);
    if (t === null || value === null || value === undefined || !VARIANTS.includes(variant)) return false;
    const key = `${host}\u0000${variant}`;
    let series = this.byKey.get(key);
    if (!series) {
      series = new Map();
      this.byKey.set(key, series);
    }
    // The same sample arrives through the results (ISO, ms) and the event (float seconds).
    const ms = Math.round(t * 1000);
    for (const near of [ms, ms - 1, ms + 1]) {
      if (series.has(near)) {
        series.set(near, [t, Number(value)]);
        return true;
      }
    }
    series.set(ms, [t, Number(value)]);
    return true;
  }

  /** Fleet totals per pipeline over time: each host's latest value carried forward. */
  totals() {
    const points = [];
    for (const [key, series] of this.byKey) {
      const [host, variant] = key.split("\u0000");
      for (const [t, value] of series.values()) points.push([t, host, variant, value]);
    }
    points.sort((a, b) => a[0] - b[0]);
    const last = Object.fromEntries(VARIANTS.map((v) => [v, new Map()]));
    const xs = [];
    const ys = VARIANTS.map(() => []);
    for (const [t, host, variant, value] of points) {
      last[variant].set(host, value);
      if (xs.length && xs[xs.length - 1] === t) {
        xs.pop();
        ys.forEach((y) => y.pop());
      }
      xs.push(t);
      VARIANTS.forEach((v, i) => {
        const hosts = last[v];
        ys[i].push(hosts.size ? [...hosts.values()].reduce((a, b) => a + b, 0) : null);
      });
    }
    return [xs, ...ys];
  }

  latest(host, variant) {
    const series = this.byKey.get(`${host}\u0000${variant}`);
    if (!series || !series.size) return null;
    let best = null;
    for (const point of series.values()) if (!best || point[0] > best[0]) best = point;
    return best[1];
  }

  hosts() {
    return [...new Set([...this.byKey.keys()].map((k) => k.split("\u0000")[0]))];
  }

  clear() {
    this.byKey.clear();
  }
}

// --- the charts --------------------------------------------------------------------------------

/** A uPlot time chart whose series may change (the plot is rebuilt when they do). */
class TimeChart {
  constructor(figure, caption, { axisLabel, height = 280, range = null }) {
    this.figure = figure;
    this.caption = caption;
    this.host = figure.querySelector(".chart");
    this.axisLabel = axisLabel;
    this.height = height;
    this.range = range;
    this.plot = null;
    this.shape = null;
    this.available = typeof window.uPlot === "function";
    if (!this.available) {
      replace(this.host, h("p", { class: "muted" }, "The chart library did not load; figures are in the tables."));
      return;
    }
    this.observer = new ResizeObserver(() => this.plot && this.plot.setSize({ width: this.width(), height: this.height }));
    this.observer.observe(this.host);
  }

  width() {
    return Math.max(280, this.host.clientWidth || 600);
  }

  build(series, bands) {
    if (this.plot) this.plot.destroy();
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue("--muted").trim() || "#555";
    const grid = style.getPropertyValue("--grid").trim() || "#ddd";
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const digits = this.range ? 1 : 0;
    this.plot = new window.uPlot({
      width: this.width(),
      height: this.height,
      scales: { x: { time: true }, y: this.range ? { range: this.range } : {} },
      series: [
        { label: "time" },
        ...series.map((s) => ({
          label: s.label, stroke: s.stroke, width: s.width || 2, spanGaps: true, dash: s.dash, fill: s.fill,
          points: s.points === false ? { show: false } : undefined,
          value: (_u, value) => (value === null || value === undefined ? "—" : num(value, digits)),
        })),
      ],
      bands: bands || [],
      axes: [axis, { ...axis, label: this.axisLabel, size: 70, values: (_u, ticks) => ticks.map((t) => num(t, digits)) }],
      cursor: { drag: { x: false, y: false } },
    }, [[], ...series.map(() => [])], this.host);
  }

  /** `series`: [{label, stroke, dash}], `data`: [xs, ...ys]; returns the number of points. */
  update(series, data, bands) {
    const n = data[0].length;
    this.figure.dataset.points = String(n);
    this.figure.dataset.series = series.map((s) => s.label).join("|");
    // An empty plot is only a blank box; the caption says why instead.
    this.figure.classList.toggle("empty", n === 0);
    if (!this.available) return n;
    const shape = JSON.stringify([series.map((s) => s.label), bands || []]);
    if (shape !== this.shape) {
      this.build(series, bands);
      this.shape = shape;
    }
    this.plot.setData(data);
    return n;
  }

  destroy() {
    if (this.observer) this.observer.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

const ARM_SERIES = VARIANTS.map((v) => ({ label: v, stroke: COLOURS[v], dash: v === "candidate" ? [8, 4] : undefined }));

function latestText(data) {
  const n = data[0].length;
  return VARIANTS.map((v, i) => {
    const values = data[i + 1];
    return `${v} ${n && values[n - 1] !== null ? num(values[n - 1], 0) : "—"}`;
  }).join(", ");
}

function renderActiveChart(chart, samples) {
  const data = samples.totals();
  const n = chart.update(ARM_SERIES, data);
  replace(chart.caption, n
    ? `Active series in the newest collection (a snapshot), summed over the hosts, ${n} sample time(s). `
      + `Latest: ${latestText(data)}.`
    : "No measurement yet: the chart fills in live while the experiment runs.");
}

function renderBilledChart(chart, billed, windowSeconds, anySamples) {
  const data = billed.totals();
  const n = chart.update(ARM_SERIES, data);
  const w = windowSeconds ? duration(windowSeconds) : "billing";
  let text;
  if (n) {
    text = `Billed series: distinct series with a datapoint in the trailing ${w} window, summed over the hosts, `
      + `${n} sample time(s). Latest: ${latestText(data)}.`;
  } else if (anySamples) {
    text = "No billed-series figure in the measurements: the agents (or the API) do not report billed_series yet.";
  } else {
    text = "No measurement yet: the chart fills in while the experiment runs.";
  }
  replace(chart.caption, text);
}

const HOST_COLOURS = ["#16a34a", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4f46e5", "#65a30d", "#0d9488"];
const MAX_COVERAGE_HOSTS = HOST_COLOURS.length;

/** Per-pair CPU coverage per host over time, with the fleet mean and p10 of the analysis as lines. */
function renderCoverageChart(chart, coverage, fleet) {
  const hosts = [...coverage.keys()].sort().slice(0, MAX_COVERAGE_HOSTS);
  const times = [...new Set(hosts.flatMap((host) => coverage.get(host).map((p) => p[0])))].sort((a, b) => a - b);
  const series = hosts.map((host, i) => ({ label: hosts.length > 1 ? host : `CPU coverage (${host})`, stroke: HOST_COLOURS[i] }));
  const data = [times, ...hosts.map((host) => {
    const at = new Map(coverage.get(host).map(([t, v]) => [t, v]));
    return times.map((t) => (at.has(t) ? at.get(t) : null));
  })];
  const mean = fleet ? fleet.cpu_coverage_percent : null;
  const p10 = fleet ? fleet.cpu_coverage_p10_percent : null;
  const bands = [];
  const line = (value) => times.map(() => value);
  if (times.length && mean !== null && mean !== undefined) {
    series.push({ label: "mean (fleet)", stroke: "#0f766e", width: 1.5, dash: [6, 3], points: false });
    data.push(line(mean));
  }
  if (times.length && p10 !== null && p10 !== undefined) {
    series.push({ label: "p10 (fleet)", stroke: "#b91c1c", width: 1.5, dash: [2, 3], points: false });
    data.push(line(p10));
    if (mean !== null && mean !== undefined) bands.push({ series: [series.length - 1, series.length], fill: "rgba(15,118,110,0.12)" });
  }
  const n = chart.update(series, data, bands);
  chart.figure.dataset.mean = mean === null || mean === undefined ? "" : String(mean);
  chart.figure.dataset.p10 = p10 === null || p10 === undefined ? "" : String(p10);
  const figures = [mean !== null && mean !== undefined ? `mean ${pct(mean, 2)}` : null,
    p10 !== null && p10 !== undefined ? `p10 ${pct(p10, 2)}` : null].filter(Boolean).join(", ");
  replace(chart.caption, n
    ? `CPU coverage per same-moment sample pair: the share of the baseline's process CPU (user + system) that the `
      + `candidate shows under the process's own name, ${n} pair time(s)`
      + (coverage.size > MAX_COVERAGE_HOSTS ? ` (first ${MAX_COVERAGE_HOSTS} of ${coverage.size} hosts)` : "")
      + `. Fleet: ${figures || "no mean or p10 in the analysis yet"}; the band spans p10 to mean.`
    : "No per-pair coverage yet: it needs baseline and candidate samples of the same moment"
      + " (and an API that reports coverage in the results).");
}

// --- pieces of the page ------------------------------------------------------------------------

function reachedSteps(e) {
  const reached = new Set(["pending"]);
  if (e.started_at) reached.add("deploying");
  if (e.running_at) ["warming_up", "running"].forEach((s) => reached.add(s));
  if (e.analyzing_at) reached.add("analyzing");
  if (e.phase === "completed") STEPS.forEach((s) => reached.add(s));
  const at = STEPS.indexOf(e.phase);
  if (at >= 0) STEPS.slice(0, at + 1).forEach((s) => reached.add(s));
  return reached;
}

function stepTime(e, step) {
  const times = {
    pending: e.created_at, deploying: e.started_at, running: e.running_at, analyzing: e.analyzing_at,
    completed: e.phase === "completed" ? e.finished_at : null,
  };
  if (step === e.phase) return e.phase_changed_at;
  return times[step] || null;
}

function timeline(e) {
  const reached = reachedSteps(e);
  const ended = ["failed", "stopped"].includes(e.phase);
  const items = [];
  for (const step of STEPS) {
    if (ended && step === "completed") break;
    let state = reached.has(step) ? "done" : ended ? "skipped" : "todo";
    if (step === e.phase) state = e.phase === "completed" ? "done" : "current";
    const when = reached.has(step) ? stepTime(e, step) : null;
    items.push(h("li", { class: `step step-${state}`, "data-step": step, "aria-current": step === e.phase ? "step" : null },
      h("span", { class: "step-name" }, phaseLabel(step)),
      h("span", { class: "step-time" }, when ? datetime(when) : state === "skipped" ? "not reached" : "")));
  }
  if (ended) {
    items.push(h("li", { class: `step step-${e.phase}`, "data-step": e.phase, "aria-current": "step" },
      h("span", { class: "step-name" }, e.phase), h("span", { class: "step-time" }, datetime(e.phase_changed_at))));
  }
  return h("ol", { class: "timeline", "aria-label": "Phase timeline" }, items);
}

/** The billing window of the experiment's spec, in seconds (default 20 minutes). */
function billingWindow(e) {
  const spec = e.spec || {};
  return e.billing_window_seconds ?? spec.billing_window_seconds ?? null;
}

const CRITERIA_TEXT = {
  min_billed_reduction_percent: (v) => `≥ ${num(v)} % fewer billed series`,
  min_reduction_percent: (v) => `≥ ${num(v)} % fewer series`,
  min_cpu_coverage_percent: (v) => `CPU coverage ≥ ${num(v)} %`,
  min_cpu_coverage_p10_percent: (v) => `CPU coverage p10 ≥ ${num(v)} %`,
  max_cpu_rate_deviation_percent: (v) => `CPU rate within ${num(v)} % on every pair`,
  max_collector_overhead_ratio: (v) => `collector CPU ≤ ${num(v)} × the baseline's`,
  max_collector_overhead_percent: (v) => `collector ≤ ${num(v)} % CPU`,
  min_samples_per_host: (v) => `≥ ${num(v, 0)} samples per host`,
};

function specList(e) {
  const criteria = e.success_criteria || {};
  const targets = [
    ...(e.target_namespaces || []).map((n) => `namespace ${n}`), ...(e.target_hosts || []).map((x) => `host ${x}`),
  ].join(", ");
  const windowSeconds = billingWindow(e);
  const rows = [
    ["Baseline pipeline", e.baseline_pipeline],
    ["Candidate pipeline", e.candidate_pipeline],
    ["Targets", targets || "—"],
    ["Hosts in the run", (e.hosts || []).length ? e.hosts.join(", ") : "not started"],
    ["Load profile", e.load_profile || "none (the host's own processes)"],
    ["Duration / warm-up / sample interval",
      `${duration(e.duration_seconds)} / ${duration(e.warmup_seconds)} / ${duration(e.sample_interval_seconds)}`],
    ["Billing window", windowSeconds ? duration(windowSeconds) : "default (20m)"],
    ["Critical processes", (e.critical_processes || []).join(", ") || "none"],
    ["Success criteria", [...Object.entries(criteria).map(([k, v]) => (CRITERIA_TEXT[k] ? CRITERIA_TEXT[k](v) : `${k} ${num(v)}`)),
      "no critical process missing"].join(", ")],
    ["Created", datetime(e.created_at)],
  ];
  return h("dl", { class: "spec" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

const present = (v) => v !== null && v !== undefined;
const pct2 = (v) => pct(v, 2);

/** The first of `keys` that `obj` has. */
function first(obj, ...keys) {
  if (!obj) return undefined;
  for (const k of keys) if (present(obj[k])) return obj[k];
  return undefined;
}

/** A figure given as a number or as {mean, p95, ...}: "mean X, p95 Y". */
function meanP95(value, digits = 0) {
  if (!present(value)) return "—";
  if (typeof value === "number") return num(value, digits);
  const parts = [];
  if (present(value.mean)) parts.push(`mean ${num(value.mean, digits)}`);
  if (present(value.p95)) parts.push(`p95 ${num(value.p95, digits)}`);
  if (!parts.length && present(value.value)) parts.push(num(value.value, digits));
  return parts.join(", ") || "—";
}

/** A confidence interval as [low, high] or {low, high} (or lower/upper, lo/hi). */
function ciText(ci) {
  if (!ci) return "";
  let lo;
  let hi;
  if (Array.isArray(ci)) [lo, hi] = ci;
  else {
    lo = first(ci, "low", "lower", "lo", "min");
    hi = first(ci, "high", "upper", "hi", "max");
  }
  if (!present(lo) || !present(hi)) return "";
  if (lo === hi) return "";
  // control_plane/analysis.py:confidence gives 95 % intervals.
  return ` (95 % CI ${num(lo, 1)} to ${num(hi, 1)} %)`;
}

function ciOf(f, key) {
  const short = key.replace(/_percent$/, "");
  return first(f, `${key}_ci`, `${short}_ci`, `${key}_ci95`, `${short}_ci95`)
    ?? first(f.confidence_intervals || f.ci || f.confidence || {}, key, short);
}

function perArm(a, key) {
  const f = a.fleet || {};
  const p = a.pipelines || {};
  const fleetArm = f[key] && typeof f[key] === "object" ? f[key] : null;
  return VARIANTS.map((v) => (fleetArm && present(fleetArm[v]) ? fleetArm[v] : p[v] && p[v][key]));
}

function hostsTable(e, active, billed, analysis) {
  const perHost = (analysis && analysis.hosts) || {};
  const progress = e.progress || {};
  const hosts = [...new Set([...(e.hosts || []), ...Object.keys(progress), ...active.hosts(), ...billed.hosts()])].sort();
  const figure = (host, keys, fmt) => {
    const d = perHost[host];
    if (!d || d.error) return "—";
    const value = first(d, ...keys);
    return present(value) ? fmt(value) : "—";
  };
  const worst = analysis ? analysis.worst_host ?? (analysis.fleet && analysis.fleet.worst_host) : null;
  const worstName = worst && typeof worst === "object" ? worst.host_id || worst.host : worst;
  return table({
    caption: analysis && analysis.final ? "Per host (final analysis)" : "Per host (live; figures so far)",
    empty: "No host has this experiment yet.",
    rowAttrs: (host) => ({ "data-host": host, "data-worst": host === worstName ? "true" : null }),
    columns: [
      { label: "Host", header: true, value: (host) => (host === worstName ? [host, " ", badge("worst host", "worst")] : host) },
      { label: "Task", value: (host) => (progress[host] ? badge(progress[host].task_status) : "—") },
      { label: "Billed series, baseline → candidate (latest)", class: "num",
        value: (host) => `${num(billed.latest(host, "baseline"), 0)} → ${num(billed.latest(host, "candidate"), 0)}` },
      { label: "Billed reduction", class: "num", value: (host) => figure(host, ["billed_series_reduction_percent"], pct2) },
      { label: "Snapshot series, baseline → candidate (latest)", class: "num",
        value: (host) => `${num(active.latest(host, "baseline"), 0)} → ${num(active.latest(host, "candidate"), 0)}` },
      { label: "Snapshot reduction", class: "num",
        value: (host) => figure(host, ["snapshot_series_reduction_percent", "series_reduction_percent"], pct2) },
      { label: "CPU coverage (mean / p10)", class: "num", value: (host) => `${figure(host, ["cpu_coverage_percent"], pct2)} / `
        + `${figure(host, ["cpu_coverage_p10_percent"], pct2)}` },
      { label: "Critical missing", value: (host) => figure(host, ["critical_missing"], (m) => (m.length ? m.join(", ") : "none")) },
      { label: "Criteria", value: (host) => figure(host, ["failed_criteria"],
        (failed) => (failed.length ? `failed: ${failed.map((n) => CRITERIA_LABELS[n] || n).join(", ")}` : "all passed")) },
      { label: "Problem", value: (host) => (progress[host] && progress[host].error)
        || (perHost[host] && perHost[host].error) || "" },
    ],
    rows: hosts,
  });
}

const CRITERIA_LABELS = {
  billed_series_reduction_percent: "Billed series reduction",
  series_reduction_percent: "Series reduction",
  snapshot_series_reduction_percent: "Snapshot series reduction",
  cpu_coverage_percent: "CPU coverage (mean)",
  cpu_coverage_p10_percent: "CPU coverage (p10)",
  cpu_rate_deviation_percent: "CPU rate deviation (worst pair)",
  cpu_rate_fidelity: "CPU rate fidelity",
  collector_overhead_ratio: "Collector CPU relative to the baseline's",
  collector_cpu_percent: "Collector CPU overhead",
  samples_per_host: "Samples per host (fewest)",
  min_samples_per_host: "Samples per host (fewest)",
  critical_processes_missing: "Critical processes missing",
  full_billing_window: "At least one full billing window",
};

function criterionValue(c, value) {
  if (!present(value)) return c.measured === false ? "not measured" : "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return String(value);
  if (/missing|samples|count/.test(c.name)) return num(value, 0);
  if (/ratio|fidelity/.test(c.name)) return num(value, 4);
  if (/percent/.test(c.name)) return pct(value, 2);
  return num(value, 3);
}

function criterionNote(c) {
  const parts = [];
  if (c.worst_host) parts.push(`worst host ${c.worst_host}`);
  if ((c.failing_hosts || []).length) parts.push(`failing on ${c.failing_hosts.slice(0, 10).join(", ")}`
    + (c.failing_hosts.length > 10 ? ` and ${c.failing_hosts.length - 10} more` : ""));
  if (c.note) parts.push(c.note);
  if (c.detail) parts.push(c.detail);
  return parts.join("; ");
}

const PRICE_MODELS = {
  both: "per billed series and per datapoint",
  per_series: "per billed series",
  per_datapoint: "per datapoint",
};

function priceModel(c) {
  const model = c.price_model;
  const prices = [];
  if (model !== "per_datapoint" && present(c.price_per_series_month)) {
    prices.push(`${money(c.price_per_series_month)} per billed series-month`);
  }
  if (model !== "per_series" && present(c.price_per_million_datapoints)) {
    prices.push(`${money(c.price_per_million_datapoints)} per million datapoints`);
  }
  const name = typeof model === "string" ? `${PRICE_MODELS[model] || model.replace(/_/g, " ")} (price_model ${model})` : "";
  return [name, prices.join(", ")].filter(Boolean).join(": ") || "—";
}

function overheadText(a) {
  const f = a.fleet || {};
  const o = a.collector_overhead || a.overhead;
  const agent = (cpu, mem) => (present(cpu) || present(mem) ? `agent ${pct(cpu, 2)} CPU, ${bytes(mem)}` : null);
  if (!o) {
    if (!present(f.collector_cpu_percent_max)) return null;
    return `${pct(f.collector_cpu_percent_max, 2)} CPU, ${bytes(f.collector_memory_bytes_max)} (both arms in one collector)`;
  }
  const parts = [];
  if (o.measured) {
    for (const v of VARIANTS) {
      if (o[v]) parts.push(`${v} alone ${pct(o[v].collector_cpu_percent, 2)} CPU, ${bytes(o[v].collector_memory_bytes)}`);
    }
    if (present(o.cpu_ratio)) parts.push(`candidate/baseline CPU ${num(o.cpu_ratio, 3)}`);
  } else {
    const shared = present(o.shared_collector_cpu_percent)
      ? ` (the shared collector: ${pct(o.shared_collector_cpu_percent, 2)} CPU, ${bytes(o.shared_collector_memory_bytes)})` : "";
    parts.push(`per arm not measured${o.note ? `: ${o.note}` : ""}${shared}`);
  }
  const own = agent(o.agent_cpu_percent ?? f.agent_cpu_percent_max, o.agent_memory_bytes ?? f.agent_memory_bytes_max);
  if (own) parts.push(own);
  return parts.join("; ");
}

function fidelityText(fid) {
  if (!present(fid)) return null;
  if (typeof fid !== "object") return num(fid, 4);
  let text = `${num(fid.median, 4)} / ${num(fid.worst, 4)}`;
  if (present(fid.pairs)) text += ` over ${num(fid.pairs, 0)} pair(s)`;
  if (fid.reload_pairs) text += `; ${num(fid.reload_pairs, 0)} pair(s) across a reload, worst ${num(fid.worst_including_reloads, 4)}`;
  return text;
}

function worstHostText(w) {
  if (!w) return null;
  if (typeof w === "string") return w;
  const failed = (w.failed_criteria || []).map((n) => CRITERIA_LABELS[n] || n);
  return `${w.host_id}: ${failed.length ? `fails ${failed.join(", ")}` : "passes every criterion"}; `
    + `billed reduction ${pct(w.billed_series_reduction_percent, 2)}, CPU coverage ${pct(w.cpu_coverage_percent, 2)} `
    + `(p10 ${pct(w.cpu_coverage_p10_percent, 2)}), ${num(w.pairs, 0)} pair(s)`;
}

/** How the billed figures were obtained on the hosts: measured, partial (no full window) or snapshot. */
function billedSources(a) {
  const sources = new Set();
  for (const d of Object.values(a.hosts || {})) {
    for (const v of VARIANTS) {
      const source = d && d[v] && d[v].billed_series && d[v].billed_series.source;
      if (source) sources.add(source);
    }
  }
  if (sources.has("snapshot")) return " (from snapshots: an agent did not report billed series)";
  if (sources.has("partial")) return " (no full billing window yet)";
  return "";
}

function analysisSection(a, phase, e) {
  if (!a) return h("p", { class: "muted" }, "No analysis yet.");
  let note = "Provisional: figures so far, not final.";
  if (a.final) note = "Final analysis of the running phase.";
  else if (FINAL.includes(phase)) note = `Not analysed: the experiment ended ${phase} before its analysis; figures so far.`;
  const head = h("p", {}, note);
  if (a.status !== "ok") {
    return [head, h("p", { class: "muted", "data-analysis-status": a.status }, a.detail || "Not enough data yet.")];
  }
  const f = a.fleet || {};
  const c = a.cost || {};
  const extrapolated = a.extrapolated ?? f.extrapolated;
  const windowSeconds = first(a, "billing_window_seconds") ?? first(f, "billing_window_seconds") ?? billingWindow(e);
  const observed = first(a, "running_seconds", "observed_seconds") ?? first(f, "running_seconds", "observed_seconds");
  const reasons = a.extrapolated_reasons || [];
  const warning = extrapolated ? h("div", { class: "warning", id: "extrapolated", role: "note" },
    h("strong", {}, "Extrapolated: "),
    `the run${present(observed) ? ` (${duration(observed)} measured)` : ""} is shorter than one billing window`
    + `${windowSeconds ? ` (${duration(windowSeconds)})` : ""}, so its billed figures are extrapolated. `
    + "It cannot be promoted without force.",
    reasons.length ? h("ul", {}, reasons.map((r) => h("li", {}, r))) : null) : null;

  const fidelity = f.cpu_rate_fidelity;
  const snapshot = first(f, "snapshot_series_reduction_percent") ?? f.series_reduction_percent;
  const spread = f.snapshot_series_reduction_spread || f.series_reduction_spread;
  const billedSpread = f.billed_series_reduction_spread;
  const [billedBase, billedCand] = perArm(a, "billed_series");
  const [billedMeanBase, billedMeanCand] = perArm(a, "billed_series_mean");
  const billedArm = (p95, mean) => (typeof p95 === "number" && present(mean)
    ? `p95 ${num(p95, 0)} (mean ${num(mean, 0)})` : meanP95(p95));
  const [dpmBase, dpmCand] = perArm(a, "datapoints_per_minute");
  const [churnBase, churnCand] = perArm(a, "new_series_per_hour");
  let [snapBase, snapCand] = perArm(a, "snapshot_series");
  if (!present(snapBase) && !present(snapCand)) [snapBase, snapCand] = perArm(a, "active_series");
  const rows = [
    ["billed_series_reduction_percent", "Billed series reduction (fleet)",
      present(f.billed_series_reduction_percent) ? pct(f.billed_series_reduction_percent, 2)
        + ciText(ciOf(f, "billed_series_reduction_percent"))
        + (billedSpread ? ` (hosts ${pct(billedSpread.min, 1)} to ${pct(billedSpread.max, 1)})` : "")
        + billedSources(a) : null],
    ["billed_series", "Billed series, baseline → candidate",
      present(billedBase) || present(billedCand)
        ? `${billedArm(billedBase, billedMeanBase)} → ${billedArm(billedCand, billedMeanCand)}` : null],
    ["datapoints_per_minute_reduction_percent", "Datapoints per minute reduction (measured)",
      present(f.datapoints_per_minute_reduction_percent) ? pct(f.datapoints_per_minute_reduction_percent, 2) : null],
    ["datapoints_per_minute", "Datapoints per minute, baseline → candidate",
      present(dpmBase) || present(dpmCand) ? `${meanP95(dpmBase, 1)} → ${meanP95(dpmCand, 1)}` : null],
    ["new_series_per_hour", "Churn: new series per hour, baseline → candidate",
      present(churnBase) || present(churnCand) ? `${meanP95(churnBase, 1)} → ${meanP95(churnCand, 1)}` : null],
    ["snapshot_series_reduction_percent", "Snapshot series reduction (newest collection only, not what a backend bills)",
      present(snapshot) ? pct(snapshot, 2) + (spread ? ` (hosts ${pct(spread.min, 1)} to ${pct(spread.max, 1)})` : "") : null],
    ["active_series", "Snapshot series, baseline → candidate",
      present(snapBase) || present(snapCand) ? `${meanP95(snapBase)} → ${meanP95(snapCand)}` : null],
    ["cpu_coverage_percent", "CPU coverage (time-weighted mean of the sample pairs)",
      present(f.cpu_coverage_percent) ? pct(f.cpu_coverage_percent, 2) + ciText(ciOf(f, "cpu_coverage_percent")) : null],
    ["cpu_coverage_p10_percent", "CPU coverage p10", present(f.cpu_coverage_p10_percent) ? pct(f.cpu_coverage_p10_percent, 2) : null],
    ["memory_coverage_percent", "Memory coverage (mean)", present(f.memory_coverage_percent) ? pct(f.memory_coverage_percent, 2)
      + (present(f.memory_coverage_p10_percent) ? `, p10 ${pct(f.memory_coverage_p10_percent, 2)}` : "") : null],
    ["cpu_rate_fidelity", "CPU rate fidelity, candidate/baseline total CPU rate (median / worst steady pair)",
      fidelityText(fidelity)],
    ["cpu_rate_deviation_percent", "CPU rate deviation, worst steady pair",
      present(f.cpu_rate_deviation_percent) ? pct(f.cpu_rate_deviation_percent, 3) : null],
    ["cpu_totals_ratio", "Fidelity: candidate/baseline CPU totals",
      !present(fidelity) && present(f.cpu_totals_ratio) ? num(f.cpu_totals_ratio, 4) : null],
    ["memory_totals_ratio", "Fidelity: candidate/baseline memory totals (median / worst)",
      present(f.memory_totals_fidelity) ? fidelityText(f.memory_totals_fidelity)
        : present(f.memory_totals_ratio) ? num(f.memory_totals_ratio, 4) : null],
    ["worst_host", "Worst host", worstHostText(a.worst_host)],
    ["critical_missing", "Critical processes missing", (f.critical_missing || []).length ? f.critical_missing.join(", ") : "none"],
    ["overhead", "Collector overhead", overheadText(a)],
    ["monthly", "Monthly cost, before → after", `${money(c.monthly_before)} → ${money(c.monthly_after)}`],
    ["monthly_savings", "Monthly savings", money(c.monthly_savings)],
    ["annual", "Annual cost, before → after", `${money(c.annual_before)} → ${money(c.annual_after)}`],
    ["annual_savings", "Annual savings", money(c.annual_savings)],
    ["price_model", "Price model", priceModel(c)],
  ].filter(([, , v]) => present(v));
  const figures = h("table", { class: "data figures", "data-analysis": "fleet" },
    h("caption", {}, `Fleet analysis over ${num(a.hosts_compared, 0)} host(s)`),
    h("tbody", {}, rows.map(([key, k, v]) => h("tr", { "data-figure": key },
      h("th", { scope: "row" }, k), h("td", { class: "num" }, v)))));
  const verdict = h("p", { class: "verdict" }, "Verdict: ", h("span", { id: "verdict", "data-verdict": a.verdict },
    badge(a.verdict, `verdict-${a.verdict}`)), extrapolated ? [" ", badge("extrapolated", "extrapolated")] : null,
    a.promotable === false && a.verdict === "promote" ? h("span", { class: "muted" }, " (not promotable without force)") : null);
  const criteria = table({
    caption: "Success criteria",
    rowAttrs: (cr) => ({ "data-criterion": cr.name, "data-passed": String(Boolean(cr.passed)) }),
    columns: [
      { label: "Criterion", header: true, value: (cr) => CRITERIA_LABELS[cr.name] || cr.name.replace(/_/g, " ") },
      { label: "Measured", class: "num", value: (cr) => criterionValue(cr, cr.value) },
      { label: "Required", class: "num", value: (cr) => `${cr.op || ""} ${criterionValue(cr, cr.threshold)}`.trim() },
      { label: "Result", value: (cr) => badge(cr.passed ? "passed" : "failed", cr.passed ? "passed" : "failed-check") },
      { label: "Note", value: criterionNote },
    ],
    rows: a.criteria || [],
  });
  return [head, warning, verdict, figures, criteria];
}

/** Per-host coverage points [t, cpu %] from the results, wherever this API version puts them. */
function coverageOf(results) {
  const out = new Map();
  const add = (host, list) => {
    if (!Array.isArray(list) || out.has(host)) return;
    const points = list.map((p) => [seconds(p.ts), p.cpu_coverage_percent])
      .filter(([t, v]) => t !== null && present(v)).sort((a, b) => a[0] - b[0]);
    if (points.length) out.set(host, points);
  };
  for (const [host, list] of Object.entries(results.coverage || {})) add(host, list);
  for (const [host, d] of Object.entries(results.host_summaries || {})) add(host, d && d.coverage);
  for (const [host, d] of Object.entries(results.time_series || {})) add(host, d && d.coverage);
  return out;
}

// --- the view ----------------------------------------------------------------------------------

export async function mount(main, { id }) {
  const path = `/api/v1/experiments/${encodeURIComponent(id)}`;
  let experiment = null;
  let analysis = null;
  let anySamples = false;
  const samples = new Samples();
  const billed = new Samples();
  let coverage = new Map();

  const title = h("h1", {}, id);
  const phase = h("span", { id: "experiment-phase", "aria-live": "polite" });
  const reason = h("p", { class: "reason" });
  const actionsOutcome = h("div", { class: "outcome", "aria-live": "polite" });
  const buttons = {
    start: h("button", { type: "button", class: "primary" }, "Start"),
    stop: h("button", { type: "button" }, "Stop"),
    promote: h("button", { type: "button" }, "Promote"),
    rollback: h("button", { type: "button" }, "Roll back"),
  };
  const timelineHolder = h("div");
  const specHolder = h("div");
  const chartFigure = (id) => h("figure", { class: "chart-figure", id }, h("div", { class: "chart" }), h("figcaption"));
  const figure = chartFigure("series-chart");
  const billedFigure = chartFigure("billed-chart");
  const coverageFigure = chartFigure("coverage-chart");
  const hostsHolder = h("div");
  const analysisHolder = h("div", { id: "analysis" });
  const loadError = h("div");

  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/experiments" }, "Experiments"), " / ", id),
    h("div", { class: "page-head" }, title, phase),
    reason, loadError,
    h("section", { "aria-labelledby": "actions-h" }, h("h2", { id: "actions-h", class: "visually-hidden" }, "Actions"),
      h("div", { class: "actions" }, Object.values(buttons)), actionsOutcome),
    h("section", { "aria-labelledby": "timeline-h" }, h("h2", { id: "timeline-h" }, "Phases"), timelineHolder),
    h("section", { "aria-labelledby": "billed-h" }, h("h2", { id: "billed-h" }, "Billed series per arm"), billedFigure),
    h("section", { "aria-labelledby": "coverage-h" }, h("h2", { id: "coverage-h" }, "CPU coverage band"), coverageFigure),
    h("section", { "aria-labelledby": "chart-h" }, h("h2", { id: "chart-h" }, "Active series (snapshot), both pipelines"), figure),
    h("section", { "aria-labelledby": "hosts-h" }, h("h2", { id: "hosts-h" }, "Hosts"), hostsHolder),
    h("section", { "aria-labelledby": "analysis-h" }, h("h2", { id: "analysis-h" }, "Analysis"), analysisHolder),
    h("section", { "aria-labelledby": "spec-h" }, h("h2", { id: "spec-h" }, "Specification"), specHolder));

  const chart = new TimeChart(figure, figure.querySelector("figcaption"), { axisLabel: "active series" });
  const billedChart = new TimeChart(billedFigure, billedFigure.querySelector("figcaption"), { axisLabel: "billed series" });
  const coverageChart = new TimeChart(coverageFigure, coverageFigure.querySelector("figcaption"), {
    axisLabel: "CPU coverage %", range: (_u, _min, max) => [0, Math.max(100, max || 0)],
  });
  const charts = [chart, billedChart, coverageChart];

  function renderCharts() {
    renderActiveChart(chart, samples);
    renderBilledChart(billedChart, billed, experiment ? billingWindow(experiment) : null, anySamples);
    renderCoverageChart(coverageChart, coverage, analysis && analysis.status === "ok" ? analysis.fleet : null);
  }

  function renderPhase(value) {
    replace(phase, phaseBadge(value));
    phase.dataset.phase = value;
  }

  function renderButtons() {
    const e = experiment;
    const final = FINAL.includes(e.phase);
    buttons.start.disabled = e.phase !== "pending";
    buttons.stop.disabled = final;
    const promoted = (e.promoted_deployments || []).length && !e.rolled_back_at;
    buttons.promote.disabled = e.phase !== "completed" || Boolean(promoted);
    const verdict = (analysis && analysis.verdict) || (e.summary && e.summary.verdict);
    const extrapolated = Boolean((analysis && (analysis.extrapolated || analysis.promotable === false))
      || (e.summary && e.summary.extrapolated));
    // An extrapolated run (shorter than one billing window) is never promoted without force.
    buttons.promote.textContent = e.phase === "completed" && ((verdict && verdict !== "promote") || extrapolated)
      ? "Promote anyway" : "Promote";
    buttons.rollback.disabled = e.phase === "pending";
  }

  function renderAll() {
    const e = experiment;
    document.title = `${e.name} · Phoenix`;
    replace(title, e.name);
    renderPhase(e.phase);
    replace(reason, e.phase_reason ? `${phaseLabel(e.phase)}: ${e.phase_reason}` : "");
    replace(timelineHolder, timeline(e));
    replace(specHolder, specList(e));
    replace(hostsHolder, hostsTable(e, samples, billed, analysis));
    replace(analysisHolder, analysisSection(analysis, e.phase, e));
    renderCharts();
    renderButtons();
  }

  async function loadExperiment() {
    [experiment, analysis] = await Promise.all([get(path), get(`${path}/analysis`)]);
  }

  async function loadResults() {
    const results = await get(`${path}/results`);
    samples.clear();
    billed.clear();
    anySamples = false;
    for (const [host, variants] of Object.entries(results.time_series || {})) {
      for (const variant of VARIANTS) {
        for (const p of (variants && variants[variant]) || []) {
          anySamples = true;
          samples.add(host, variant, p.ts, p.active_series);
          billed.add(host, variant, p.ts, p.billed_series);
        }
      }
    }
    coverage = coverageOf(results);
  }

  async function refresh(withResults = false) {
    try {
      await Promise.all([loadExperiment(), withResults ? loadResults() : null]);
      replace(loadError);
      renderAll();
    } catch (error) {
      replace(loadError, problemBox(error));
    }
  }

  const soon = new Refresher(() => refresh(false));
  const everything = new Refresher(() => refresh(true));
  // Measurements arrive every sample interval per host; the provisional analysis, the billed series and the
  // coverage (read from the results) need not follow each one.
  const figuresLater = new Refresher(() => refresh(true), 3000);

  async function act(name, request, describe, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return;
    const button = buttons[name];
    button.disabled = true;
    replace(actionsOutcome, h("p", { role: "status" }, `${button.textContent}…`));
    try {
      const answer = await request();
      replace(actionsOutcome, h("p", { role: "status", class: "ok", "data-outcome": name }, describe(answer)));
      await refresh(false);
    } catch (error) {
      replace(actionsOutcome, problemBox(error));
      renderButtons();
    }
  }

  const deploymentList = (answer) => (answer.deployments || []).map((d) => `${d.id} (${d.hosts} host(s))`).join(", ")
    || "no namespace to deploy to";
  buttons.start.addEventListener("click", () => act("start", () => post(`${path}/start`),
    (e) => `Started: ${phaseLabel(e.phase)}; ${(e.hosts || []).length} host(s).`));
  buttons.stop.addEventListener("click", () => act("stop", () => post(`${path}/stop`),
    (e) => `Stopped: the experiment is ${phaseLabel(e.phase)}.`,
    `Stop experiment “${experiment.name}”? Every host goes back to its previous pipeline.`));
  buttons.promote.addEventListener("click", () => {
    const force = buttons.promote.textContent === "Promote anyway";
    act("promote", () => post(`${path}/promote`, force ? { force: true } : {}),
      (answer) => `Promoted: ${deploymentList(answer)}.`,
      force ? `The verdict is not “promote”. Deploy ${experiment.candidate_pipeline} to every target namespace anyway?`
        : `Deploy ${experiment.candidate_pipeline} to every target namespace?`);
  });
  buttons.rollback.addEventListener("click", () => act("rollback", () => post(`${path}/rollback`),
    (answer) => `Rolled back: baseline ${experiment.baseline_pipeline} deployed again: ${deploymentList(answer)}.`,
    `Deploy the baseline ${experiment.baseline_pipeline} to every target namespace again?`));

  try {
    await Promise.all([loadExperiment(), loadResults()]);
    renderAll();
  } catch (error) {
    replace(main, h("p", { class: "crumbs" }, h("a", { href: "#/experiments" }, "Experiments")), problemBox(error));
    charts.forEach((c) => c.destroy());
    return { onEvent() {}, reload() {}, dispose() {} };
  }

  const mine = (event) => event.subject === id || (event.data && event.data.experiment_id === id);
  return {
    onEvent(event) {
      if (!mine(event)) return;
      if (event.topic === "experiments" && event.kind === "measurement") {
        const data = event.data || {};
        let added = false;
        for (const p of data.points || []) {
          added = samples.add(data.host_id, p.variant, p.ts, p.active_series) || added;
          billed.add(data.host_id, p.variant, p.ts, p.billed_series);
        }
        if (added) {
          anySamples = true;
          renderCharts();
          replace(hostsHolder, hostsTable(experiment, samples, billed, analysis));
          figuresLater.request();
        }
      } else if (event.kind === "experiment_phase") {
        // Show the new phase at once; the rest of the page follows with the next read.
        experiment = { ...experiment, phase: event.data.to, phase_reason: event.reason, phase_changed_at: event.ts };
        renderAll();
        soon.request();
      } else {
        soon.request();
      }
    },
    reload: () => everything.request(),
    dispose() {
      [soon, everything, figuresLater].forEach((r) => r.stop());
      charts.forEach((c) => c.destroy());
    },
  };
}
