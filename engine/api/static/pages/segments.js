// Segments: their sizes, CLV quartiles, LRFMV profiles, and the cohort table of CLV by first-purchase month.

import { getJSON } from "../api.js";
import { chart, PALETTE } from "../charts.js";
import { card, h, table } from "../dom.js";
import { formatFigure, formatInt, formatNumber, formatPercent, t, term } from "../i18n.js";

/** A profile figure as one number: the figure itself, or the mean (else median) of its distribution. */
function figure(value) {
  if (value !== null && typeof value === "object") return value.mean ?? value.p50 ?? null;
  return value;
}

export async function render() {
  const data = await getJSON("segments");
  const segments = data.segments ?? [];
  const cohorts = data.cohorts ?? [];
  const total = segments.reduce((sum, s) => sum + s.size, 0);
  const names = segments.map((s) => term("segment", s.name));

  const sizes = chart({
    type: "bar",
    data: { labels: names, datasets: [{ label: t("segments.size"), data: segments.map((s) => s.size),
      backgroundColor: segments.map((_, i) => PALETTE[i % PALETTE.length]) }] },
    options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
  }, { testid: "chart-segment-sizes" });

  // The box of p25..p75 as a floating bar, the median and the mean as points on it.
  const clv = chart({
    type: "bar",
    data: {
      labels: names,
      datasets: [
        { type: "bar", label: `${t("clv.p25")} – ${t("clv.p75")}`,
          data: segments.map((s) => [s.clv?.p25 ?? null, s.clv?.p75 ?? null]),
          backgroundColor: "rgba(37, 99, 235, 0.35)", borderColor: PALETTE[0], borderWidth: 1 },
        { type: "line", label: t("clv.p50"), data: segments.map((s) => s.clv?.p50 ?? null), showLine: false,
          pointStyle: "line", pointRadius: 14, pointBorderWidth: 3, borderColor: PALETTE[3] },
        { type: "line", label: t("clv.mean"), data: segments.map((s) => s.clv?.mean ?? null), showLine: false,
          pointRadius: 5, backgroundColor: PALETTE[1], borderColor: PALETTE[1] },
      ],
    },
    options: { scales: { y: { beginAtZero: true } } },
  }, { testid: "chart-segment-clv" });

  // Grades within each segment, stacked: how a segment's customers split from VIP to at risk.
  const gradeNames = ["VIP", "Gold", "Silver", "Bronze", "At risk"];
  for (const g of segments.flatMap((s) => Object.keys(s.grades ?? {}))) if (!gradeNames.includes(g)) gradeNames.push(g);
  const gradeColours = ["#7c3aed", "#ca8a04", "#9ca3af", "#b45309", "#dc2626"];
  const grades = segments.some((s) => Object.keys(s.grades ?? {}).length) ? chart({
    type: "bar",
    data: { labels: names, datasets: gradeNames.map((g, i) => ({ label: term("grade", g),
      data: segments.map((s) => s.grades?.[g] ?? 0), backgroundColor: gradeColours[i] ?? PALETTE[i % PALETTE.length] })) },
    options: { indexAxis: "y", scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } } },
  }, { testid: "chart-segment-grades", height: Math.max(160, 40 * segments.length + 70) }) : null;

  const sizeTable = table(
    [t("segments.segment"), t("segments.size"), t("segments.share"), t("clv.p25"), t("clv.p50"), t("clv.p75"),
      t("clv.mean")],
    segments.map((s) => [
      { text: term("segment", s.name), testid: `segment-name:${s.name}` },
      { text: formatInt(s.size), testid: `segment-size:${s.name}` },
      s.share !== undefined ? formatPercent(s.share) : total ? formatPercent(s.size / total) : t("common.none"),
      formatNumber(s.clv?.p25, 2), formatNumber(s.clv?.p50, 2), formatNumber(s.clv?.p75, 2),
      { text: formatNumber(s.clv?.mean, 2), testid: `segment-clv-mean:${s.name}` },
    ]),
    { testid: "segments-table", numeric: [1, 2, 3, 4, 5, 6] });

  const figures = [...new Set(segments.flatMap((s) => Object.keys(s.lrfmv ?? {})))];
  const profile = table([t("segments.segment"), ...figures.map((f) => term("lrfmv", f))],
    segments.map((s) => [term("segment", s.name), ...figures.map((f) => formatFigure(figure(s.lrfmv?.[f])))]),
    { testid: "segments-profile", numeric: figures.map((_, i) => i + 1) });

  const cohortChart = chart({
    type: "bar",
    data: {
      labels: cohorts.map((c) => c.month),
      datasets: [
        { type: "line", label: t("cohort.clvMean"), data: cohorts.map((c) => c.clv_mean), yAxisID: "clv",
          borderColor: PALETTE[1], backgroundColor: PALETTE[1] },
        { type: "bar", label: t("cohort.customers"), data: cohorts.map((c) => c.customers), yAxisID: "customers",
          backgroundColor: "rgba(37, 99, 235, 0.3)" },
      ],
    },
    options: { scales: { clv: { position: "left", beginAtZero: true, title: { display: true, text: t("cohort.clvMean") } },
      customers: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
        title: { display: true, text: t("cohort.customers") } } } },
  }, { testid: "chart-cohorts" });

  const cohortTable = table([t("cohort.month"), t("cohort.customers"), t("cohort.clvMean")],
    cohorts.map((c) => [c.month, formatInt(c.customers), formatNumber(c.clv_mean, 2)]),
    { testid: "cohorts-table", numeric: [1, 2] });

  return h("div", { class: "page" },
    h("h1", {}, t("segments.title")),
    h("div", { class: "grid two" },
      card(t("segments.sizes"), sizes),
      card(t("segments.clv"), clv)),
    card(null, sizeTable),
    grades ? card(t("segments.grades"), grades) : null,
    card(t("segments.profile"), profile),
    h("div", { class: "grid two" },
      card(t("segments.cohorts"), cohortChart),
      card(null, h("div", { class: "scroll" }, cohortTable))));
}
