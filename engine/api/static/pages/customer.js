// The customer 360 view: state, segment and grade, CLV and P(alive), next purchase per category with its range,
// recommendations, preferences, offers (stamp missions, subscription) and consent. The customer is shown by id only.

import { getJSON, NotFound } from "../api.js";
import { chart, PALETTE } from "../charts.js";
import { card, h, isPersonal, keyValues, message, short, stat, table } from "../dom.js";
import { formatFigure, formatInt, formatNumber, formatPercent, t, term } from "../i18n.js";

const DAY = 86_400_000;

function epochDay(iso) {
  const when = Date.parse(iso);
  return Number.isNaN(when) ? null : Math.round(when / DAY);
}

function isoDay(day) {
  return new Date(day * DAY).toISOString().slice(0, 10);
}

/** An ISO moment as its UTC date; none for the far-future stand-in of "no end" (a subscription's). */
function dateOf(iso) {
  return iso && String(iso) < "2100" ? String(iso).slice(0, 10) : t("common.none");
}

function empty(text = t("common.empty")) {
  return h("p", { class: "muted" }, text);
}

function subhead(text) {
  return h("h3", {}, text);
}

function nextPurchase(rows) {
  if (!rows.length) return empty();
  const rangeTable = table([t("customer.category"), t("customer.date"), t("customer.range")],
    rows.map((r) => [r.category, { text: r.date ?? t("common.none"), testid: `next-date:${r.category}` },
      r.low || r.high ? `${r.low ?? "…"} – ${r.high ?? "…"}` : t("common.none")]),
    { testid: "next-purchase" });
  // Dates on a linear axis of day numbers, labelled back as ISO dates: no date adapter to vendor.
  const dated = rows.filter((r) => epochDay(r.date) !== null);
  if (!dated.length) return rangeTable;
  const bounds = dated.flatMap((r) => [r.low, r.date, r.high]).map(epochDay).filter((d) => d !== null);
  // Ticks a whole number of weeks apart, about five of them, on bounds that fall on a tick.
  const step = 7 * Math.max(1, Math.ceil((Math.max(...bounds) - Math.min(...bounds) + 2) / 5 / 7));
  const [first, last] = [Math.floor((Math.min(...bounds) - 1) / step) * step,
    Math.ceil((Math.max(...bounds) + 1) / step) * step];
  const timeline = chart({
    type: "bar",
    data: {
      labels: dated.map((r) => r.category),
      datasets: [
        { type: "bar", label: t("customer.range"),
          data: dated.map((r) => [epochDay(r.low ?? r.date), epochDay(r.high ?? r.date)]),
          backgroundColor: "rgba(22, 163, 74, 0.3)", borderColor: PALETTE[2], borderWidth: 1, barThickness: 14 },
        { type: "line", label: t("customer.date"), data: dated.map((r) => epochDay(r.date)), showLine: false,
          pointRadius: 5, backgroundColor: PALETTE[2], borderColor: PALETTE[2] },
      ],
    },
    options: {
      indexAxis: "y",
      scales: { x: { min: first, max: last, ticks: { stepSize: step, callback: (value) => isoDay(value),
        maxRotation: 0 } } },
      plugins: { tooltip: { callbacks: { label: (item) => (Array.isArray(item.raw)
        ? `${t("customer.range")}: ${isoDay(item.raw[0])} – ${isoDay(item.raw[1])}`
        : `${t("customer.date")}: ${isoDay(item.raw)}`) } } },
    },
  }, { testid: "chart-next-purchase", height: Math.max(140, 30 * dated.length + 60) });
  return h("div", {}, timeline, rangeTable);
}

function state(data) {
  const figures = keyValues(data.state, { label: (k) => term("lrfmv", k), testid: "customer-state" });
  const when = h("dl", { class: "kv" },
    h("dt", {}, t("customer.firstPurchase")), h("dd", {}, dateOf(data.first_purchase)),
    h("dt", {}, t("customer.lastPurchase")), h("dd", {}, dateOf(data.last_purchase)),
    h("dt", {}, t("customer.events")), h("dd", { "data-testid": "customer-events" }, formatInt(data.events ?? 0)));
  return h("div", { class: "split" }, figures, when);
}

function productList(items, testid) {
  return h("ol", { class: "products", "data-testid": testid }, items.map((item) => h("li", {}, short(item))));
}

