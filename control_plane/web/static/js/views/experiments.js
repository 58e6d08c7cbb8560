// Experiments: every A/B run with its phase and, once analysed, its verdict.

import { get } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { duration, pct, phaseLabel, timeAgo } from "../format.js";
import { Refresher } from "../live.js";
import { pageHeader, problemBox } from "./common.js";

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
  if (!s || (s.verdict == null && s.series_reduction_percent == null)) return h("span", { class: "muted" }, "—");
  return [s.verdict ? [badge(s.verdict, `verdict-${s.verdict}`), " "] : null,
    `${pct(s.series_reduction_percent)} fewer series`];
}

export async function mount(main) {
  const holder = h("div");
  replace(main, pageHeader("Experiments"),
    h("p", { class: "muted" }, "Create experiments with the CLI or POST /api/v1/experiments; watch and act on them here."),
    holder);

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

  const refresher = new Refresher(load);
  await load();
  return {
    onEvent(event) {
      if (event.topic === "experiments" && event.kind !== "measurement") refresher.request();
    },
    reload: () => refresher.request(),
    dispose: () => refresher.stop(),
  };
}
