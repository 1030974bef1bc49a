// The camera grid: per camera its latest frame with boxes, online/offline, provider and breaker;
// updated live from `detection` messages, camera state re-read every 30 s.

import { api, imageUrl } from "./api.js";
import {
  clear, debounce, detectionLabel, errorBox, formatTime, h, loading, stateBox,
} from "./dom.js";
import { FrameView } from "./overlay.js";

const STATE_REFRESH_MS = 30000;

class Tile {
  constructor(camera, openFrame) {
    this.camera = camera;
    this.frameId = null;
    this.detections = [];
    this.loadingFrame = false;
    this.wanted = null; // {frameId, detections} waiting while a frame loads
    this.frame = new FrameView();
    this.status = h("span", { class: "badge", dataset: { online: "unknown" }, text: "…" });
    this.meta = h("p", { class: "tile-meta", text: "No frame yet" });
    this.labels = h("ul", { class: "tile-labels", "aria-label": "Detections" });
    this.error = h("div", { class: "tile-error" });
    this.button = h("button", {
      type: "button", class: "frame-button", disabled: true,
      "aria-label": `Open the latest frame of ${camera.name}`,
      on: { click: () => openFrame(this) },
    }, this.frame.element);
    const titleId = `camera-${camera.id.replace(/[^A-Za-z0-9_-]/g, "_")}-title`;
    this.element = h("article", {
      class: "tile", dataset: { cameraId: camera.id }, "aria-labelledby": titleId,
    },
    h("header", { class: "tile-head" },
      h("h3", { id: titleId, text: camera.name }),
      this.status),
    this.button, this.meta, this.labels, this.error);
  }

  setState(state) {
    this.state = state;
    const online = Boolean(state.online);
    this.status.dataset.online = String(online);
    this.status.textContent = state.enabled === false ? "Disabled" : online ? "Online" : "Offline";
    this.describe();
  }

  markOnline() {
    if (this.state) this.state.online = true;
    this.status.dataset.online = "true";
    this.status.textContent = "Online";
  }

  describe(processedAt = null) {
    const parts = [];
    if (this.frameId !== null) parts.push(`Frame #${this.frameId}`);
    const when = processedAt || (this.state && this.state.last_frame_at);
    if (when) parts.push(formatTime(when));
    if (this.state && this.state.provider) {
      const breaker = this.state.provider_state ? ` (${this.state.provider_state})` : "";
      parts.push(`${this.state.provider}${breaker}`);
    }
    this.meta.textContent = parts.length ? parts.join(" · ") : "No frame yet";
  }

  /** Shows frame `frameId` with `detections`; while one loads, only the newest wanted waits. */
  async showFrame(frameId, detections, processedAt = null) {
    if (this.loadingFrame) {
      this.wanted = { frameId, detections, processedAt };
      return;
    }
    this.loadingFrame = true;
    try {
      const url = await imageUrl(`/api/v1/frames/${frameId}/image`);
      this.frameId = frameId;
      this.detections = detections;
      await this.frame.show(url, detections,
        `Frame ${frameId} of ${this.camera.name}: ${detections.length} detections`);
      this.element.dataset.frameId = String(frameId);
      this.button.disabled = false;
      clear(this.labels, ...detections.map((d) => h("li", {
        class: `label label-${d.type}`, text: detectionLabel(d),
      })));
      if (!detections.length) clear(this.labels, h("li", { class: "label", text: "nothing found" }));
      clear(this.error);
      this.describe(processedAt);
    } catch (exc) {
      clear(this.error, errorBox(exc));
    } finally {
      this.loadingFrame = false;
    }
    if (this.wanted) {
      const next = this.wanted;
      this.wanted = null;
      await this.showFrame(next.frameId, next.detections, next.processedAt);
    }
  }

  release() {
    this.frame.release();
  }
}

