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

// --- the chart ---------------------------------------------------------------------------------

class SeriesChart {
  constructor(figure, caption) {
    this.figure = figure;
    this.caption = caption;
    this.host = figure.querySelector(".chart");
    this.plot = null;
    this.data = [[], [], []];
    if (typeof window.uPlot !== "function") {
      replace(this.host, h("p", { class: "muted" }, "The chart library did not load; figures are in the tables."));
      return;
    }
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue("--muted").trim() || "#555";
    const grid = style.getPropertyValue("--grid").trim() || "#ddd";
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    this.plot = new window.uPlot({
      width: this.width(),
      height: 280,
      scales: { x: { time: true } },
      series: [
        { label: "time" },
        ...VARIANTS.map((v) => ({
          label: v, stroke: COLOURS[v], width: 2, spanGaps: true, dash: v === "candidate" ? [8, 4] : undefined,
          value: (_u, value) => (value === null || value === undefined ? "—" : num(value, 0)),
        })),
      ],
      axes: [axis, { ...axis, label: "active series", size: 70, values: (_u, ticks) => ticks.map((t) => num(t, 0)) }],
      cursor: { drag: { x: false, y: false } },
    }, this.data, this.host);
    this.observer = new ResizeObserver(() => this.plot && this.plot.setSize({ width: this.width(), height: 280 }));
    this.observer.observe(this.host);
  }

  width() {
    return Math.max(280, this.host.clientWidth || 600);
  }

  update(data) {
    this.data = data;
    if (this.plot) this.plot.setData(data);
    const n = data[0].length;
    this.figure.dataset.points = String(n);
    // An empty plot is only a blank box; the caption says why instead.
    this.figure.classList.toggle("empty", n === 0);
    const latest = VARIANTS.map((v, i) => {
      const values = data[i + 1];
      return `${v} ${n && values[n - 1] !== null ? num(values[n - 1], 0) : "—"}`;
    });
    replace(this.caption, n
      ? `Active series summed over the hosts, ${n} sample time(s). Latest: ${latest.join(", ")}.`
      : "No measurement yet: the chart fills in live while the experiment runs.");
  }

  destroy() {
    if (this.observer) this.observer.disconnect();
    if (this.plot) this.plot.destroy();
  }
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

function specList(e) {
  const criteria = e.success_criteria || {};
  const targets = [
    ...(e.target_namespaces || []).map((n) => `namespace ${n}`), ...(e.target_hosts || []).map((x) => `host ${x}`),
  ].join(", ");
  const rows = [
    ["Baseline pipeline", e.baseline_pipeline],
    ["Candidate pipeline", e.candidate_pipeline],
    ["Targets", targets || "—"],
    ["Hosts in the run", (e.hosts || []).length ? e.hosts.join(", ") : "not started"],
    ["Load profile", e.load_profile || "none (the host's own processes)"],
    ["Duration / warm-up / sample interval",
      `${duration(e.duration_seconds)} / ${duration(e.warmup_seconds)} / ${duration(e.sample_interval_seconds)}`],
    ["Critical processes", (e.critical_processes || []).join(", ") || "none"],
    ["Success criteria", `≥ ${num(criteria.min_reduction_percent)} % fewer series, ≥ ${num(criteria.min_cpu_coverage_percent)} % `
      + `CPU covered, collector ≤ ${num(criteria.max_collector_overhead_percent)} % CPU, no critical process missing`],
    ["Created", datetime(e.created_at)],
  ];
  return h("dl", { class: "spec" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function hostsTable(e, samples, analysis) {
  const perHost = (analysis && analysis.hosts) || {};
  const progress = e.progress || {};
  const hosts = [...new Set([...(e.hosts || []), ...Object.keys(progress), ...samples.hosts()])].sort();
  const figure = (host, key, fmt) => {
    const d = perHost[host];
    return d && !d.error && d[key] !== undefined ? fmt(d[key]) : "—";
  };
  return table({
    caption: analysis && analysis.final ? "Per host (final analysis)" : "Per host (live; figures so far)",
    empty: "No host has this experiment yet.",
    rowAttrs: (host) => ({ "data-host": host }),
    columns: [
      { label: "Host", header: true, value: (host) => host },
      { label: "Task", value: (host) => (progress[host] ? badge(progress[host].task_status) : "—") },
      { label: "Baseline series (latest)", class: "num", value: (host) => num(samples.latest(host, "baseline"), 0) },
      { label: "Candidate series (latest)", class: "num", value: (host) => num(samples.latest(host, "candidate"), 0) },
      { label: "Series reduction", class: "num", value: (host) => figure(host, "series_reduction_percent", pct) },
      { label: "CPU coverage", class: "num", value: (host) => figure(host, "cpu_coverage_percent", pct) },
      { label: "Critical missing", value: (host) => figure(host, "critical_missing", (m) => (m.length ? m.join(", ") : "none")) },
      { label: "Collector CPU", class: "num", value: (host) => figure(host, "collector_cpu_percent", pct) },
      { label: "Problem", value: (host) => (progress[host] && progress[host].error)
        || (perHost[host] && perHost[host].error) || "" },
    ],
    rows: hosts,
  });
}

const CRITERIA_LABELS = {
  series_reduction_percent: "Series reduction",
  cpu_coverage_percent: "CPU coverage of the kept processes",
  collector_cpu_percent: "Collector CPU overhead",
  critical_processes_missing: "Critical processes missing",
};

function criterionValue(c) {
  if (c.name === "critical_processes_missing") return num(c.value, 0);
  return pct(c.value, 2);
}

function analysisSection(a, phase) {
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
  const p = a.pipelines || {};
  const spread = f.series_reduction_spread;
  const rows = [
    ["Active series, baseline → candidate",
      `${num(p.baseline && p.baseline.active_series, 0)} → ${num(p.candidate && p.candidate.active_series, 0)}`],
    ["Datapoints per second, baseline → candidate",
      `${num(p.baseline && p.baseline.datapoints_per_second)} → ${num(p.candidate && p.candidate.datapoints_per_second)}`],
    ["Series reduction (fleet)", pct(f.series_reduction_percent, 2)
      + (spread ? ` (hosts ${pct(spread.min, 1)} to ${pct(spread.max, 1)})` : "")],
    ["CPU coverage of the kept processes", pct(f.cpu_coverage_percent, 2)],
    ["Memory coverage of the kept processes", pct(f.memory_coverage_percent, 2)],
    ["Fidelity: candidate/baseline CPU totals", num(f.cpu_totals_ratio, 4)],
    ["Fidelity: candidate/baseline memory totals", num(f.memory_totals_ratio, 4)],
    ["Critical processes missing", (f.critical_missing || []).length ? f.critical_missing.join(", ") : "none"],
    ["Collector overhead (max CPU, max memory)",
      `${pct(f.collector_cpu_percent_max, 2)}, ${bytes(f.collector_memory_bytes_max)}`],
    ["Monthly cost, before → after", `${money(c.monthly_before)} → ${money(c.monthly_after)}`],
    ["Monthly savings", money(c.monthly_savings)],
    ["Annual cost, before → after", `${money(c.annual_before)} → ${money(c.annual_after)}`],
    ["Annual savings", money(c.annual_savings)],
    ["Prices", `${money(c.price_per_series_month)} per series-month, `
      + `${money(c.price_per_million_datapoints)} per million datapoints`],
  ];
  const figures = h("table", { class: "data figures", "data-analysis": "fleet" },
    h("caption", {}, `Fleet analysis over ${num(a.hosts_compared, 0)} host(s)`),
    h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "num" }, v)))));
  const verdict = h("p", { class: "verdict" }, "Verdict: ", h("span", { id: "verdict", "data-verdict": a.verdict },
    badge(a.verdict, `verdict-${a.verdict}`)));
  const criteria = table({
    caption: "Success criteria",
    rowAttrs: (c) => ({ "data-criterion": c.name }),
    columns: [
      { label: "Criterion", header: true, value: (c) => CRITERIA_LABELS[c.name] || c.name },
      { label: "Measured", class: "num", value: criterionValue },
      { label: "Required", class: "num", value: (c) => `${c.op} ${criterionValue({ ...c, value: c.threshold })}` },
      { label: "Result", value: (c) => badge(c.passed ? "passed" : "failed", c.passed ? "passed" : "failed-check") },
    ],
    rows: a.criteria || [],
  });
  return [head, verdict, figures, criteria];
}

