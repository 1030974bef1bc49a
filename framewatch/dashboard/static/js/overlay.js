// A frame with its detections drawn over it: an <img> (a blob: URL fetched with the key) and an
// SVG overlay of the same size. Boxes are placed in percentages from `bbox_norm`, so they follow
// the image at any size; labels keep a readable size on screen (CSS pixels).

import { detectionLabel, h, svg } from "./dom.js";

const KNOWN_TYPES = new Set(["person", "face", "vehicle"]);
const LABEL_FONT_PX = 12;
const LABEL_HEIGHT_PX = 17;

function typeClass(type) {
  return `box-${KNOWN_TYPES.has(type) ? type : "other"}`;
}

const pct = (fraction) => `${(Math.min(1, Math.max(0, fraction)) * 100).toFixed(3)}%`;

function boxElement(detection) {
  const norm = detection.bbox_norm;
  const label = detectionLabel(detection);
  const labelWidth = Math.ceil(label.length * LABEL_FONT_PX * 0.62 + 8);
  // The tag sits above the box, or inside it at the top edge of the frame; boxes in the right
  // part of the frame get their tag right-aligned so that it stays inside the picture.
  const inside = norm.y_min < 0.06;
  const right = norm.x_min > 0.6;
  const anchorX = pct(right ? norm.x_max : norm.x_min);
  const shiftX = right ? -labelWidth : 0;
  const shiftY = inside ? 0 : -LABEL_HEIGHT_PX;
  return svg("g", {
    class: `box ${typeClass(detection.type)}`,
    dataset: { detectionId: String(detection.id ?? ""), type: detection.type },
  },
  svg("title", { text: label }),
  svg("rect", {
    class: "box-frame", x: pct(norm.x_min), y: pct(norm.y_min),
    width: pct(norm.x_max - norm.x_min), height: pct(norm.y_max - norm.y_min),
  }),
  svg("g", { class: "box-tag-group", transform: `translate(${shiftX} ${shiftY})` },
    svg("rect", { class: "box-tag", x: anchorX, y: pct(norm.y_min), width: labelWidth,
      height: LABEL_HEIGHT_PX }),
    svg("text", { class: "box-label", x: anchorX, y: pct(norm.y_min), dx: 4, dy: 13,
      "font-size": LABEL_FONT_PX, text: label })));
}

export class FrameView {
  constructor({ caption = "" } = {}) {
    this.img = h("img", { class: "frame-image", alt: caption || "camera frame", decoding: "async" });
    this.overlay = svg("svg", { class: "frame-overlay", "aria-hidden": "true" });
    this.element = h("div", { class: "frame", dataset: { empty: "true" } }, this.img, this.overlay);
    this.url = null;
  }

  /** Shows `url` (a blob: URL, owned from now on) with `detections` drawn over it. */
  async show(url, detections, altText) {
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
    } catch {
      // a broken image: show it anyway, the browser draws its own placeholder
    }
    const width = probe.naturalWidth || 1;
    const height = probe.naturalHeight || 1;
    const previous = this.url;
    this.url = url;
    this.img.src = url;
    this.img.alt = altText;
    this.img.width = width;
    this.img.height = height;
    this.overlay.replaceChildren(...detections.map((d) => boxElement(d)));
    this.element.dataset.empty = "false";
    if (previous) URL.revokeObjectURL(previous);
  }

  showNothing(text) {
    this.release();
    this.img.removeAttribute("src");
    this.img.alt = text;
    this.overlay.replaceChildren();
    this.element.dataset.empty = "true";
  }

  release() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }
}