export class CamerasView {
  constructor(section, { openFrame }) {
    this.section = section;
    this.openFrame = openFrame;
    this.tiles = new Map();
    this.body = h("div", { class: "view-body" });
    this.grid = h("div", { class: "camera-grid" });
    this.refreshButton = h("button", {
      type: "button", class: "secondary", text: "Refresh", on: { click: () => this.load() },
    });
    section.append(h("div", { class: "toolbar" }, this.refreshButton), this.body);
    this.reloadSoon = debounce(() => this.load(), 300);
    this.timer = null;
    this.generation = 0; // the latest load; an older one answering late is dropped
  }

  show() {
    if (!this.loaded) this.load();
    else this.refreshStates();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refreshStates(), STATE_REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
  }

  releaseTiles() {
    for (const tile of this.tiles.values()) tile.release();
    this.tiles.clear();
  }

  async load() {
    this.loaded = true;
    this.generation += 1;
    const generation = this.generation;
    this.section.setAttribute("aria-busy", "true");
    clear(this.body, loading("Loading cameras…"));
    try {
      const [cameras, live] = await Promise.all([
        api.get("/api/v1/cameras"), api.get("/api/v1/detections/live"),
      ]);
      if (generation !== this.generation) return;
      this.releaseTiles();
      if (!cameras.length) {
        clear(this.body, stateBox("empty", "No cameras yet.",
          h("p", { text: "An admin adds one with POST /api/v1/cameras or "
            + "`framewatch cameras add`; its frames show here as they arrive." })));
        return;
      }
      const latest = new Map(live.cameras.map((c) => [c.camera_id, c]));
      clear(this.grid);
      for (const camera of cameras) {
        const tile = new Tile(camera, (t) => this.openFrame(t));
        this.tiles.set(camera.id, tile);
        this.grid.append(tile.element);
      }
      clear(this.body, this.grid);
      await Promise.all(cameras.map((camera) => this.fill(this.tiles.get(camera.id),
        latest.get(camera.id))));
    } catch (exc) {
      if (generation !== this.generation) return;
      clear(this.body, errorBox(exc, h("button", {
        type: "button", text: "Try again", on: { click: () => this.load() },
      })));
    } finally {
      if (generation === this.generation) this.section.removeAttribute("aria-busy");
    }
  }

  /** A tile's state, then its latest frame: from the live view, else the camera's last frame. */
  async fill(tile, live) {
    let state;
    try {
      state = await api.get(`/api/v1/cameras/${encodeURIComponent(tile.camera.id)}/state`);
      tile.setState(state);
    } catch (exc) {
      clear(tile.error, errorBox(exc));
      return;
    }
    if (live) {
      await tile.showFrame(live.frame_id, live.detections, live.processed_at);
      return;
    }
    if (state.last_frame_id === null) {
      tile.frame.showNothing(`No frame from ${tile.camera.name} yet`);
      return;
    }
    let detections = [];
    if (state.last_frame_status === "processed") {
      const page = await api.get("/api/v1/detections", { camera_id: tile.camera.id, limit: 100 });
      detections = page.items.filter((d) => d.frame_id === state.last_frame_id);
    }
    await tile.showFrame(state.last_frame_id, detections, state.last_frame_at);
  }

  async refreshStates() {
    for (const tile of this.tiles.values()) {
      try {
        tile.setState(await api.get(
          `/api/v1/cameras/${encodeURIComponent(tile.camera.id)}/state`));
      } catch {
        // the next refresh, or the disconnected banner, tells the user
      }
    }
  }

  onDetection(message) {
    if (!this.loaded) return;
    const tile = this.tiles.get(message.camera_id);
    if (!tile) {
      this.reloadSoon(); // a camera added since the grid was loaded
      return;
    }
    tile.markOnline();
    tile.showFrame(message.frame_id, message.detections, message.processed_at);
  }

  reload() {
    if (this.loaded) this.load();
  }

  cameraNames() {
    return new Map([...this.tiles.values()].map((t) => [t.camera.id, t.camera.name]));
  }

  destroy() {
    this.hide();
    this.releaseTiles();
  }
}
