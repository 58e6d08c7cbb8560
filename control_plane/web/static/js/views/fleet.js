// Fleet: every agent with its derived health, collector state and pipeline.

import { get } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { timeAgo } from "../format.js";
import { Refresher } from "../live.js";
import { every, pageHeader, problemBox } from "./common.js";

const STATUS_ORDER = ["healthy", "stale", "offline"];

function collectorCell(collector) {
  if (!collector || !collector.state) return h("span", { class: "muted" }, "not reported");
  const parts = [badge(collector.state, `collector-${collector.state}`)];
  if (collector.restarts) parts.push(h("span", { class: "muted" }, ` ${collector.restarts} restart(s)`));
  if (collector.last_error) parts.push(h("div", { class: "small error-text" }, collector.last_error));
  return parts;
}

// Where the host ships and whether its collector delivers (collector.export of its heartbeats).
function exportCell(exp) {
  if (!exp) return h("span", { class: "muted" }, "not shipped");
  const parts = [badge(exp.state || "unknown", `export-${exp.state || "unknown"}`), ` to ${exp.destination || "?"}`];
  if (exp.queue_size) parts.push(h("div", { class: "small muted" }, `${exp.queue_size} point(s) queued`));
  if (exp.failed_points || exp.dropped_points) {
    parts.push(h("div", { class: "small error-text" },
      `${exp.failed_points || 0} refused, ${exp.dropped_points || 0} dropped`));
  }
  if (exp.error) parts.push(h("div", { class: "small error-text" }, exp.error));
  return parts;
}

export async function mount(main) {
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const holder = h("div");
  replace(main, pageHeader("Fleet"), summary, holder);

  async function load() {
    let agents;
    try {
      ({ agents } = await get("/api/v1/agents"));
    } catch (error) {
      replace(holder, problemBox(error));
      return;
    }
    const counts = Object.fromEntries(STATUS_ORDER.map((s) => [s, 0]));
    for (const a of agents) counts[a.status] = (counts[a.status] || 0) + 1;
    replace(summary, `${agents.length} agent(s): `,
      STATUS_ORDER.map((s, i) => [i ? ", " : "", h("span", { "data-count": s }, `${counts[s]} ${s}`)]));
    replace(holder, table({
      caption: "Registered agents",
      empty: "No agent has registered yet. Install one with install-agent.sh.",
      rowAttrs: (a) => ({ "data-host": a.host_id, "data-status": a.status }),
      columns: [
        { label: "Host", header: true, value: (a) => a.host_id },
        { label: "Namespace", value: (a) => a.namespace || h("span", { class: "muted" }, "none") },
        { label: "Status", value: (a) => badge(a.status) },
        { label: "Last seen", value: (a) => timeAgo(h, a.last_seen_at) },
        { label: "Collector", value: (a) => collectorCell(a.collector) },
        { label: "Pipeline", value: (a) => a.pipeline || h("span", { class: "muted" }, "—") },
        { label: "Export", value: (a) => exportCell(a.export) },
        { label: "Agent version", value: (a) => a.version || "—" },
      ],
      rows: agents,
    }));
  }

  const refresher = new Refresher(load);
  await load();
  // Health is derived from the time since the last heartbeat, which sends no event: re-read it.
  const stopTimer = every(10000, () => refresher.request());
  return {
    onEvent(event) {
      if (event.topic === "agents" || event.topic === "deployments" || event.topic === "tasks") refresher.request();
    },
    reload: () => refresher.request(),
    dispose() {
      stopTimer();
      refresher.stop();
    },
  };
}
