// Small DOM helpers. Text always goes in as text nodes (never innerHTML): whatever a provider,
// a camera name or an event message contains, it is shown, not run.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(element, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.setAttribute("class", value);
    else if (name === "text") element.textContent = String(value);
    else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && !(element instanceof SVGElement) && typeof value !== "string") {
      element[name] = value; // properties such as hidden, disabled, checked, value
    } else element.setAttribute(name, value === true ? "" : String(value));
  }
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** h("button", {class: "x", on: {click}}, "text", child…) */
export function h(tag, props, ...children) {
  return append(apply(document.createElement(tag), props), children);
}

export function svg(tag, props, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), props), children);
}

export function clear(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** A loading, empty or error state, announced to screen readers. */
export function stateBox(kind, text, ...extra) {
  const role = kind === "error" ? "alert" : "status";
  return h("div", { class: `state state-${kind}`, role, dataset: { state: kind } },
    h("p", { text }), ...extra);
}

export function loading(what = "Loading…") {
  return stateBox("loading", what);
}

/** The API's `{"error", "detail"}` (or a network failure), as an alert. */
export function errorBox(exc, action = null) {
  const error = exc && exc.error ? exc.error : "error";
  const detail = exc && exc.detail ? exc.detail : String((exc && exc.message) || exc);
  return h("div", { class: "state state-error", role: "alert", dataset: { state: "error" } },
    h("p", {}, h("strong", { class: "error-code", text: error }), " ",
      h("span", { class: "error-detail", text: detail })),
    action);
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function timeElement(iso) {
  return h("time", { datetime: iso || "", text: formatTime(iso) });
}

export function percent(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return `${(value * 100).toFixed(digits)}%`;
}

export function detectionLabel(detection) {
  const parts = [detection.type, percent(detection.confidence)];
  const name = detection.person && detection.person.name;
  if (name) parts.push(name);
  else if (detection.subject) parts.push(detection.subject);
  return parts.join(" ");
}

/** Calls `fn` at most once per `ms`, with the latest arguments. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A labelled form field: label + control (+ hint), with ids wired for screen readers. */
let fieldCounter = 0;
export function field(labelText, control, hint = null) {
  fieldCounter += 1;
  const id = control.id || `f${fieldCounter}`;
  control.id = id;
  const parts = [h("label", { for: id, text: labelText }), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint", text: hint }));
  }
  return h("div", { class: "field" }, parts);
}

export function select(name, options, value = "") {
  return h("select", { name },
    options.map(([optionValue, text]) => h("option", {
      value: optionValue, text, selected: optionValue === value,
    })));
}
