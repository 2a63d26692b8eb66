// Charts through the vendored Chart.js (vendor/chart.umd.min.js, loaded as a classic script: window.Chart).
// Every chart drawn is remembered so a page re-render (a route or language change) destroys the old ones.

import { h } from "./dom.js";

const live = new Set();
export const PALETTE = ["#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];

function library() {
  if (!window.Chart) throw new Error("vendor/chart.umd.min.js did not load");
  const Chart = window.Chart;
  // Drawn at once: screenshots and tests see the final picture, and nothing moves for people who'd rather not.
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#374151";
  return Chart;
}

/** A canvas in a sized box with a chart of `config`; `testid` names the box. */
export function chart(config, { testid, height = 260 } = {}) {
  const canvas = h("canvas", { role: "img", "aria-label": config.options?.plugins?.title?.text ?? "" });
  const box = h("div", { class: "chart", "data-testid": testid, style: `height:${height}px` }, canvas);
  // Chart.js measures its parent, so it is drawn once the box is in the document.
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    const Chart = library();
    live.add(new Chart(canvas, config));
    box.dataset.drawn = "true";
  });
  return box;
}

export function destroyAll() {
  for (const instance of live) instance.destroy();
  live.clear();
}
