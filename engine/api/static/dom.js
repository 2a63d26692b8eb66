// Building the page: elements from plain data (text only, never HTML from the API), and the few shapes every page
// uses — a stat, a table, a key/value list, a card.

import { formatFigure, t } from "./i18n.js";

/** `h("td", {class: "num", dataset: {testid: "x"}}, "12")`: an element; strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A headline figure: `testid` names its value for the browser tests. */
export function stat(label, value, testid, note) {
  return h("div", { class: "stat" },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value", "data-testid": testid }, value),
    note ? h("div", { class: "stat-note" }, note) : null);
}

export function card(title, ...body) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...body);
}

/** A table of `rows` (arrays of cells; a cell is text, a Node, or {text, class, testid}). */
export function table(headers, rows, { testid, numeric = [] } = {}) {
  const head = h("thead", {}, h("tr", {}, headers.map((label, i) =>
    h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, label))));
  const body = h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) => {
    const cls = numeric.includes(i) ? "num" : null;
    if (cell !== null && typeof cell === "object" && !(cell instanceof Node)) {
      return h("td", { class: [cls, cell.class].filter(Boolean).join(" ") || null, "data-testid": cell.testid },
        cell.text);
    }
    return h("td", { class: cls }, cell);
  }))));
  return h("table", { "data-testid": testid }, head, body);
}

// Keys that would carry who a customer is rather than what they did; never put on the page.
const PERSONAL = /(^|_)(name|first_?name|last_?name|email|e_?mail|phone|mobile|address|street|zip|postcode|contact|birth)/i;

/** Whether `value` under `key` could be a contact detail: text under a personal name (a consent flag is not). */
export function isPersonal(key, value) {
  return typeof value === "string" && PERSONAL.test(key);
}

/** A definition list of a flat or nested object; `label(key)` names the keys, personal keys are left out. */
export function keyValues(object, { label = (k) => k, testid, format = formatFigure } = {}) {
  if (!object || typeof object !== "object" || Object.keys(object).length === 0) {
    return h("p", { class: "muted" }, t("common.empty"));
  }
  const list = h("dl", { class: "kv", "data-testid": testid });
  for (const [key, value] of Object.entries(object)) {
    if (isPersonal(key, value)) continue;
    list.append(h("dt", {}, label(key)));
    if (value !== null && typeof value === "object") {
      list.append(h("dd", {}, Array.isArray(value) ? value.map(short).join(", ") : keyValues(value, { format })));
    } else {
      list.append(h("dd", { "data-key": key }, typeof value === "boolean" ? t(value ? "common.yes" : "common.no")
        : format(value)));
    }
  }
  return list;
}

/** One item of a list from the API as a short text: a string, a number, or an object's non-personal fields. */
export function short(item) {
  if (item === null || item === undefined) return t("common.none");
  if (typeof item !== "object") return typeof item === "number" ? formatFigure(item) : String(item);
  return Object.entries(item).filter(([k, v]) => !isPersonal(k, v))
    .map(([k, v]) => `${k}: ${v !== null && typeof v === "object" ? JSON.stringify(v) : typeof v === "number" ? formatFigure(v) : v}`)
    .join(" · ");
}

export function message(text, kind = "info") {
  return h("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
