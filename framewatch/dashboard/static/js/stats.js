// Statistics: detections per hour by type, provider latency p50/p95, the queue (counts now and
// depth sampled while the view is open) and the cache hit rate, from
// GET /api/v1/detections/statistics and GET /api/v1/detections/queue-stats.

import { api } from "./api.js";
import {
  chartFigure, groupedColumns, horizontalBars, lineChart, stackedColumns,
} from "./charts.js";
import { clear, errorBox, formatTime, h, loading, percent, stateBox } from "./dom.js";

const REFRESH_MS = 10000;
const DEPTH_SAMPLES = 60;
const TYPE_COLOURS = { person: 0, face: 1, vehicle: 2 };
const HOUR = 3600 * 1000;

function hourLabel(date) {
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** One column per hour from `since` to `until`, zero where the roll-up has nothing. */
function hourlyColumns(stats) {
  const byStart = new Map(stats.series.map((p) => [new Date(p.bucket_start).getTime(), p]));
  const first = Math.floor(new Date(stats.since).getTime() / HOUR) * HOUR;
  const last = new Date(stats.until).getTime();
  const columns = [];
  for (let t = first; t <= last; t += HOUR) {
    const point = byStart.get(t);
    columns.push({ label: hourLabel(new Date(t)), values: point ? point.by_type : {} });
  }
  return columns;
}

function summaryCard(label, value) {
  return h("div", { class: "figure-card" }, h("span", { class: "figure-value", text: value }),
    h("span", { class: "figure-label", text: label }));
}

export class StatsView {
  constructor(section) {
    this.section = section;
    this.depth = [];
    this.timer = null;
    this.body = h("div", { class: "view-body" });
    this.updated = h("p", { class: "muted", role: "status" });
    section.append(h("div", { class: "toolbar" },
      h("button", { type: "button", class: "secondary", text: "Refresh",
        on: { click: () => this.load() } }), this.updated), this.body);
  }

  show() {
    this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load(true), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  async load(quiet = false) {
    if (!quiet || !this.body.children.length) clear(this.body, loading("Loading statistics…"));
    this.section.setAttribute("aria-busy", "true");
    try {
      const [stats, queue] = await Promise.all([
        api.get("/api/v1/detections/statistics", { bucket: "hour" }),
        api.get("/api/v1/detections/queue-stats"),
      ]);
      this.sampleDepth(queue);
      clear(this.body, this.render(stats, queue));
      this.updated.textContent = `Updated ${formatTime(new Date().toISOString())}`;
    } catch (exc) {
      clear(this.body, errorBox(exc, h("button", {
        type: "button", text: "Try again", on: { click: () => this.load() },
      })));
    } finally {
      this.section.removeAttribute("aria-busy");
    }
  }

  sampleDepth(queue) {
    const depth = (queue.counts.pending || 0) + (queue.counts.processing || 0);
    this.depth.push({ label: hourLabel(new Date()), value: depth });
    if (this.depth.length > DEPTH_SAMPLES) this.depth.shift();
  }

  render(stats, queue) {
    const cards = h("div", { class: "figure-cards" },
      summaryCard("detections (24 h)", String(stats.detections)),
      summaryCard("average confidence", percent(stats.avg_confidence)),
      summaryCard("frames processed", String(stats.queue.frames_processed)),
      summaryCard("queue depth now", String(this.depth[this.depth.length - 1].value)),
      summaryCard("dead letters", String(queue.dead_letters)));
    const note = h("p", { class: "muted", text: stats.rolled_up_to
      ? `Figures rolled up to ${formatTime(stats.rolled_up_to)} (hourly roll-ups lag by up to `
        + "a minute)."
      : "No roll-up has run yet: figures appear within a minute of the first frames." });
    return [cards, note, h("div", { class: "chart-grid" },
      this.perHour(stats), this.latency(stats), this.queue(queue), this.cache(stats))];
  }

  perHour(stats) {
    const types = stats.by_type.map((t) => t.type);
    if (!types.length) {
      return chartFigure("per-hour", "Detections per hour by type",
        stateBox("empty", "No detections in the last 24 hours."));
    }
    const series = types.map((type, index) => ({ key: type, label: type,
      colour: TYPE_COLOURS[type] ?? 3 + (index % 3) }));
    const summary = `Detections per hour over the last 24 hours: ${stats.by_type
      .map((t) => `${t.detections} ${t.type}`).join(", ")}`;
    return chartFigure("per-hour", "Detections per hour by type",
      ...stackedColumns({ columns: hourlyColumns(stats), series, summary }));
  }

  latency(stats) {
    const providers = stats.providers.filter((p) => p.latency_ms_p50 !== null
      || p.latency_ms_p95 !== null);
    if (!providers.length) {
      return chartFigure("latency", "Provider latency (p50 / p95)",
        stateBox("empty", "No provider calls in the last 24 hours."));
    }
    const summary = providers.map((p) => `${p.provider}: p50 ${Math.round(p.latency_ms_p50)} ms, `
      + `p95 ${Math.round(p.latency_ms_p95)} ms`).join("; ");
    return chartFigure("latency", "Provider latency (p50 / p95)", ...groupedColumns({
      groups: providers.map((p) => ({ label: p.provider,
        values: [p.latency_ms_p50, p.latency_ms_p95] })),
      series: [{ label: "p50", colour: 0 }, { label: "p95", colour: 4 }],
      summary, unit: " ms",
    }));
  }

  queue(queue) {
    const names = ["pending", "processing", "done", "dead"];
    const items = names.map((name, index) => ({ label: name, value: queue.counts[name] || 0,
      text: String(queue.counts[name] || 0), colour: [5, 0, 2, 4][index] }));
    const counts = horizontalBars({ items, summary: `Queue: ${items
      .map((i) => `${i.value} ${i.label}`).join(", ")}` });
    const depth = lineChart({ points: this.depth,
      summary: `Queue depth (pending + processing) sampled every ${REFRESH_MS / 1000} s while `
        + `this view is open; now ${this.depth[this.depth.length - 1].value}` });
    const oldest = queue.oldest_pending_age_seconds;
    return chartFigure("queue", `Queue (${queue.mode})`, ...counts,
      h("h3", { text: "Depth while this view is open" }), ...depth,
      h("p", { class: "muted", text: `${queue.workers.length} workers seen in the last minute`
        + (oldest !== null ? `; oldest pending item ${Math.round(oldest)} s old` : "") }));
  }

  cache(stats) {
    const kinds = Object.entries(stats.cache);
    if (!kinds.length) {
      return chartFigure("cache", "Cache hit rate", stateBox("empty", "No cache figures yet."));
    }
    const items = kinds.map(([kind, figures]) => ({
      label: kind, value: figures.hit_rate || 0,
      text: `${percent(figures.hit_rate)} (${figures.hits}/${figures.hits + figures.misses})`,
    }));
    return chartFigure("cache", "Cache hit rate (this API process)", ...horizontalBars({
      items, max: 1, colour: 2,
      summary: `Cache hit rate: ${items.map((i) => `${i.label} ${i.text}`).join(", ")}`,
    }));
  }

  reload() {}

  destroy() {
    this.hide();
  }
}