function recommendations(data) {
  const parts = [];
  const lists = [["recommendations", "customer.recommended"], ["explore", "customer.explore"],
    ["recommended_categories", "customer.recommendedCategories"], ["cross_sell", "customer.crossSell"]];
  for (const [field, label] of lists) {
    const items = data[field] ?? [];
    if (items.length) parts.push(h("div", {}, subhead(t(label)), productList(items, field)));
  }
  if (parts.length) return h("div", { class: "lists" }, parts);
  const why = data.missing?.recommend;
  return empty(why ? t("customer.noRecommendations", { why }) : t("common.empty"));
}

function preferences(prefs) {
  const entries = Object.entries(prefs ?? {}).filter(([, v]) => typeof v === "number")
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!entries.length) return keyValues(prefs, { testid: "preferences" });
  const shown = entries.slice(0, 12);
  return h("div", { "data-testid": "preferences" }, chart({
    type: "bar",
    data: { labels: shown.map(([k]) => k),
      datasets: [{ label: t("customer.preference"), data: shown.map(([, v]) => v), backgroundColor: PALETTE[4] }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } },
      scales: { x: { beginAtZero: true, suggestedMax: 5, ticks: { stepSize: 1 } } } },
  }, { testid: "chart-preferences", height: 24 * shown.length + 50 }),
  h("p", { class: "muted small" }, t("customer.preferenceScale")));
}

const OFFER_COLUMNS = [["code", "customer.code"], ["campaign", "campaigns.name"], ["kind", "customer.kind"],
  ["status", "customer.status"], ["valid_until", "customer.validUntil"], ["progress", "customer.progress"]];

function offers(data) {
  const items = data.offers ?? [];
  if (!items.length) return empty();
  if (items.every((o) => o !== null && typeof o === "object" && "code" in o)) {
    return h("div", { class: "scroll" }, table(OFFER_COLUMNS.map(([, label]) => t(label)),
      items.map((o) => OFFER_COLUMNS.map(([field]) => {
        if (field === "status") return { text: term("status", o.status), testid: `offer-status:${o.code}` };
        if (field === "valid_until") return dateOf(o.valid_until);
        if (field === "kind") return term("offer", o.kind);
        return o[field] ?? t("common.none");
      })), { testid: "offers" }));
  }
  // Not the engine's offer view: every field the offers share, personal ones left out.
  const fields = [...new Set(items.flatMap((o) => Object.keys(o ?? {})))]
    .filter((k) => !items.some((o) => isPersonal(k, o?.[k])));
  return table(fields, items.map((o) => fields.map((f) => formatFigure(o?.[f]))), { testid: "offers" });
}

function programmes(data) {
  const parts = [];
  for (const mission of data.missions ?? []) {
    const needed = mission.needed ?? 0;
    parts.push(h("div", { class: "mission" },
      h("div", {}, h("strong", {}, t("customer.mission")), " ", mission.code, " · ", term("status", mission.status)),
      h("div", { class: "stamps", "data-testid": `mission:${mission.code}` },
        `${formatInt(mission.stamps)} / ${needed ? formatInt(needed) : "?"}`),
      needed ? h("progress", { max: String(needed), value: String(mission.stamps) }) : null,
      h("div", { class: "muted small" }, (mission.categories ?? []).join(", "))));
  }
  const sub = data.subscription;
  if (sub) {
    parts.push(h("dl", { class: "kv", "data-testid": "subscription" },
      h("dt", {}, t("customer.subscription")), h("dd", {}, `${sub.code} · ${term("status", sub.status)}`),
      h("dt", {}, t("customer.tier")), h("dd", { "data-testid": "subscription-tier" },
        sub.status === "offered" && sub.offered_tier ? t("customer.offeredTier", { tier: sub.offered_tier })
          : sub.tier ?? sub.offered_tier ?? t("common.none")),
      h("dt", {}, t("customer.points")), h("dd", {}, formatNumber(data.points ?? 0, 2)),
      h("dt", {}, t("customer.fees")), h("dd", {}, formatNumber(data.fees ?? 0, 2))));
  }
  return parts.length ? h("div", { class: "lists" }, parts) : empty();
}

