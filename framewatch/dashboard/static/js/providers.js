// Providers: the list with each one's circuit breaker (from queue-stats), a "Test" button
// (POST /api/v1/detections/test-provider) with its result, and, for admins only, a form that
// changes a provider (PATCH /api/v1/providers/{id}) or adds one (POST /api/v1/providers).

import { api } from "./api.js";
import { clear, errorBox, field, h, loading, percent, select, stateBox } from "./dom.js";

const KINDS = ["builtin", "deepstack", "compreface", "http"];

function found(report) {
  if (!report.found || !report.found.length) return h("p", { text: "Nothing found in the sample." });
  return h("ul", { class: "found" }, report.found.map((f) => h("li", {
    text: `${f.type} ${percent(f.confidence)}${f.subject ? ` (${f.subject})` : ""}`,
  })));
}

function numberInput(name, value, attrs) {
  return h("input", { type: "number", name, value: String(value), ...attrs });
}

export class ProvidersView {
  constructor(section, { capabilities }) {
    this.section = section;
    this.admin = capabilities.providersAdmin;
    this.body = h("div", { class: "view-body" });
    this.result = h("div", { class: "test-result", role: "status", "aria-live": "polite" });
    this.formArea = h("div", { class: "provider-form-area" });
    const toolbar = h("div", { class: "toolbar" },
      h("button", { type: "button", class: "secondary", text: "Refresh",
        on: { click: () => this.load() } }),
      this.admin ? h("button", { type: "button", text: "Add a provider",
        on: { click: () => this.edit(null) } }) : null);
    const note = this.admin ? null : h("p", { id: "providers-admin-note", class: "note",
      text: "Testing and configuring providers needs an admin key (providers:admin)." });
    section.append(...[toolbar, note, this.body, this.result, this.formArea].filter(Boolean));
  }

  show() {
    if (!this.loaded) this.load();
  }

  hide() {}

  async load() {
    this.loaded = true;
    this.section.setAttribute("aria-busy", "true");
    clear(this.body, loading("Loading providers…"));
    try {
      const [providers, queue] = await Promise.all([
        api.get("/api/v1/providers"), api.get("/api/v1/detections/queue-stats"),
      ]);
      this.providers = providers;
      const breakers = new Map(queue.breakers.map((b) => [b.provider, b]));
      if (!providers.length) {
        clear(this.body, stateBox("empty", "No providers configured."));
        return;
      }
      clear(this.body, this.table(providers, breakers));
    } catch (exc) {
      clear(this.body, errorBox(exc, h("button", {
        type: "button", text: "Try again", on: { click: () => this.load() },
      })));
    } finally {
      this.section.removeAttribute("aria-busy");
    }
  }

  table(providers, breakers) {
    const head = ["Name", "Kind", "Endpoint", "Types", "Min. confidence", "Status", "Breaker",
      "Actions"];
    return h("div", { class: "table-wrap" }, h("table", { class: "providers" },
      h("caption", { class: "visually-hidden", text: "Detection providers" }),
      h("thead", {}, h("tr", {}, head.map((text) => h("th", { scope: "col", text })))),
      h("tbody", {}, providers.map((p) => this.row(p, breakers.get(p.name))))));
  }

  row(provider, breaker) {
    const state = breaker ? breaker.state : "closed";
    const breakerText = breaker
      ? `${state}${breaker.consecutive_failures ? ` (${breaker.consecutive_failures} failures)` : ""}`
      : "closed (no failures)";
    const status = [provider.enabled ? "enabled" : "disabled"];
    if (provider.is_default) status.push("default");
    const test = h("button", {
      type: "button", class: "test-button", text: "Test", disabled: !this.admin,
      "aria-describedby": this.admin ? null : "providers-admin-note",
      "aria-label": `Test provider ${provider.name}`,
      on: { click: () => this.test({ provider_id: provider.id }, provider.name, test) },
    });
    const edit = this.admin ? h("button", { type: "button", class: "secondary", text: "Configure",
      "aria-label": `Configure provider ${provider.name}`, on: { click: () => this.edit(provider) },
    }) : null;
    return h("tr", { dataset: { provider: provider.name } },
      h("th", { scope: "row", text: provider.name }),
      h("td", { text: provider.kind }),
      h("td", { class: "endpoint", text: provider.base_url || "in process" }),
      h("td", { text: provider.detection_types.join(", ") }),
      h("td", { text: String(provider.min_confidence) }),
      h("td", { text: status.join(", ") }),
      h("td", {}, h("span", { class: `badge breaker-${state}`, dataset: { breaker: state },
        title: breaker && breaker.last_error ? breaker.last_error : "", text: breakerText })),
      h("td", { class: "actions" }, test, edit));
  }

  async test(body, name, button) {
    if (button) button.disabled = true;
    clear(this.result, loading(`Testing ${name}…`));
    try {
      const report = await api.post("/api/v1/detections/test-provider", body);
      const outcome = report.success ? "success" : "failure";
      // `name`, not the report's: unsaved settings are tested under a placeholder name.
      clear(this.result, h("section", { class: `report report-${outcome}`,
        dataset: { outcome }, "aria-label": `Test of ${name}` },
      h("h3", { text: `Test of ${name}: ${report.success ? "working" : "failed"}` }),
      h("p", { text: `${report.kind}${report.model ? ` · ${report.model}` : ""} · `
        + `${Math.round(report.latency_ms)} ms · ${report.attempts} attempt`
        + `${report.attempts === 1 ? "" : "s"}` }),
      report.error ? errorBox(report.error) : found(report)));
    } catch (exc) {
      clear(this.result, errorBox(exc));
    } finally {
      if (button) button.disabled = false;
    }
  }

