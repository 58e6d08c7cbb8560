// Pieces several views share: the problem box, the page header, periodic refresh.

import { h } from "../dom.js";

/** A problem the API (or the network) reported, in words. */
export function problemBox(error) {
  const title = error && error.title ? error.title : "Request failed";
  const detail = error && error.message ? error.message : String(error);
  return h("div", { class: "problem", role: "alert" }, h("strong", {}, `${title}: `), detail);
}

export function pageHeader(title, ...extra) {
  return h("div", { class: "page-head" }, h("h1", {}, title), ...extra);
}

/** Call `fn` every `ms` while the tab is visible (for figures that change without an event). */
export function every(ms, fn) {
  const id = setInterval(() => {
    if (document.visibilityState === "visible") fn();
  }, ms);
  return () => clearInterval(id);
}
