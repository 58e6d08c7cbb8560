// The form that creates an experiment (POST /api/v1/experiments) and, if asked, starts it.

import { get, post } from "../api.js";
import { h, replace } from "../dom.js";
import { problemBox } from "./common.js";

// The API's GET /api/v1/templates lists the config generator's templates; while the generator cannot be
// reached (502), the form offers these, the templates the generator ships.
export const KNOWN_TEMPLATES = ["process-baseline-v1", "process-topk-v1", "process-adaptive-v1", "process-intelligent-v1"];
export const LOAD_PROFILES = ["realistic", "high-cardinality", "process-churn", "spike", "steady"];

// Which input shows a problem whose `field` is this spec key.
const FIELD_INPUTS = {
  name: "name",
  baseline_pipeline: "baseline_pipeline",
  candidate_pipeline: "candidate_pipeline",
  target_namespaces: "target_namespaces_other",
  target_hosts: "target_namespaces_other",
  critical_processes: "critical_processes",
  duration: "duration",
  warmup: "warmup",
  sample_interval: "sample_interval",
  billing_window: "billing_window",
  load_profile: "load_profile",
};

async function templates() {
  try {
    const answer = await get("/api/v1/templates");
    const names = (answer && answer.templates || []).map((t) => (typeof t === "string" ? t : t.name)).filter(Boolean);
    if (names.length) return { names, source: "api" };
  } catch (error) {
    // 502 while the generator is unreachable (or 404 from an older control plane): the fixed list below.
  }
  return { names: KNOWN_TEMPLATES, source: "fixed" };
}

async function namespaces() {
  try {
    const { agents } = await get("/api/v1/agents");
    return [...new Set((agents || []).map((a) => a.namespace).filter(Boolean))].sort();
  } catch (error) {
    return [];
  }
}

const splitList = (value) => String(value || "").split(",").map((s) => s.trim()).filter(Boolean);

