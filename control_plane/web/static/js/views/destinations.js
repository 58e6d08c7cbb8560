// Destinations: the named backends that pipelines ship to, and the namespaces shipping to each.

import { get } from "../api.js";
import { h, replace, table } from "../dom.js";
import { duration } from "../format.js";
import { Refresher } from "../live.js";
import { every, pageHeader, problemBox } from "./common.js";

/** Where a deployment's data goes: its destination, or nowhere but the host itself. */
export function shipping(destination) {
  return destination
    ? h("a", { href: "#/destinations", "data-destination": destination }, destination)
    : h("span", { class: "muted" }, "local only (not shipped)");
}

function names(list, none) {
  return list && list.length ? list.join(", ") : h("span", { class: "muted" }, none);
}

export async function mount(main) {
  const holder = h("div");
  replace(main, pageHeader("Destinations"),
    h("p", { class: "muted" }, "Create destinations with ", h("code", {}, "phoenix destinations create"), " or ",
      h("code", {}, "POST /api/v1/destinations"), ", then name one when deploying to a namespace. "
      + "Header values are secrets: they are stored encrypted and shown nowhere."),
    holder);

  async function load() {
    let destinations;
    try {
      ({ destinations } = await get("/api/v1/destinations"));
    } catch (error) {
      replace(holder, problemBox(error));
      return;
    }
    replace(holder, table({
      caption: "Where pipelines ship, by name",
      empty: "No destination yet: pipelines measure locally and ship nowhere.",
      rowAttrs: (d) => ({ "data-destination": d.name }),
      columns: [
        { label: "Name", header: true, value: (d) => d.name },
        { label: "Type", value: (d) => d.type },
        { label: "Endpoint", value: (d) => h("code", {}, d.endpoint) },
        { label: "Namespaces shipping here", value: (d) => names(d.namespaces, "none") },
        // Only the names: the values come masked, and a column of asterisks says nothing.
        { label: "Headers", value: (d) => names(Object.keys(d.headers || {}).sort(), "—") },
        { label: "Compression", value: (d) => d.compression || "—" },
        { label: "Timeout", class: "num", value: (d) => duration(d.timeout_seconds) },
      ],
      rows: destinations,
    }));
  }

  const refresher = new Refresher(load);
  await load();
  // A destination made or changed sends no event of its own; which namespaces ship there follows deployments.
  const stopTimer = every(30000, () => refresher.request());
  return {
    onEvent(event) {
      if (event.topic === "deployments") refresher.request();
    },
    reload: () => refresher.request(),
    dispose() {
      stopTimer();
      refresher.stop();
    },
  };
}