// --- the view ----------------------------------------------------------------------------------

export async function mount(main, { id }) {
  const path = `/api/v1/experiments/${encodeURIComponent(id)}`;
  let experiment = null;
  let analysis = null;
  const samples = new Samples();

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
  const caption = h("figcaption");
  const figure = h("figure", { class: "chart-figure", id: "series-chart" }, h("div", { class: "chart" }), caption);
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
    h("section", { "aria-labelledby": "chart-h" }, h("h2", { id: "chart-h" }, "Active series, both pipelines"), figure),
    h("section", { "aria-labelledby": "hosts-h" }, h("h2", { id: "hosts-h" }, "Hosts"), hostsHolder),
    h("section", { "aria-labelledby": "analysis-h" }, h("h2", { id: "analysis-h" }, "Analysis"), analysisHolder),
    h("section", { "aria-labelledby": "spec-h" }, h("h2", { id: "spec-h" }, "Specification"), specHolder));

  const chart = new SeriesChart(figure, caption);

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
    buttons.promote.textContent = e.phase === "completed" && verdict && verdict !== "promote" ? "Promote anyway" : "Promote";
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
    replace(hostsHolder, hostsTable(e, samples, analysis));
    replace(analysisHolder, analysisSection(analysis, e.phase));
    renderButtons();
  }

  async function loadExperiment() {
    [experiment, analysis] = await Promise.all([get(path), get(`${path}/analysis`)]);
  }

  async function loadResults() {
    const results = await get(`${path}/results`);
    samples.clear();
    for (const [host, variants] of Object.entries(results.time_series || {})) {
      for (const [variant, points] of Object.entries(variants)) {
        for (const p of points) samples.add(host, variant, p.ts, p.active_series);
      }
    }
    chart.update(samples.totals());
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
  // Measurements arrive every sample interval per host; the provisional analysis need not follow each one.
  const figuresLater = new Refresher(() => refresh(false), 3000);

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
    chart.destroy();
    return { onEvent() {}, reload() {}, dispose() {} };
  }

  const mine = (event) => event.subject === id || (event.data && event.data.experiment_id === id);
  return {
    onEvent(event) {
      if (!mine(event)) return;
      if (event.topic === "experiments" && event.kind === "measurement") {
        const data = event.data || {};
        let added = false;
        for (const p of data.points || []) added = samples.add(data.host_id, p.variant, p.ts, p.active_series) || added;
        if (added) {
          chart.update(samples.totals());
          replace(hostsHolder, hostsTable(experiment, samples, analysis));
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
      chart.destroy();
    },
  };
}
