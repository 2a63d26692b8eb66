// Models: every fitted version with its metrics, the active one marked, and each metric over the versions.

import { getJSON } from "../api.js";
import { chart, PALETTE } from "../charts.js";
import { card, h, table } from "../dom.js";
import { formatFigure, t } from "../i18n.js";

function moment(iso) {
  if (!iso) return t("common.none");
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? String(iso) : when.toISOString().slice(0, 16).replace("T", " ");
}

// Versions across, metrics down: a model has a few versions and many metrics.
function model(name, versions) {
  const metrics = [...new Set(versions.flatMap((v) => Object.keys(v.metrics ?? {})))];
  const headers = [t("models.metric"), ...versions.map((v) => h("span", {},
    h("span", { "data-testid": `model-version:${name}:${v.version}` }, v.version), " ",
    h("span", { class: v.active ? "badge running" : "badge" }, t(v.active ? "models.active" : "models.inactive"))))];
  const rows = [
    [t("models.created"), ...versions.map((v) => moment(v.created_at ?? v.created))],
    [t("models.watermark"), ...versions.map((v) => moment(v.watermark))],
    [t("models.fitSeconds"), ...versions.map((v) => formatFigure(v.fit_seconds))],
    ...metrics.map((m) => [m, ...versions.map((v) => ({ text: formatFigure(v.metrics?.[m]),
      testid: `model-metric:${name}:${v.version}:${m}` }))]),
  ];
  const versionsTable = h("div", { class: "scroll" }, table(headers, rows,
    { testid: `model-table:${name}`, numeric: versions.map((_, i) => i + 1) }));
  // The first metric's course over the versions, once there is a course to see.
  const first = metrics.find((m) => versions.some((v) => typeof v.metrics?.[m] === "number"));
  const course = versions.length > 1 && first ? chart({
    type: "line",
    data: { labels: versions.map((v) => v.version),
      datasets: [{ label: first, data: versions.map((v) => v.metrics?.[first] ?? null), borderColor: PALETTE[0],
        backgroundColor: PALETTE[0] }] },
    options: { plugins: { legend: { display: false }, title: { display: true, text: t("models.metricChart", { metric: first }) } } },
  }, { testid: `chart-model:${name}`, height: 180 }) : null;
  return h("section", { class: "card", "data-model": name },
    h("h2", {}, name, " ", h("span", { class: "muted" }, t("models.versions", { n: versions.length }))),
    versionsTable, course);
}

export async function render() {
  const versions = await getJSON("models");
  const names = [...new Set(versions.map((v) => v.name))];
  const byName = (name) => versions.filter((v) => v.name === name)
    .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  return h("div", { class: "page" },
    h("h1", {}, t("models.title")),
    names.length ? h("div", { class: "grid two" }, names.map((name) => model(name, byName(name))))
      : h("p", { class: "muted" }, t("common.empty")));
}
