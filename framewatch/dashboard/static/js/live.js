// The WebSocket (`/api/v1/detections/ws`, protocol in docs/live.md): a short-lived token from
// POST /api/v1/auth/ws-token sent as the first message (never the key, never in the URL), one
// subscription, automatic reconnection with exponential backoff and jitter, and resumption with
// `last_event_id` so that nothing is missed or shown twice.
//
// Message ids are clock-based 64-bit integers, beyond JavaScript's exact integers (2^53): they
// are read from the message text as strings and compared as BigInt, and `last_event_id` is
// written back digit for digit.
//
// Events dispatched: `state` (detail: {state, retryInSeconds, code}), `detection`, `event`,
// `resync` (messages were missed: reload from REST), `auth` (the key itself was refused).

import { ApiError, api } from "./api.js";

const WS_PATH = "/api/v1/detections/ws";
const HEAD = /^\{"type":\s*"([a-z_]+)",\s*"id":\s*(\d+)/;
const SUBSCRIBED_LAST_ID = /"last_event_id":\s*(\d+)\s*\}\s*$/;
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 40000;

export class LiveClient extends EventTarget {
  constructor({ events = true, minDelayMs = 500, maxDelayMs = 15000 } = {}) {
    super();
    this.wantEvents = events;
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.state = "idle";
    this.lastId = null; // a string of digits
    this.attempt = 0;
    this.socket = null;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000, "logged out");
      this.socket = null;
    }
    this.setState("idle");
  }

  /** Skip the backoff and try again now (the "Reconnect now" button). */
  reconnectNow() {
    if (this.stopped || this.state === "live" || this.state === "connecting") return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }

  async connect() {
    clearTimeout(this.retryTimer);
    this.setState("connecting");
    let token;
    try {
      token = (await api.post("/api/v1/auth/ws-token")).token;
    } catch (exc) {
      if (this.stopped) return;
      if (exc instanceof ApiError && (exc.status === 401 || exc.status === 403)) {
        this.dispatchEvent(new CustomEvent("auth", { detail: exc }));
        this.stopped = true;
        this.setState("idle");
        return;
      }
      this.scheduleRetry(null);
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${WS_PATH}`);
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "auth", token }));
      socket.send(this.subscribeText());
      this.lastHeard = Date.now();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.keepAlive(socket), PING_EVERY_MS);
    };
    socket.onmessage = (message) => this.receive(message.data);
    socket.onclose = (closed) => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.pingTimer);
      if (!this.stopped) this.scheduleRetry(closed.code);
    };
  }

  subscribeText() {
    const body = JSON.stringify({ type: "subscribe", detections: true, events: this.wantEvents });
    if (this.lastId === null) return body;
    // Digit for digit: JSON.stringify would round an id above 2^53.
    return `${body.slice(0, -1)},"last_event_id":${this.lastId}}`;
  }

  keepAlive(socket) {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      socket.close(4000, "no answer"); // a half-open connection: start again
      return;
    }
    if (socket.readyState === WebSocket.OPEN) socket.send('{"type": "ping"}');
  }

  scheduleRetry(code) {
    const delay = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.5 + Math.random() / 2));
    this.attempt += 1;
    this.setState("disconnected", { retryInSeconds: Math.ceil(jittered / 1000), code });
    this.retryTimer = setTimeout(() => this.connect(), jittered);
  }

  isNew(id) {
    return this.lastId === null || BigInt(id) > BigInt(this.lastId);
  }

  receive(text) {
    this.lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const head = HEAD.exec(text);
    if (head && (message.type === "detection" || message.type === "event")) {
      const id = head[2];
      if (!this.isNew(id)) return; // already seen before a reconnect
      this.lastId = id;
      message.id = id;
      this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
      return;
    }
    if (message.type === "subscribed") {
      const last = SUBSCRIBED_LAST_ID.exec(text);
      if (this.lastId === null && last) this.lastId = last[1];
      this.attempt = 0;
      this.setState("live");
    } else if (message.type === "resync") {
      this.dispatchEvent(new CustomEvent("resync", { detail: message }));
    } else if (message.type === "error") {
      this.dispatchEvent(new CustomEvent("protocol-error", { detail: message }));
    }
  }
}
