// Small hand-written SVG charts (no library). Every chart is a <figure> with a caption, an
// SVG with role="img" and a text summary, a legend, and its figures as a table for screen
// readers and for copying. Colours come from CSS classes (`series-0` …), not inline styles.

import { h, svg } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 240;
// Room on the left for an axis label such as "1000 ms".
const PAD = { left: 64, right: 12, top: 16, bottom: 36 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function format(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Math.abs(value) >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(1);
}

function frame(summary, children) {
  return svg("svg", {
    class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary,
    preserveAspectRatio: "xMidYMid meet",
  }, children);
}

function yAxis(max, unit) {
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  return [0, 0.5, 1].map((fraction) => {
    const y = PAD.top + plotHeight * (1 - fraction);
    return svg("g", { class: "tick" },
      svg("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y }),
      svg("text", { class: "axis-label", x: PAD.left - 6, y: y + 4, "text-anchor": "end",
        text: `${format(max * fraction)}${fraction ? unit : ""}` }));
  });
}

function legend(series) {
  return h("ul", { class: "legend" }, series.map((s, index) => h("li", {},
    h("span", { class: `swatch series-${s.colour ?? index}`, "aria-hidden": "true" }), s.label)));
}

function table(headers, rows) {
  return h("details", { class: "chart-data" }, h("summary", { text: "Show the figures" }),
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col", text })))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) => (i === 0
        ? h("th", { scope: "row", text: cell }) : h("td", { text: cell }))))))));
}

export function chartFigure(name, caption, ...content) {
  return h("figure", { class: "chart-figure", dataset: { chart: name } },
    h("figcaption", { text: caption }), ...content);
}

/** Stacked columns: `columns` [{label, values: {key: n}}], `series` [{key, label}]. */
export function stackedColumns({ columns, series, summary, unit = "" }) {
  const totals = columns.map((c) => series.reduce((sum, s) => sum + (c.values[s.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotWidth / Math.max(1, columns.length);
  const barWidth = Math.max(2, slot * 0.7);
  const labelEvery = Math.ceil(columns.length / 8);
  const bars = columns.map((column, index) => {
    let top = PAD.top + plotHeight;
    const x = PAD.left + index * slot + (slot - barWidth) / 2;
    const parts = series.map((s, sIndex) => {
      const value = column.values[s.key] || 0;
      const height = (value / max) * plotHeight;
      top -= height;
      return value ? svg("rect", { class: `bar series-${s.colour ?? sIndex}`, x, y: top,
        width: barWidth, height }, svg("title", { text: `${column.label}: ${value} ${s.label}` }))
        : null;
    });
    const label = index % labelEvery === 0
      ? svg("text", { class: "axis-label", x: x + barWidth / 2, y: HEIGHT - PAD.bottom + 16,
        "text-anchor": "middle", text: column.label }) : null;
    return svg("g", { class: "column" }, parts, label);
  });
  return [frame(summary, [yAxis(max, unit), bars]), legend(series),
    table(["", ...series.map((s) => s.label), "total"],
      columns.map((c, i) => [c.label, ...series.map((s) => String(c.values[s.key] || 0)),
        String(totals[i])]))];
}

/** Grouped columns: `groups` [{label, values: [n per series]}], `series` [{label}]. */
export function groupedColumns({ groups, series, summary, unit = "" }) {
  const all = groups.flatMap((g) => g.values.filter((v) => v !== null && v !== undefined));
  const max = niceMax(Math.max(0, ...all));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotWidth / Math.max(1, groups.length);
  const barWidth = Math.min(60, (slot * 0.8) / series.length);
  const bars = groups.map((group, gIndex) => {
    const start = PAD.left + gIndex * slot + (slot - barWidth * series.length) / 2;
    return svg("g", { class: "group" }, group.values.map((value, sIndex) => {
      if (value === null || value === undefined) return null;
      const height = (value / max) * plotHeight;
      const x = start + sIndex * barWidth;
      const y = PAD.top + plotHeight - height;
      // The value over its bar: a small bar beside a tall one still shows its figure.
      return [svg("rect", { class: `bar series-${series[sIndex].colour ?? sIndex}`,
        x, y, width: barWidth - 2, height }, svg("title", {
        text: `${group.label} ${series[sIndex].label}: ${format(value)}${unit}` })),
      svg("text", { class: "bar-value", x: x + (barWidth - 2) / 2, y: Math.max(10, y - 4),
        "text-anchor": "middle", text: `${format(value)}${unit}` })];
    }), svg("text", { class: "axis-label", x: PAD.left + gIndex * slot + slot / 2,
      y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle", text: group.label }));
  });
  return [frame(summary, [yAxis(max, unit), bars]), legend(series),
    table(["", ...series.map((s) => s.label)],
      groups.map((g) => [g.label, ...g.values.map((v) => `${format(v)}${unit}`)]))];
}

/** Horizontal bars: `items` [{label, value, text}] against `max`. */
export function horizontalBars({ items, max, summary, colour = 0 }) {
  const rowHeight = 28;
  const height = Math.max(rowHeight, items.length * rowHeight) + 8;
  const labelWidth = 150;
  const barSpace = WIDTH - labelWidth - 90;
  const top = niceMax(max ?? Math.max(0, ...items.map((i) => i.value || 0)));
  const rows = items.map((item, index) => {
    const y = 4 + index * rowHeight;
    const width = ((item.value || 0) / top) * barSpace;
    return svg("g", { class: "hbar", dataset: { label: item.label } },
      svg("text", { class: "axis-label", x: labelWidth - 8, y: y + 17, "text-anchor": "end",
        text: item.label }),
      svg("rect", { class: "bar-track", x: labelWidth, y: y + 4, width: barSpace, height: 18 }),
      svg("rect", { class: `bar series-${item.colour ?? colour}`, x: labelWidth, y: y + 4,
        width: Math.max(0, width), height: 18 }),
      svg("text", { class: "bar-value", x: labelWidth + barSpace + 8, y: y + 17,
        text: item.text }));
  });
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": summary }, rows);
  return [chart, table(["", "value"], items.map((i) => [i.label, i.text]))];
}

/** A line over time: `points` [{label, value}] (oldest first). */
export function lineChart({ points, summary, unit = "" }) {
  const max = niceMax(Math.max(1, ...points.map((p) => p.value)));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = plotWidth / Math.max(1, points.length - 1);
  const coords = points.map((p, i) => [PAD.left + i * step,
    PAD.top + plotHeight * (1 - p.value / max)]);
  const path = coords.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`)
    .join(" ");
  const first = points[0];
  const last = points[points.length - 1];
  return [frame(summary, [yAxis(max, unit),
    points.length > 1 ? svg("path", { class: "line series-0", d: path }) : null,
    coords.map(([x, y], i) => svg("circle", { class: "dot series-0", cx: x, cy: y, r: 3 },
      svg("title", { text: `${points[i].label}: ${points[i].value}${unit}` }))),
    first ? svg("text", { class: "axis-label", x: PAD.left, y: HEIGHT - PAD.bottom + 16,
      text: first.label }) : null,
    last && points.length > 1 ? svg("text", { class: "axis-label", x: WIDTH - PAD.right,
      y: HEIGHT - PAD.bottom + 16, "text-anchor": "end", text: last.label }) : null]),
  table(["time", "value"], points.map((p) => [p.label, `${p.value}${unit}`]))];
}
