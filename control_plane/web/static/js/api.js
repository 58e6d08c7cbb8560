// Calls to the control-plane API: JSON in and out, the operator token, problem details as errors.

const TOKEN_KEY = "phoenix.apiToken";
let pendingPrompt = null;

/** An API answer that is not 2xx; `message` is the problem detail the API gave. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem && typeof problem === "object"
      ? problem.detail || problem.title
      : String(problem || "");
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem && typeof problem === "object" ? problem : null;
    this.title = (this.problem && this.problem.title) || `HTTP ${status}`;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function decode(response) {
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) return JSON.parse(text);
  return text;
}

/** Ask for the token once, whoever needs it; resolves when the operator submitted one. */
function askForToken(rejected) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  error.hidden = !rejected;
  error.textContent = rejected ? "That token was not accepted; check it and try again." : "";
  input.value = "";
  pendingPrompt = new Promise((resolve) => {
    const submit = (event) => {
      const value = input.value.trim();
      if (!value) {
        event.preventDefault();
        return;
      }
      form.removeEventListener("submit", submit);
      sessionStorage.setItem(TOKEN_KEY, value);
      pendingPrompt = null;
      resolve();
    };
    form.addEventListener("submit", submit);
    // Escape would leave the dashboard unusable; keep asking instead.
    dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
  });
  if (!dialog.open) dialog.showModal();
  input.focus();
  return pendingPrompt;
}

/** One API call; a 401 asks for the token and tries again with it. */
export async function api(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const current = token();
    if (current) headers.Authorization = `Bearer ${current}`;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      if (current) sessionStorage.removeItem(TOKEN_KEY);
      await askForToken(Boolean(current));
      continue;
    }
    const data = await decode(response);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const del = (path) => api("DELETE", path);
