// Campaigns: the list with every campaign's uplift and interval on one chart, and one campaign's report —
// sent, held out, conversions per day, uplift with its interval, net revenue.

import { getJSON } from "../api.js";
import { chart, PALETTE } from "../charts.js";
import { card, h, message, stat, table } from "../dom.js";
import { formatInt, formatNumber, t, term } from "../i18n.js";

function href(name) {
  return `#/campaigns/${encodeURIComponent(name)}`;
}

/** A difference of two rates as percentage points, 2 decimals; null when not measurable. */
function points(value) {
  return value === null || value === undefined ? null : value * 100;
}

function ppText(value) {
  const pp = points(value);
  return pp === null ? t("common.notMeasurable") : t("report.pp", { value: formatNumber(pp, 2) });
}

function optionalMoney(value) {
  return value === null || value === undefined ? t("common.none") : formatNumber(value, 2);
}

function intervalText(uplift) {
  if (!uplift || uplift.low === null || uplift.low === undefined) return t("common.notMeasurable");
  return `${formatNumber(points(uplift.low), 2)} – ${formatNumber(points(uplift.high), 2)}`;
}

/** Each report's uplift as a point on a floating bar from its low to its high bound, around a zero line. */
function upliftChart(reports, testid) {
  const measured = reports.filter((r) => r.uplift && r.uplift.value !== null && r.uplift.value !== undefined);
  if (!measured.length) return h("p", { class: "muted" }, t("common.notMeasurable"));
  return chart({
    type: "bar",
    data: {
      labels: measured.map((r) => r.name),
      datasets: [
        { type: "bar", label: t("report.interval"),
          data: measured.map((r) => [points(r.uplift.low), points(r.uplift.high)]),
          backgroundColor: measured.map((r) => (r.uplift.low > 0 ? "rgba(22, 163, 74, 0.35)"
            : r.uplift.high < 0 ? "rgba(220, 38, 38, 0.35)" : "rgba(75, 85, 99, 0.25)")),
          borderColor: PALETTE[8], borderWidth: 1, barThickness: 18 },
        { type: "line", label: t("report.uplift"), data: measured.map((r) => points(r.uplift.value)),
          showLine: false, pointRadius: 6, backgroundColor: PALETTE[0], borderColor: PALETTE[0] },
      ],
    },
    options: {
      indexAxis: "y",
      scales: { x: { title: { display: true, text: "pp" },
        grid: { color: (c) => (c.tick?.value === 0 ? "#111827" : "rgba(0,0,0,0.08)") } } },
    },
  }, { testid, height: Math.max(150, 44 * measured.length + 60) });
}

async function list() {
  const campaigns = await getJSON("campaigns");
  // Every campaign's report, for the uplift chart; one that fails leaves only its own row out.
  const reports = (await Promise.allSettled(campaigns.map((c) => getJSON(`campaigns/${encodeURIComponent(c.name)}/report`))))
    .filter((r) => r.status === "fulfilled").map((r) => r.value);
  const byName = Object.fromEntries(reports.map((r) => [r.name, r]));
  const rows = campaigns.map((c) => [
    h("a", { href: href(c.name), "data-testid": `campaign-link:${c.name}` }, c.name),
    term("kind", c.kind), term("channel", c.channel), c.trigger ?? t("common.none"),
    h("span", { class: c.paused ? "badge paused" : "badge running" }, t(c.paused ? "campaigns.paused" : "campaigns.running")),
    { text: formatInt(c.sent), testid: `campaign-sent:${c.name}` },
    { text: formatInt(c.held_out), testid: `campaign-held-out:${c.name}` },
    { text: byName[c.name] ? ppText(byName[c.name].uplift?.value) : t("common.none"), testid: `campaign-uplift:${c.name}` },
  ]);
  return h("div", { class: "page" },
    h("h1", {}, t("campaigns.title")),
    card(null, h("div", { class: "scroll-x" }, table([t("campaigns.name"), t("campaigns.kind"), t("campaigns.channel"),
      t("campaigns.trigger"), t("campaigns.status"), t("campaigns.sent"), t("campaigns.heldOut"), t("report.uplift")],
    rows, { testid: "campaigns-table", numeric: [5, 6, 7] }))),
    card(t("report.upliftChart"), upliftChart(reports, "chart-uplift-all")));
}

async function report(name) {
  const data = await getJSON(`campaigns/${encodeURIComponent(name)}/report`);
  const days = data.conversions ?? [];
  const conversions = chart({
    type: "line",
    data: {
      labels: days.map((d) => d.day),
      datasets: [
        { label: t("report.treated"), data: days.map((d) => d.treated), borderColor: PALETTE[0],
          backgroundColor: PALETTE[0], tension: 0.2 },
        { label: t("report.control"), data: days.map((d) => d.control), borderColor: PALETTE[1],
          backgroundColor: PALETTE[1], tension: 0.2, borderDash: [6, 4] },
      ],
    },
    options: { scales: { y: { beginAtZero: true } } },
  }, { testid: "chart-conversions" });
  const dayTable = table([t("report.day"), t("report.treated"), t("report.control")],
    days.map((d) => [d.day, formatInt(d.treated), formatInt(d.control)]), { testid: "conversions-table", numeric: [1, 2] });

  return h("div", { class: "page", "data-campaign": data.name },
    h("p", {}, h("a", { href: "#/campaigns" }, `← ${t("campaigns.back")}`)),
    h("h1", {}, t("report.title", { name: "" }), h("span", { "data-testid": "report-name" }, data.name)),
    h("div", { class: "stats" },
      stat(t("campaigns.sent"), formatInt(data.sent), "report-sent"),
      stat(t("campaigns.heldOut"), formatInt(data.held_out), "report-held-out"),
      stat(t("report.uplift"), ppText(data.uplift?.value), "report-uplift",
        h("span", {}, `${t("report.interval")}: `, h("span", { "data-testid": "report-interval" }, intervalText(data.uplift)))),
      stat(t("report.netRevenue"), optionalMoney(data.net_revenue), "report-net-revenue",
        data.incremental_revenue === undefined ? null
          : `${t("report.incremental")} ${optionalMoney(data.incremental_revenue)} − ${t("report.offerCost")} `
            + `${optionalMoney(data.offer_cost)}`)),
    data.uplift && data.uplift.value === null && data.uplift.reason
      ? message(t("report.notMeasurable", { reason: data.uplift.reason })) : null,
    h("div", { class: "stats small-stats" },
      data.reminders === undefined ? null : stat(t("campaigns.reminders"), formatInt(data.reminders), "report-reminders"),
      data.redemptions === undefined ? null
        : stat(t("report.redemptions"), formatInt(data.redemptions), "report-redemptions")),
    h("div", { class: "grid two" },
      card(t("report.conversions"), conversions, h("details", {}, h("summary", {}, t("report.day")),
        h("div", { class: "scroll" }, dayTable))),
      card(t("report.upliftChart"), upliftChart([data], "chart-uplift"))));
}

export async function render(name) {
  return name ? report(name) : list();
}
