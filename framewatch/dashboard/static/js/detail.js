// The detail view: a modal dialog with the annotated frame (drawn by the server,
// `?annotate=true`) and the facts of an event, a detection or a camera's latest frame.

import { api, imageUrl } from "./api.js";
import {
  clear, detectionLabel, errorBox, formatTime, h, loading, percent, timeElement,
} from "./dom.js";

function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(([, value]) => value !== null && value !== undefined
    && value !== "").map(([name, value]) => [h("dt", { text: name }),
    h("dd", {}, value instanceof Node ? value : String(value))]));
}

/** Beside the frame on a wide screen, under it on a narrow one (dashboard.css). */
function info(...children) {
  return h("div", { class: "detail-info" }, ...children);
}

function box(bbox) {
  return `${Math.round(bbox.x_min)}, ${Math.round(bbox.y_min)} – ${Math.round(bbox.x_max)}, `
    + `${Math.round(bbox.y_max)} px`;
}

export class DetailDialog {
  constructor(dialog) {
    this.dialog = dialog;
    this.title = h("h2", { id: "detail-title", tabindex: "-1" });
    this.body = h("div", { class: "detail-body" });
    this.url = null;
    this.generation = 0;
    const close = h("button", {
      type: "button", class: "close", "aria-label": "Close", text: "×",
      on: { click: () => this.dialog.close() },
    });
    dialog.setAttribute("aria-labelledby", "detail-title");
    dialog.append(h("header", { class: "detail-head" }, this.title, close), this.body);
    dialog.addEventListener("close", () => this.release());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close(); // a click on the backdrop
    });
  }

  open(titleText) {
    this.generation += 1;
    this.release();
    this.title.textContent = titleText;
    clear(this.body, loading());
    if (!this.dialog.open) this.dialog.showModal();
    this.title.focus();
    return this.generation;
  }

  release() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  async annotatedFrame(frameId, generation) {
    const figure = h("figure", { class: "annotated" });
    try {
      const url = await imageUrl(`/api/v1/frames/${frameId}/image`, { annotate: "true" });
      if (generation !== this.generation) {
        URL.revokeObjectURL(url);
        return figure;
      }
      this.url = url;
      figure.append(h("img", { src: url, alt: `Frame ${frameId} with its detections drawn` }),
        h("figcaption", { text: `Frame #${frameId}, annotated` }));
    } catch (exc) {
      figure.append(exc.status === 404
        ? errorBox(exc, h("p", { text: "The frame is no longer stored (retention)." }))
        : errorBox(exc));
    }
    return figure;
  }

  detectionList(detections, onOpen) {
    if (!detections.length) return h("p", { class: "muted", text: "No detections in this frame." });
    return h("ul", { class: "detection-list" }, detections.map((d) => h("li", {},
      h("button", {
        type: "button", class: "link", text: `${detectionLabel(d)} (#${d.id})`,
        on: { click: () => onOpen(d.id) },
      }))));
  }

  async showEvent(event) {
    const generation = this.open(`Event #${event.id}: ${event.event_type}`);
    const parts = [facts([
      ["Time", timeElement(event.created_at)],
      ["Severity", h("span", { class: `severity severity-${event.severity}`, text: event.severity })],
      ["Type", event.event_type],
      ["Camera", event.camera_id],
      ["Provider", event.provider],
      ["Frame", event.frame_id !== null ? `#${event.frame_id}` : null],
      ["Detection", event.detection_id !== null ? `#${event.detection_id}` : null],
      ["Person", event.person_id !== null ? `#${event.person_id}` : null],
      ["Actor", event.actor],
      ["Message", event.message],
    ])];
    if (event.payload && Object.keys(event.payload).length) {
      parts.push(h("details", { class: "payload" }, h("summary", { text: "Payload" }),
        h("pre", { text: JSON.stringify(event.payload, null, 2) })));
    }
    if (event.detection_id !== null) {
      parts.push(h("button", {
        type: "button", text: `Open detection #${event.detection_id}`,
        on: { click: () => this.showDetection(event.detection_id) },
      }));
    }
    const frame = event.frame_id !== null ? this.annotatedFrame(event.frame_id, generation) : null;
    const figure = frame ? await frame : null;
    if (generation !== this.generation) return;
    clear(this.body, figure, info(...parts));
  }

  async showDetection(detectionId) {
    const generation = this.open(`Detection #${detectionId}`);
    let detection;
    try {
      detection = await api.get(`/api/v1/detections/${detectionId}`);
    } catch (exc) {
      if (generation === this.generation) clear(this.body, errorBox(exc));
      return;
    }
    const figure = await this.annotatedFrame(detection.frame_id, generation);
    if (generation !== this.generation) return;
    const person = detection.person
      ? `${detection.person.name ?? `#${detection.person.id}`} (similarity `
        + `${percent(detection.person.similarity)})`
      : null;
    clear(this.body, figure, info(facts([
      ["Type", detection.type],
      ["Label", detection.label],
      ["Confidence", percent(detection.confidence, 1)],
      ["Person", person],
      ["Subject", detection.subject],
      ["Camera", detection.camera_id],
      ["Frame", `#${detection.frame_id}`],
      ["Box", box(detection.bbox)],
      ["Provider", `${detection.provider} (${detection.model})`],
      ["Latency", `${Math.round(detection.latency_ms)} ms`],
      ["Face encoding", detection.has_encoding ? detection.encoding_model : null],
      ["Detected", timeElement(detection.detected_at)],
    ])));
  }

  async showFrame(cameraName, frameId, detections) {
    const generation = this.open(`${cameraName}: frame #${frameId}`);
    const figure = await this.annotatedFrame(frameId, generation);
    if (generation !== this.generation) return;
    clear(this.body, figure, info(h("h3", { text: "Detections" }),
      this.detectionList(detections, (id) => this.showDetection(id))));
  }

  async showSighting(personName, sighting) {
    const generation = this.open(`${personName} at ${sighting.camera_id}`);
    const figure = await this.annotatedFrame(sighting.frame_id, generation);
    if (generation !== this.generation) return;
    clear(this.body, figure, info(facts([
      ["Seen", formatTime(sighting.detected_at)],
      ["Camera", sighting.camera_id],
      ["Similarity", percent(sighting.similarity)],
    ]), h("button", {
      type: "button", text: `Open detection #${sighting.detection_id}`,
      on: { click: () => this.showDetection(sighting.detection_id) },
    })));
  }
}