function consent(view) {
  if (!view) return empty(t("customer.noConsent"));
  if (!Array.isArray(view.in_effect)) return keyValues(view, { testid: "consent" });
  return h("div", {},
    table([t("customer.channel"), t("customer.purpose"), t("customer.granted"), t("customer.since")],
      view.in_effect.map((c) => [term("channel", c.channel), term("purpose", c.purpose),
        { text: t(c.granted ? "common.yes" : "common.no"), testid: `consent:${c.channel}:${c.purpose}`,
          class: c.granted ? "yes" : "no" }, dateOf(c.since)]), { testid: "consent" }),
    view.reconfirmation_due
      ? h("p", { class: "muted small" }, t("customer.reconfirmation", { date: dateOf(view.reconfirmation_due) }))
      : null);
}

function categories(data) {
  const rows = data.categories ?? [];
  const horizons = data.clv_horizons ?? {};
  const parts = [];
  if (Object.keys(horizons).length) {
    parts.push(subhead(t("customer.clvHorizons")), keyValues(horizons, { label: (k) => term("clv", k),
      testid: "clv-horizons", format: (v) => (typeof v === "number" ? formatNumber(v, 2) : formatFigure(v)) }));
  }
  if (rows.length) {
    parts.push(subhead(t("customer.categories")), h("div", { class: "scroll" }, table(
      [t("customer.category"), t("customer.spend"), t("customer.baskets"), t("customer.lastDay"), t("customer.gap")],
      rows.map((c) => [c.category, formatNumber(c.spend, 2), formatInt(c.baskets), c.last_day ?? t("common.none"),
        c.gap_mean === null || c.gap_mean === undefined ? t("common.none") : formatNumber(c.gap_mean, 1)]),
      { testid: "categories", numeric: [1, 2, 4] })));
  }
  return parts.length ? h("div", {}, parts) : empty();
}

function provenance(data) {
  const versions = Object.entries(data.versions ?? {}).map(([model, version]) => `${model} ${version}`);
  const missing = Object.entries(data.missing ?? {}).map(([model, why]) => `${model}: ${why}`);
  if (!versions.length && !missing.length) return null;
  return h("p", { class: "muted small provenance" },
    versions.length ? t("customer.versions", { versions: versions.join(", ") }) : null,
    missing.length ? h("br") : null,
    missing.length ? t("customer.missing", { missing: missing.join("; ") }) : null);
}

export async function render(id) {
  if (!id) return h("div", { class: "page" }, h("h1", {}, t("nav.customer")), message(t("customer.prompt")));
  let data;
  try {
    data = await getJSON(`customers/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!(error instanceof NotFound)) throw error;
    return h("div", { class: "page" }, h("h1", {}, t("customer.title", { id })),
      message(t("customer.notFound", { id, reason: error.message }), "error"));
  }
  const any = data.next_purchase_any;
  return h("div", { class: "page", "data-customer": data.customer_id },
    h("h1", {}, t("customer.title", { id: "" }), h("span", { "data-testid": "customer-id" }, data.customer_id),
      data.watermark ? h("span", { class: "muted asof" }, t("customer.asOf", { date: dateOf(data.watermark) })) : null),
    h("div", { class: "stats" },
      stat(t("customer.segment"), term("segment", data.segment), "customer-segment"),
      stat(t("customer.grade"), term("grade", data.grade), "customer-grade"),
      stat(t("customer.clv"), formatNumber(data.clv, 2), "customer-clv"),
      stat(t("customer.pAlive"), formatPercent(data.p_alive), "customer-p-alive"),
      stat(t("customer.nextAny"), any?.date ?? t("common.none"), "customer-next-any",
        any?.low || any?.high ? `${any.low ?? "…"} – ${any.high ?? "…"}` : null)),
    h("div", { class: "grid two" },
      card(t("customer.state"), state(data)),
      card(t("customer.nextPurchase"), nextPurchase(data.next_purchase ?? []))),
    h("div", { class: "grid two" },
      card(t("customer.recommendations"), recommendations(data)),
      card(t("customer.preferences"), preferences(data.preferences))),
    h("div", { class: "grid two" },
      card(t("customer.programmes"), programmes(data)),
      card(t("customer.consent"), consent(data.consent))),
    card(t("customer.offers"), offers(data)),
    card(t("customer.detail"), categories(data)),
    provenance(data));
}
