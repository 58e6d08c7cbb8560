// The dashboard shell: hash routes, one live event stream shared by whichever view is showing.

import { h, replace } from "./dom.js";
import { Live } from "./live.js";
import * as costView from "./views/cost.js";
import * as deploymentsView from "./views/deployments.js";
import * as destinationsView from "./views/destinations.js";
import * as experimentView from "./views/experiment.js";
import * as experimentsView from "./views/experiments.js";
import * as fleetView from "./views/fleet.js";
import { problemBox } from "./views/common.js";

const ROUTES = [
  { pattern: /^#\/fleet$/, nav: "fleet", title: "Fleet", view: fleetView },
  { pattern: /^#\/deployments$/, nav: "deployments", title: "Deployments", view: deploymentsView },
  { pattern: /^#\/destinations$/, nav: "destinations", title: "Destinations", view: destinationsView },
  { pattern: /^#\/experiments$/, nav: "experiments", title: "Experiments", view: experimentsView },
  { pattern: /^#\/experiments\/([^/]+)$/, nav: "experiments", title: "Experiment", view: experimentView,
    params: (m) => ({ id: decodeURIComponent(m[1]) }) },
  { pattern: /^#\/cost$/, nav: "cost", title: "Cost flow", view: costView },
];
const TOPICS = ["agents", "tasks", "experiments", "deployments"];

const main = document.getElementById("main");
const indicator = document.getElementById("live");
let current = null;
let navigation = 0;
let live = null;

function showLiveState(state, retryIn) {
  indicator.dataset.state = state;
  indicator.textContent = state === "live" ? "Live"
    : state === "reconnecting" ? `Reconnecting${retryIn ? ` in ${retryIn}s` : ""}…` : "Connecting…";
}

async function route(initial = false) {
  const hash = location.hash || "#/fleet";
  // Plain in-page anchors (#main and the like) are not routes.
  if (!hash.startsWith("#/") && current) return;
  const match = ROUTES.map((r) => [r, r.pattern.exec(hash)]).find(([, m]) => m);
  const seq = ++navigation;
  if (current) {
    current.instance.dispose();
    current = null;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (match && link.dataset.nav === match[0].nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!match) {
    document.title = "Not found · Phoenix";
    replace(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, hash), ". ",
      h("a", { href: "#/fleet" }, "Go to the fleet.")));
    return;
  }
  const [r, m] = match;
  document.title = `${r.title} · Phoenix`;
  let instance;
  try {
    instance = await r.view.mount(main, r.params ? r.params(m) : {});
  } catch (error) {
    if (seq === navigation) replace(main, h("h1", {}, r.title), problemBox(error));
    return;
  }
  if (seq !== navigation) {
    // The operator moved on while this view was loading.
    instance.dispose();
    return;
  }
  current = { instance };
  if (!initial) main.focus({ preventScroll: true });
}

function onEvent(event) {
  if (current) current.instance.onEvent(event);
}

async function start() {
  if (!location.hash) history.replaceState(null, "", "#/fleet");
  window.addEventListener("hashchange", () => route());
  await route(true);
  // Only after the first API call, so that a token the operator was asked for is used here too.
  live = new Live(TOPICS, {
    onEvent,
    onState: showLiveState,
    onReconnected: () => current && current.instance.reload(),
  });
  live.start();
}

start();
