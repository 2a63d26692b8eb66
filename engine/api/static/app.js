// The dashboard's shell: hash routes (#/overview, #/segments, #/customer/<id>, #/campaigns[/<name>], #/models),
// the language switch, the customer lookup and the read-token form. Static files only: no build step.

import { captureTokenFromAddress, setToken, token, Unauthorized } from "./api.js";
import { destroyAll } from "./charts.js";
import { h, message } from "./dom.js";
import { lang, setLang, t, translateStatic } from "./i18n.js";
import * as campaigns from "./pages/campaigns.js";
import * as customer from "./pages/customer.js";
import * as models from "./pages/models.js";
import * as overview from "./pages/overview.js";
import * as segments from "./pages/segments.js";

const PAGES = { overview, segments, customer, campaigns, models };
const view = document.getElementById("view");
const dialog = document.getElementById("token-dialog");
let shown = 0; // the latest render; an older one that finishes late is dropped

function route() {
  const [page, ...rest] = window.location.hash.replace(/^#\/?/, "").split("/");
  const name = PAGES[page] ? page : "overview";
  return { name, arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

async function show() {
  const { name, arg } = route();
  const mine = ++shown;
  destroyAll();
  view.dataset.route = name;
  view.dataset.state = "loading";
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === name);
  }
  view.replaceChildren(message(t("common.loading")));
  try {
    const page = await PAGES[name].render(arg);
    if (mine !== shown) return;
    view.replaceChildren(page);
    view.dataset.state = "ready";
  } catch (error) {
    if (mine !== shown) return;
    if (error instanceof Unauthorized) {
      view.replaceChildren(h("div", { class: "page" }, message(t("token.help")),
        h("button", { type: "button", onclick: () => askToken(false) }, t("token.title"))));
      view.dataset.state = "unauthorized";
      askToken(Boolean(token()));
      return;
    }
    view.replaceChildren(message(t("common.error", { what: t(`nav.${name}`), reason: error.message }), "error"));
    view.dataset.state = "error";
  }
}

function askToken(refused) {
  document.getElementById("token-refused").hidden = !refused;
  const input = dialog.querySelector("input");
  input.value = "";
  if (!dialog.open) dialog.showModal();
  input.focus();
}

function showLanguage() {
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang()));
  }
  translateStatic();
}

document.querySelectorAll("[data-lang]").forEach((button) => button.addEventListener("click", () => {
  if (button.dataset.lang === lang()) return;
  setLang(button.dataset.lang);
  showLanguage();
  show();
}));

document.getElementById("lookup").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = new FormData(event.target).get("id").trim();
  if (id) window.location.hash = `#/customer/${encodeURIComponent(id)}`;
});

dialog.querySelector("form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(dialog.querySelector("input").value.trim());
  dialog.close();
  show();
});

document.getElementById("token-button").addEventListener("click", () => {
  setToken(null);
  askToken(false);
});

captureTokenFromAddress();
setLang(lang());
showLanguage();
window.addEventListener("hashchange", show);
show();