  /** The configuration form for `provider` (null: a new one). Admins only. */
  edit(provider) {
    if (!this.admin) return;
    const p = provider || { name: "", kind: "deepstack", base_url: "", timeout_seconds: 10,
      max_retries: 2, detection_types: ["person", "face", "vehicle"], min_confidence: 0.4,
      enabled: true, is_default: false, options: {}, has_api_key: false };
    const inputs = {
      name: h("input", { name: "name", value: p.name, required: true, maxlength: "64" }),
      kind: select("kind", KINDS.map((k) => [k, k]), p.kind),
      base_url: h("input", { name: "base_url", type: "url", value: p.base_url || "",
        placeholder: "http://host:port" }),
      api_key: h("input", { name: "api_key", type: "password", autocomplete: "off",
        placeholder: p.has_api_key ? `unchanged (${p.api_key_hint})` : "none" }),
      timeout_seconds: numberInput("timeout_seconds", p.timeout_seconds,
        { min: "0.1", step: "0.1" }),
      max_retries: numberInput("max_retries", p.max_retries, { min: "0", max: "10", step: "1" }),
      detection_types: h("input", { name: "detection_types", value: p.detection_types.join(", ") }),
      min_confidence: numberInput("min_confidence", p.min_confidence,
        { min: "0", max: "1", step: "0.01" }),
      enabled: h("input", { type: "checkbox", name: "enabled", checked: p.enabled }),
      is_default: h("input", { type: "checkbox", name: "is_default", checked: p.is_default }),
      options: h("textarea", { name: "options", rows: "4", spellcheck: "false",
        text: JSON.stringify(p.options || {}, null, 2) }),
    };
    inputs.kind.disabled = Boolean(provider); // fixed once created
    const problem = h("div", { class: "form-problem" });
    const read = (forTest = false) => {
      let options;
      try {
        options = JSON.parse(inputs.options.value || "{}");
      } catch {
        throw { error: "invalid_options", detail: "Options must be a JSON object." };
      }
      const body = {
        base_url: inputs.base_url.value.trim() || null,
        timeout_seconds: Number(inputs.timeout_seconds.value),
        max_retries: Number(inputs.max_retries.value),
        detection_types: inputs.detection_types.value.split(",").map((t) => t.trim())
          .filter(Boolean),
        min_confidence: Number(inputs.min_confidence.value), enabled: inputs.enabled.checked,
        options,
      };
      if (inputs.api_key.value) body.api_key = inputs.api_key.value;
      if (!provider || forTest) body.kind = inputs.kind.value; // a provider's kind is fixed
      return body;
    };
    const submit = async (event) => {
      event.preventDefault();
      clear(problem);
      try {
        const body = { ...read(), name: inputs.name.value.trim(),
          is_default: inputs.is_default.checked };
        const saved = provider ? await api.patch(`/api/v1/providers/${provider.id}`, body)
          : await api.post("/api/v1/providers", body);
        clear(this.formArea, h("p", { class: "saved", role: "status",
          text: `Saved provider ${saved.name}.` }));
        await this.load();
      } catch (exc) {
        clear(problem, errorBox(exc));
      }
    };
    const testSettings = () => {
      clear(problem);
      try {
        this.test({ provider: read(true) }, `${inputs.name.value || "these settings"} (unsaved)`);
      } catch (exc) {
        clear(problem, errorBox(exc));
      }
    };
    const title = provider ? `Configure ${provider.name}` : "Add a provider";
    const form = h("form", { class: "provider-form", "aria-labelledby": "provider-form-title",
      on: { submit } },
    h("h3", { id: "provider-form-title", tabindex: "-1", text: title }),
    h("div", { class: "form-grid" },
      field("Name", inputs.name), field("Kind", inputs.kind),
      field("Base URL", inputs.base_url, "Not used by the builtin kind."),
      field("API key", inputs.api_key, "Write-only: stored encrypted, never shown again."),
      field("Timeout (s)", inputs.timeout_seconds), field("Retries", inputs.max_retries),
      field("Detection types", inputs.detection_types, "Comma-separated: person, face, vehicle…"),
      field("Minimum confidence", inputs.min_confidence),
      h("div", { class: "field checkbox" }, inputs.enabled,
        h("label", { for: inputs.enabled.id || (inputs.enabled.id = "provider-enabled"),
          text: "Enabled" })),
      h("div", { class: "field checkbox" }, inputs.is_default,
        h("label", { for: inputs.is_default.id || (inputs.is_default.id = "provider-default"),
          text: "Default provider" })),
      field("Options (JSON)", inputs.options)),
    problem,
    h("div", { class: "form-actions" },
      h("button", { type: "submit", text: "Save" }),
      h("button", { type: "button", class: "secondary", text: "Test these settings",
        on: { click: testSettings } }),
      h("button", { type: "button", class: "secondary", text: "Cancel",
        on: { click: () => clear(this.formArea) } })));
    clear(this.formArea, form);
    form.querySelector("h3").focus();
  }

  reload() {}

  destroy() {}
}
