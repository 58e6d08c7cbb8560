// Experiments: every A/B run with its phase and, once analysed, its verdict.

import { get } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { duration, pct, phaseLabel, timeAgo } from "../format.js";
import { Refresher } from "../live.js";
import { pageHeader, problemBox } from "./common.js";
import { createExperimentPanel } from "./experiment-form.js";

export function phaseBadge(phase) {
  return badge(phaseLabel(phase), `phase-${phase}`);
}

function targets(e) {
  const parts = [];
  if (e.target_namespaces && e.target_namespaces.length) parts.push(`namespaces ${e.target_namespaces.join(", ")}`);
  if (e.target_hosts && e.target_hosts.length) parts.push(`hosts ${e.target_hosts.join(", ")}`);
  return parts.join("; ") || "—";
}

function outcome(e) {
  const s = e.summary;
  const billed = s && s.billed_series_reduction_percent;
  if (!s || (s.verdict == null && s.series_reduction_percent == null && billed == null)) {
    return h("span", { class: "muted" }, "—");
  }
  return [s.verdict ? [badge(s.verdict, `verdict-${s.verdict}`), " "] : null,
    billed != null ? `${pct(billed)} fewer billed series` : `${pct(s.series_reduction_percent)} fewer series`,
    s.extrapolated ? [" ", badge("extrapolated", "extrapolated")] : null];
}

export async function mount(main) {
  const holder = h("div");
  const refresher = new Refresher(load);
  const { panel, outcome: created } = await createExperimentPanel(() => refresher.request());
  replace(main, pageHeader("Experiments"),
    h("p", { class: "muted" }, "Create an experiment here, with the CLI or POST /api/v1/experiments; watch and act on it here."),
    panel, created, holder);

  async function load() {
    let experiments;
    try {
      ({ experiments } = await get("/api/v1/experiments"));
    } catch (error) {
      replace(holder, problemBox(error));
      return;
    }
    replace(holder, table({
      caption: "Experiments, newest first",
      empty: "No experiment yet.",
      rowAttrs: (e) => ({ "data-experiment": e.id, "data-phase": e.phase }),
      columns: [
        { label: "Name", header: true,
          value: (e) => h("a", { href: `#/experiments/${encodeURIComponent(e.id)}` }, e.name) },
        { label: "Phase", value: (e) => phaseBadge(e.phase) },
        { label: "Baseline → candidate", value: (e) => `${e.baseline_pipeline} → ${e.candidate_pipeline}` },
        { label: "Targets", value: targets },
        { label: "Hosts", class: "num", value: (e) => (e.hosts || []).length || "—" },
        { label: "Duration", value: (e) => duration(e.duration_seconds) },
        { label: "Created", value: (e) => timeAgo(h, e.created_at) },
        { label: "Outcome", value: outcome },
      ],
      rows: experiments,
    }));
  }

  await load();
  return {
    onEvent(event) {
      if (event.topic === "experiments" && event.kind !== "measurement") refresher.request();
    },
    reload: () => refresher.request(),
    dispose: () => refresher.stop(),
  };
}
