// Cost flow: what the metrics cost now by namespace, pipeline and metric, and after measured candidates.

import { get } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { money, num, pct } from "../format.js";
import { Refresher } from "../live.js";
import { every, pageHeader, problemBox } from "./common.js";

const METRIC_ROWS = 20;

/** Horizontal bars as a table: the numbers stay readable and reachable without the picture. */
function barChart(title, rows, dimension) {
  const max = Math.max(0, ...rows.map((r) => r.monthly_cost));
  const bar = (r) => {
    const fill = h("span", { class: "bar-fill" });
    fill.style.width = `${max > 0 ? (100 * r.monthly_cost) / max : 0}%`;
    return h("span", { class: "bar", "aria-hidden": "true" }, fill);
  };
  return h("section", { class: "bars", "data-dimension": dimension }, table({
    caption: title,
    empty: "No host reported what its collector emits in the last 15 minutes.",
    rowAttrs: (r) => ({ "data-key": r.key }),
    columns: [
      { label: dimension[0].toUpperCase() + dimension.slice(1), header: true, value: (r) => r.key },
      { label: "Monthly cost", class: "bar-cell", value: (r) => [bar(r), h("span", { class: "num" }, money(r.monthly_cost))] },
      { label: "Active series", class: "num", value: (r) => num(r.active_series, 0) },
      { label: "Datapoints/s", class: "num", value: (r) => num(r.datapoints_per_second) },
    ],
    rows,
  }));
}

export async function mount(main) {
  const holder = h("div");
  replace(main, pageHeader("Cost flow"), holder);

  async function load() {
    let flow;
    try {
      flow = await get("/api/v1/cost-flow");
    } catch (error) {
      replace(holder, problemBox(error));
      return;
    }
    const now = flow.now;
    const metrics = now.by_metric || [];
    const totals = h("dl", { class: "totals" },
      h("div", {}, h("dt", {}, "Monthly cost now"), h("dd", { id: "monthly-now" }, money(now.monthly_cost))),
      h("div", {}, h("dt", {}, "Active series"), h("dd", {}, num(now.active_series, 0))),
      h("div", {}, h("dt", {}, "Datapoints per second"), h("dd", {}, num(now.datapoints_per_second))),
      h("div", {}, h("dt", {}, "Hosts reporting"), h("dd", {}, num(now.hosts_reporting, 0))));
    const after = table({
      caption: "After each namespace's latest measured candidate",
      empty: "No experiment has completed yet.",
      rowAttrs: (r) => ({ "data-namespace": r.namespace }),
      columns: [
        { label: "Namespace", header: true, value: (r) => r.namespace },
        { label: "Experiment", value: (r) => h("a", { href: `#/experiments/${encodeURIComponent(r.experiment_id)}` },
          r.experiment || r.experiment_id) },
        { label: "Candidate", value: (r) => r.candidate_pipeline || "—" },
        { label: "Verdict", value: (r) => (r.verdict ? badge(r.verdict, `verdict-${r.verdict}`) : "—") },
        { label: "Series reduction", class: "num", value: (r) => pct(r.series_reduction_percent) },
        { label: "Measured on", class: "num", value: (r) => `${num(r.measured_on_hosts, 0)} host(s)` },
        { label: "Monthly before → after", class: "num",
          value: (r) => `${money(r.monthly_before)} → ${money(r.monthly_after)}` },
      ],
      rows: flow.after_candidates || [],
    });
    replace(holder,
      totals,
      h("p", { class: "muted small" }, `Prices: ${money(flow.prices.per_series_month)} per series-month, `
        + `${money(flow.prices.per_million_datapoints)} per million datapoints. Source: ${flow.source}.`),
      h("div", { class: "bar-grid" },
        barChart("Monthly cost by namespace", now.by_namespace || [], "namespace"),
        barChart("Monthly cost by pipeline", now.by_pipeline || [], "pipeline")),
      barChart(metrics.length > METRIC_ROWS ? `Monthly cost by metric (top ${METRIC_ROWS} of ${metrics.length})`
        : "Monthly cost by metric", metrics.slice(0, METRIC_ROWS), "metric"),
      after);
  }

  const refresher = new Refresher(load, 500);
  await load();
  // Agents report what they emit without an event; re-read now and then.
  const stopTimer = every(30000, () => refresher.request());
  return {
    onEvent(event) {
      if (event.topic === "deployments" || (event.topic === "experiments" && event.kind !== "measurement")) {
        refresher.request();
      }
    },
    reload: () => refresher.request(),
    dispose() {
      stopTimer();
      refresher.stop();
    },
  };
}