/** The form inside a <details> panel; `onCreated(experiment)` after a successful create. */
export async function createExperimentPanel(onCreated) {
  const [{ names, source }, known] = await Promise.all([templates(), namespaces()]);
  const outcome = h("div", { class: "outcome", id: "create-outcome", "aria-live": "polite" });
  const inputs = {};
  const field = (label, name, control, hint) => {
    const id = `exp-${name}`;
    control.id = id;
    control.name = name;
    inputs[name] = control;
    const hintId = hint ? `${id}-hint` : null;
    if (hintId) control.setAttribute("aria-describedby", hintId);
    return h("div", { class: "field", "data-field": name }, h("label", { for: id }, label), control,
      hint ? h("span", { class: "small muted", id: hintId }, hint) : null);
  };
  const select = (options, selected, { empty } = {}) => h("select", {},
    empty ? h("option", { value: "" }, empty) : null,
    options.map((o) => h("option", { value: o, selected: o === selected }, o)));
  const text = (attrs) => h("input", { type: "text", autocomplete: "off", ...attrs });

  const nsBoxes = known.map((ns) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "target_namespaces", value: ns, checked: known.length === 1 }), ` ${ns}`));
  const nsField = h("fieldset", { class: "field namespaces", "data-field": "target_namespaces" },
    h("legend", {}, "Target namespaces"),
    nsBoxes.length ? h("div", { class: "checks" }, nsBoxes)
      : h("p", { class: "small muted" }, "No agent has reported a namespace yet."),
    h("label", { for: "exp-target_namespaces_other", class: "small" }, "Other namespaces (comma separated)"),
    (() => {
      const input = text({ id: "exp-target_namespaces_other", name: "target_namespaces_other", placeholder: "web, db" });
      inputs.target_namespaces_other = input;
      return input;
    })());

  const form = h("form", { class: "form-grid", "aria-label": "Create an experiment", novalidate: true },
    field("Name", "name", text({ required: true, maxlength: 100 })),
    field("Baseline template", "baseline_pipeline", select(names, names.includes("process-baseline-v1") ? "process-baseline-v1" : names[0]),
      source === "fixed" ? "The templates the config generator ships." : null),
    field("Candidate template", "candidate_pipeline",
      select(names, names.includes("process-intelligent-v1") ? "process-intelligent-v1" : names[names.length - 1])),
    nsField,
    field("Critical processes (comma separated)", "critical_processes", text({ placeholder: "postgres, nginx" })),
    field("Duration", "duration", text({ value: "10m", placeholder: "10m" }), "e.g. 600, 10m, 1h"),
    field("Warm-up", "warmup", text({ value: "1m", placeholder: "1m" })),
    field("Sample interval", "sample_interval", text({ value: "10s", placeholder: "10s" })),
    field("Billing window", "billing_window", text({ value: "20m", placeholder: "20m" }),
      "Series with data in this trailing window are billed (Grafana Cloud: 20m); at least 1m."),
    field("Load profile (optional)", "load_profile", select(LOAD_PROFILES, null, { empty: "none (the host's own processes)" })),
    h("div", { class: "field check-field" }, h("label", { class: "check" },
      h("input", { type: "checkbox", name: "start_now", id: "exp-start_now" }), " Start it right away")),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create experiment")));

  function clearInvalid() {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function showProblem(error, what) {
    const fieldName = error && error.problem && error.problem.field;
    const input = fieldName && inputs[FIELD_INPUTS[fieldName] || fieldName];
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
    replace(outcome, problemBox({
      title: `${what}${fieldName ? ` (field ${fieldName})` : ""}`,
      message: error && error.message ? error.message : String(error),
    }));
  }

  async function start(experiment, button) {
    if (button) button.disabled = true;
    replace(outcome, h("p", { role: "status" }, `Created ${experiment.id}; starting…`));
    try {
      const started = await post(`/api/v1/experiments/${encodeURIComponent(experiment.id)}/start`);
      replace(outcome, h("p", { role: "status", class: "ok", "data-outcome": "started" },
        `Started ${started.name}: ${started.phase}, ${(started.hosts || []).length} host(s). `,
        h("a", { href: `#/experiments/${encodeURIComponent(started.id)}` }, "Open it")));
    } catch (error) {
      replace(outcome, problemBox({ title: `Created ${experiment.id} but could not start it`, message: error.message }),
        h("p", {}, h("button", { type: "button", onclick: (e) => start(experiment, e.target) }, "Try to start again"),
          " ", h("a", { href: `#/experiments/${encodeURIComponent(experiment.id)}` }, "Open it")));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearInvalid();
    const data = new FormData(form);
    const body = {
      name: String(data.get("name") || "").trim(),
      baseline_pipeline: data.get("baseline_pipeline"),
      candidate_pipeline: data.get("candidate_pipeline"),
      target_namespaces: [...new Set([...data.getAll("target_namespaces"), ...splitList(data.get("target_namespaces_other"))])],
      critical_processes: splitList(data.get("critical_processes")),
      start: false,
    };
    for (const key of ["duration", "warmup", "sample_interval", "billing_window"]) {
      const raw = String(data.get(key) || "").trim();
      // A bare number is seconds; the API takes either.
      if (raw) body[key] = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
    }
    const profile = data.get("load_profile");
    if (profile) body.load_profile = profile;
    const button = form.querySelector("button[type='submit']");
    button.disabled = true;
    replace(outcome, h("p", { role: "status" }, "Creating…"));
    let created;
    try {
      created = await post("/api/v1/experiments", body);
    } catch (error) {
      showProblem(error, "Not created");
      button.disabled = false;
      return;
    }
    button.disabled = false;
    onCreated(created);
    if (data.get("start_now")) {
      await start(created);
    } else {
      replace(outcome, h("p", { role: "status", class: "ok", "data-outcome": "created", "data-experiment-id": created.id },
        `Created ${created.name} (${created.id}), pending. `,
        h("button", { type: "button", class: "primary", onclick: (e) => start(created, e.target) }, "Start it now"),
        " ", h("a", { href: `#/experiments/${encodeURIComponent(created.id)}` }, "Open it")));
    }
    form.reset();
  });

  const panel = h("details", { class: "panel", id: "create-experiment" },
    h("summary", {}, "Create an experiment"), form);
  return { panel, outcome };
}
