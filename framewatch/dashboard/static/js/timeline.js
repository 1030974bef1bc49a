// The event timeline: GET /api/v1/detections/events with filters, keyset pages ("Older"), and
// live events from the WebSocket prepended when they match the filters.

import { api } from "./api.js";
import { clear, errorBox, field, h, loading, select, stateBox, timeElement } from "./dom.js";

const PAGE_SIZE = 25;
const SEVERITIES = ["debug", "info", "warning", "error", "critical"];
export const EVENT_TYPES = [
  "frame.processed", "frame.queued", "frame.redetected", "provider.error", "provider.down",
  "provider.recovered", "provider.tested", "provider.created", "provider.updated",
  "provider.deleted", "queue.retry", "queue.dead_letter", "queue.requeued", "person.identified",
  "person.created", "person.updated", "person.deleted", "person.face_added",
  "person.face_removed", "camera.created", "camera.updated", "camera.deleted", "key.created",
  "key.revoked", "key.rotated", "key.updated", "auth.failed", "auth.denied", "admin.failed",
  "biometrics.purged", "retention.cleanup", "secret_key.rotated",
];

export class TimelineView {
  constructor(section, { openEvent }) {
    this.section = section;
    this.openEvent = openEvent;
    this.shown = new Set();
    this.filters = {};
    this.cursor = null;
    this.pendingLive = null; // live events that arrive while a page loads
    // Each load gets a number: the answer of an older load (filters applied twice in a row,
    // Reset then Apply) arriving late is dropped, not mixed into the newer one.
    this.generation = 0;

    this.cameraSelect = select("camera_id", [["", "All cameras"]]);
    this.typeSelect = select("event_type", [["", "All types"], ...EVENT_TYPES.map((t) => [t, t])]);
    this.severitySelect = select("severity", [["", "Any severity"],
      ...SEVERITIES.map((s) => [s, `${s} or worse`])]);
    this.text = h("input", { type: "search", name: "q", maxlength: "200",
      placeholder: "Words in the message" });
    this.form = h("form", { class: "filters", "aria-label": "Filter events",
      on: { submit: (event) => { event.preventDefault(); this.load(); } } },
    field("Camera", this.cameraSelect), field("Type", this.typeSelect),
    field("Severity", this.severitySelect), field("Text", this.text),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", text: "Apply filters" }),
      h("button", { type: "button", class: "secondary", text: "Reset",
        on: { click: () => { this.form.reset(); this.load(); } } })));
    this.summary = h("p", { class: "muted", role: "status", "aria-live": "polite" });
    this.list = h("ol", { class: "timeline", "aria-label": "Events, newest first" });
    this.body = h("div", { class: "view-body" });
    this.olderButton = h("button", { type: "button", class: "secondary older", text: "Older",
      hidden: true, on: { click: () => this.older() } });
    this.footer = h("div", { class: "timeline-footer" }, this.olderButton);
    section.append(this.form, this.summary, this.body, this.footer);
  }

  show() {
    if (!this.loaded) this.load();
  }

  hide() {}

  setCameras(cameras) {
    const current = this.cameraSelect.value;
    clear(this.cameraSelect, h("option", { value: "", text: "All cameras" }),
      ...cameras.map((c) => h("option", { value: c.id, text: `${c.name} (${c.id})` })));
    this.cameraSelect.value = cameras.some((c) => c.id === current) ? current : "";
  }

  async loadCameras() {
    try {
      this.setCameras(await api.get("/api/v1/cameras"));
    } catch {
      // the list still works without the camera names
    }
  }

  readFilters() {
    return {
      camera_id: this.cameraSelect.value, event_type: this.typeSelect.value,
      severity: this.severitySelect.value, q: this.text.value.trim(),
    };
  }

  async load() {
    this.loaded = true;
    this.generation += 1;
    const generation = this.generation;
    this.filters = this.readFilters();
    this.shown.clear();
    this.pendingLive = [];
    this.olderButton.hidden = true;
    this.section.setAttribute("aria-busy", "true");
    clear(this.body, loading("Loading events…"));
    this.loadCameras();
    try {
      const page = await api.get("/api/v1/detections/events",
        { ...this.filters, limit: PAGE_SIZE });
      if (generation !== this.generation) return;
      clear(this.list);
      this.append(page.items);
      const early = this.pendingLive;
      this.pendingLive = null;
      for (const event of early) this.prepend(event, false); // oldest first: newest on top
      this.cursor = page.next_cursor;
      this.olderButton.hidden = !this.cursor;
      this.renderBody();
    } catch (exc) {
      if (generation !== this.generation) return;
      this.pendingLive = null;
      clear(this.body, errorBox(exc, h("button", {
        type: "button", text: "Try again", on: { click: () => this.load() },
      })));
    } finally {
      if (generation === this.generation) this.section.removeAttribute("aria-busy");
    }
  }

  renderBody() {
    const count = this.list.children.length;
    if (!count) {
      const filtered = Object.values(this.filters).some(Boolean);
      clear(this.body, stateBox("empty", filtered ? "No events match these filters."
        : "No events yet."));
    } else {
      clear(this.body, this.list);
    }
    this.summary.textContent = count ? `${count} events shown${this.cursor ? ", more older" : ""}`
      : "";
  }

  async older() {
    if (!this.cursor) return;
    const generation = this.generation;
    this.olderButton.disabled = true;
    this.olderButton.textContent = "Loading…";
    try {
      const page = await api.get("/api/v1/detections/events",
        { ...this.filters, limit: PAGE_SIZE, cursor: this.cursor });
      if (generation !== this.generation) return; // the filters changed meanwhile
      this.append(page.items);
      this.cursor = page.next_cursor;
      this.renderBody();
    } catch (exc) {
      this.footer.prepend(errorBox(exc));
    } finally {
      this.olderButton.disabled = false;
      this.olderButton.textContent = "Older";
      this.olderButton.hidden = !this.cursor;
    }
  }

  item(event, fresh) {
    const camera = h("span", { class: "event-camera", text: event.camera_id || "—" });
    return h("li", { class: fresh ? "event fresh" : "event", dataset: {
      eventId: String(event.id), eventType: event.event_type, severity: event.severity,
      cameraId: event.camera_id || "",
    } }, h("button", { type: "button", class: "event-button",
      "aria-label": `${event.severity} ${event.event_type}: ${event.message}`,
      on: { click: () => this.openEvent(event) } },
    timeElement(event.created_at),
    h("span", { class: `severity severity-${event.severity}`, text: event.severity }),
    h("span", { class: "event-type", text: event.event_type }), camera,
    h("span", { class: "event-message", text: event.message })));
  }

  append(events) {
    for (const event of events) {
      if (this.shown.has(event.id)) continue;
      this.shown.add(event.id);
      this.list.append(this.item(event, false));
    }
  }

  prepend(event, fresh = true) {
    if (this.shown.has(event.id)) return;
    this.shown.add(event.id);
    this.list.prepend(this.item(event, fresh));
  }

  matches(event) {
    const f = this.filters;
    if (f.camera_id && event.camera_id !== f.camera_id) return false;
    if (f.event_type && event.event_type !== f.event_type) return false;
    if (f.severity && SEVERITIES.indexOf(event.severity) < SEVERITIES.indexOf(f.severity)) {
      return false;
    }
    return !f.q || String(event.message).toLowerCase().includes(f.q.toLowerCase());
  }

  onEvent(message) {
    if (!this.loaded) return;
    const event = message.event;
    if (!event || !this.matches(event)) return;
    if (this.pendingLive) {
      this.pendingLive.push(event);
      return;
    }
    this.prepend(event);
    this.renderBody();
  }

  reload() {
    if (this.loaded) this.load();
  }

  destroy() {}
}
