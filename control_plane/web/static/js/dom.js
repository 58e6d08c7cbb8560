// Building DOM nodes from data without innerHTML, so nothing the API returns is parsed as markup.

/** Create an element: attrs may hold class, text, dataset, on<event> handlers and plain attributes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table with a caption, column headers and one row per item. */
export function table({ caption, columns, rows, empty = "Nothing yet.", rowAttrs }) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label))));
  const body = h("tbody");
  if (!rows.length) {
    body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  }
  for (const row of rows) {
    const tr = h("tr", rowAttrs ? rowAttrs(row) : {});
    for (const c of columns) {
      const cell = c.value(row);
      tr.append(c.header ? h("th", { scope: "row", class: c.class }, cell) : h("td", { class: c.class }, cell));
    }
    body.append(tr);
  }
  return h("table", { class: "data" }, caption ? h("caption", {}, caption) : null, head, body);
}

/** A labelled badge, coloured by `kind` (the text itself carries the meaning). */
export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${kind}` }, text);
}
