// Deployments: the pipeline each namespace runs, its history, a form to deploy and a rollback button.

import { del, get, post } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { timeAgo } from "../format.js";
import { Refresher } from "../live.js";
import { pageHeader, problemBox } from "./common.js";
import { shipping } from "./destinations.js";

function taskCounts(tasks) {
  const entries = Object.entries(tasks || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return entries.map(([status, n], i) => [i ? ", " : "", `${n} ${status}`]);
}

function createForm(outcome, onCreated) {
  const field = (label, name, attrs = {}) => {
    const id = `deploy-${name}`;
    return h("div", { class: "field" }, h("label", { for: id }, label), h(attrs.textarea ? "textarea" : "input", {
      id, name, ...attrs, textarea: null,
    }));
  };
  const form = h("form", { class: "form-grid", "aria-label": "Deploy a pipeline" },
    field("Name", "name", { required: true, maxlength: 100, autocomplete: "off" }),
    field("Namespace", "namespace", { required: true, pattern: "[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?",
      title: "1-63 lower-case letters, digits and hyphens",
      autocomplete: "off" }),
    field("Template", "template", { required: true, placeholder: "process-topk-v1", autocomplete: "off" }),
    field("Parameters (JSON object)", "parameters", { textarea: true, rows: 3, placeholder: "{}" }),
    field("Destination (optional)", "destination", { maxlength: 63, placeholder: "empty: keep the current one",
      autocomplete: "off" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Deploy")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    let parameters = {};
    const raw = String(data.get("parameters") || "").trim();
    if (raw) {
      try {
        parameters = JSON.parse(raw);
      } catch (error) {
        replace(outcome, problemBox({ title: "Parameters", message: `not valid JSON: ${error.message}` }));
        return;
      }
    }
    const button = form.querySelector("button");
    button.disabled = true;
    replace(outcome, h("p", { role: "status" }, "Deploying…"));
    try {
      const body = {
        name: data.get("name"), namespace: data.get("namespace"), template: data.get("template"), parameters,
      };
      const destination = String(data.get("destination") || "").trim();
      if (destination) body.destination = destination;
      const created = await post("/api/v1/pipeline-deployments", body);
      replace(outcome, h("p", { role: "status", class: "ok" },
        `Deployed ${created.id} (version ${created.version}) to ${created.hosts} host(s); `
        + (created.destination ? `ships to ${created.destination}.` : "local only (not shipped).")));
      form.reset();
      onCreated();
    } catch (error) {
      replace(outcome, problemBox(error));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function mount(main) {
  const holder = h("div");
  const outcome = h("div", { class: "outcome" });
  const refresher = new Refresher(load);

  async function rollback(deployment) {
    if (!window.confirm(`Roll namespace ${deployment.namespace} back from ${deployment.name}?`)) return;
    try {
      const result = await del(`/api/v1/pipeline-deployments/${encodeURIComponent(deployment.id)}`);
      replace(outcome, h("p", { role: "status", class: "ok" }, result.restored_deployment_id
        ? `Rolled back; ${result.restored_deployment_id} is active again on ${result.hosts} host(s).`
        : "Rolled back; the namespace has no earlier deployment to restore."));
      refresher.request();
    } catch (error) {
      replace(outcome, problemBox(error));
    }
  }

  async function load() {
    let deployments;
    try {
      ({ deployments } = await get("/api/v1/pipeline-deployments"));
    } catch (error) {
      replace(holder, problemBox(error));
      return;
    }
    replace(holder, table({
      caption: "Pipeline deployments, newest first",
      empty: "Nothing deployed yet.",
      rowAttrs: (d) => ({ "data-deployment": d.id }),
      columns: [
        { label: "Name", header: true, value: (d) => d.name },
        { label: "Namespace", value: (d) => d.namespace },
        { label: "Template", value: (d) => d.template },
        { label: "Destination", value: (d) => shipping(d.destination) },
        { label: "Status", value: (d) => badge(d.status.replace("_", " "), d.status) },
        { label: "Version", class: "num", value: (d) => d.version },
        { label: "Tasks", value: (d) => taskCounts(d.tasks) },
        { label: "Created", value: (d) => timeAgo(h, d.created_at) },
        { label: "From experiment", value: (d) => d.experiment_id
          ? h("a", { href: `#/experiments/${encodeURIComponent(d.experiment_id)}` }, d.experiment_id) : "—" },
        { label: "Actions", value: (d) => d.status === "active"
          ? h("button", { type: "button", onclick: () => rollback(d) }, "Roll back") : null },
      ],
      rows: deployments,
    }));
  }

  replace(main, pageHeader("Deployments"),
    h("details", { class: "panel" }, h("summary", {}, "Deploy a pipeline to a namespace"),
      createForm(outcome, () => refresher.request())),
    outcome, holder);
  await load();
  return {
    onEvent(event) {
      if (event.topic === "deployments" || (event.topic === "tasks" && event.data && event.data.deployment_id)) {
        refresher.request();
      }
    },
    reload: () => refresher.request(),
    dispose: () => refresher.stop(),
  };
}
