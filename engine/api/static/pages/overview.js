// Overview: customers, revenue, dead letters and sends at a glance, with events per hour and sends by verdict.

import { getJSON } from "../api.js";
import { chart, PALETTE } from "../charts.js";
import { card, h, stat, table } from "../dom.js";
import { formatInt, formatNumber, t, term } from "../i18n.js";

/** `2017-11-03T14:00:00+00:00` as `2017-11-03 14:00` in UTC. */
export function hourLabel(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  return when.toISOString().slice(0, 16).replace("T", " ");
}

export async function render() {
  const data = await getJSON("overview");
  const hours = data.events_per_hour ?? [];
  const sends = data.sends ?? {};
  const events = hours.reduce((sum, row) => sum + row.events, 0);
  const verdicts = Object.keys(sends);

  const stats = h("div", { class: "stats" },
    stat(t("overview.customers"), formatInt(data.customers), "overview-customers",
      data.buyers === undefined ? null : t("overview.buyers", { n: formatInt(data.buyers) })),
    stat(t("overview.revenue"), formatNumber(data.revenue, 2), "overview-revenue"),
    stat(t("overview.sent"), formatInt(sends.sent ?? 0), "overview-sent"),
    stat(t("overview.deadLetters"), formatInt(data.dead_letters), "overview-dead-letters"),
    stat(hours.length ? t("overview.lastHours", { n: hours.length }) : t("overview.events"), formatInt(events),
      "overview-events"));

  const perHour = chart({
    type: "line",
    data: {
      labels: hours.map((row) => hourLabel(row.hour).slice(5)),  // MM-DD HH:MM; the year is in the heading
      datasets: [{ label: t("overview.eventsPerHour"), data: hours.map((row) => row.events),
        borderColor: PALETTE[0], backgroundColor: "rgba(37, 99, 235, 0.15)", fill: true, pointRadius: 0,
        tension: 0.2 }],
    },
    options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true },
      x: { ticks: { maxTicksLimit: 5, maxRotation: 0 } } } },
  }, { testid: "chart-events-per-hour" });

  const bySends = chart({
    type: "bar",
    data: {
      labels: verdicts.map((v) => term("verdict", v)),
      datasets: [{ label: t("overview.count"), data: verdicts.map((v) => sends[v]),
        backgroundColor: verdicts.map((_, i) => PALETTE[i % PALETTE.length]) }],
    },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  }, { testid: "chart-sends", height: Math.max(160, 34 * verdicts.length) });

  const sendsTable = table([t("overview.verdict"), t("overview.count")],
    verdicts.map((v) => [term("verdict", v), { text: formatInt(sends[v]), testid: `sends-${v}` }]),
    { testid: "sends-table", numeric: [1] });

  return h("div", { class: "page" },
    h("h1", {}, t("overview.title"),
      data.watermark ? h("span", { class: "muted asof" }, t("overview.asOf", { date: hourLabel(data.watermark) })) : null),
    stats,
    h("div", { class: "grid two" },
      card(t("overview.eventsPerHour"), perHour),
      card(t("overview.sends"), bySends, sendsTable)));
}
