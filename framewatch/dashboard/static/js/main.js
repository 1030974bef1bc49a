// The dashboard's entry point: log in (the key is checked by asking for a WebSocket token, which
// also tells what the key may do), the views behind a hash router, the live connection and its
// status, log out.

import { ApiError, api, capabilitiesOf, clearKey, getKey, session, setKey } from "./api.js";
import { CamerasView } from "./cameras.js";
import { DetailDialog } from "./detail.js";
import { clear, h } from "./dom.js";
import { LiveClient } from "./live.js";
import { PersonsView } from "./persons.js";
import { ProvidersView } from "./providers.js";
import { StatsView } from "./stats.js";
import { TimelineView } from "./timeline.js";

const NOTICE_ITEM = "framewatch.notice";
const VIEWS = ["cameras", "events", "statistics", "providers", "persons"];
const $ = (id) => document.getElementById(id);

let live = null;
let views = {};
let current = null;
let countdown = null;

function loginMessage(exc) {
  if (exc instanceof ApiError && exc.status === 401) {
    return "That key was refused: it is unknown, revoked or expired.";
  }
  if (exc instanceof ApiError && exc.status === 403) {
    return "This key may not read detections (an agent key?). Use a viewer, operator or admin key.";
  }
  if (exc instanceof ApiError && exc.status === 429) {
    return `Too many attempts: ${exc.detail}`;
  }
  return exc instanceof ApiError ? `${exc.error}: ${exc.detail}` : String(exc);
}

/** Checks the key in sessionStorage; answers what it may do, or throws. */
async function checkKey() {
  const token = await api.post("/api/v1/auth/ws-token");
  return capabilitiesOf(token.permissions);
}

function showLogin(message = "") {
  document.body.dataset.session = "out";
  $("login-view").hidden = false;
  $("app-view").hidden = true;
  const error = $("login-error");
  error.textContent = message;
  error.hidden = !message;
  $("api-key").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  if (!key) return;
  const button = event.submitter || $("login-form").querySelector("button");
  button.disabled = true;
  setKey(key);
  try {
    const capabilities = await checkKey();
    input.value = "";
    start(capabilities);
  } catch (exc) {
    clearKey();
    showLogin(loginMessage(exc));
  } finally {
    button.disabled = false;
  }
}

function logout(notice = "") {
  if (live) live.stop();
  for (const view of Object.values(views)) view.destroy();
  clearKey();
  if (notice) sessionStorage.setItem(NOTICE_ITEM, notice);
  // A fresh page: no frame, event or blob URL of the last session stays in memory.
  location.replace(location.pathname);
}

function setLiveState({ state, retryInSeconds }) {
  const status = $("live-status");
  status.dataset.state = state;
  const banner = $("banner");
  clearInterval(countdown);
  if (state === "live") {
    status.textContent = "Live";
    banner.hidden = true;
  } else if (state === "connecting") {
    status.textContent = "Connecting…";
  } else if (state === "disconnected") {
    status.textContent = "Disconnected";
    let seconds = retryInSeconds || 1;
    const text = h("span", { class: "banner-text" });
    const render = () => {
      text.textContent = `Live updates are disconnected. Reconnecting in ${seconds} s…`;
    };
    render();
    countdown = setInterval(() => {
      seconds = Math.max(0, seconds - 1);
      render();
    }, 1000);
    clear(banner, text, h("button", { type: "button", class: "secondary", text: "Reconnect now",
      on: { click: () => live.reconnectNow() } }));
    banner.hidden = false;
  }
}

function route() {
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  const target = VIEWS.includes(name) ? name : "cameras";
  if (!VIEWS.includes(name)) history.replaceState(null, "", `#/${target}`);
  if (current === target) return;
  if (current) {
    views[current].hide();
    $(`view-${current}`).hidden = true;
  }
  current = target;
  document.body.dataset.view = target;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === target) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const section = $(`view-${target}`);
  section.hidden = false;
  views[target].show();
  section.querySelector("h2").focus({ preventScroll: true });
}

function start(capabilities) {
  document.body.dataset.session = "in";
  document.body.dataset.role = capabilities.role;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("role").textContent = capabilities.role;
  const detail = new DetailDialog($("detail"));
  const cameras = new CamerasView($("view-cameras").querySelector(".view-content"), {
    openFrame: (tile) => detail.showFrame(tile.camera.name, tile.frameId, tile.detections),
  });
  views = {
    cameras,
    events: new TimelineView($("view-events").querySelector(".view-content"), {
      openEvent: (event) => detail.showEvent(event),
    }),
    statistics: new StatsView($("view-statistics").querySelector(".view-content")),
    providers: new ProvidersView($("view-providers").querySelector(".view-content"),
      { capabilities }),
    persons: new PersonsView($("view-persons").querySelector(".view-content"), {
      capabilities, openSighting: (name, sighting) => detail.showSighting(name, sighting),
    }),
  };
  live = new LiveClient({ events: capabilities.events });
  live.addEventListener("state", (event) => setLiveState(event.detail));
  live.addEventListener("detection", (event) => cameras.onDetection(event.detail));
  live.addEventListener("event", (event) => {
    views.events.onEvent(event.detail);
    views.persons.onEvent(event.detail);
  });
  live.addEventListener("resync", () => {
    for (const view of Object.values(views)) view.reload();
  });
  live.addEventListener("auth", (event) => logout(loginMessage(event.detail)));
  live.start();
  window.addEventListener("hashchange", route);
  route();
}

async function boot() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => logout("You have logged out."));
  session.addEventListener("unauthorized", (event) => {
    if (document.body.dataset.session === "in") logout(loginMessage(event.detail));
  });
  const notice = sessionStorage.getItem(NOTICE_ITEM);
  sessionStorage.removeItem(NOTICE_ITEM);
  if (!getKey()) {
    showLogin(notice || "");
    return;
  }
  try {
    start(await checkKey());
  } catch (exc) {
    if (!(exc instanceof ApiError && exc.status === 0)) clearKey();
    showLogin(loginMessage(exc));
  }
}

boot();
