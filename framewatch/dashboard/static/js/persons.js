// The persons gallery: people with a face crop each, a form to add a person and one to register a
// face from a photo (admins: persons:admin), and each person's sightings (keyset pages).

import { api, imageUrl } from "./api.js";
import {
  clear, errorBox, field, formatTime, h, loading, percent, select, stateBox,
} from "./dom.js";

export class PersonsView {
  constructor(section, { capabilities, openSighting }) {
    this.section = section;
    this.admin = capabilities.personsAdmin;
    this.openSighting = openSighting;
    this.urls = [];
    this.persons = [];
    this.body = h("div", { class: "view-body" });
    this.sightings = h("section", { class: "sightings", "aria-labelledby": "sightings-title" });
    this.forms = h("div", { class: "person-forms" });
    section.append(h("div", { class: "toolbar" }, h("button", { type: "button",
      class: "secondary", text: "Refresh", on: { click: () => this.load() } })),
    this.forms, this.body, this.sightings);
    if (this.admin) this.buildForms();
    else {
      this.forms.append(h("p", { class: "note",
        text: "Adding people and registering faces needs an admin key (persons:admin)." }));
    }
  }

  buildForms() {
    const name = h("input", { name: "name", required: true, maxlength: "128",
      autocomplete: "off" });
    const notes = h("input", { name: "notes", maxlength: "1000" });
    const createProblem = h("div", { class: "form-problem" });
    const create = h("form", { class: "card-form", "aria-labelledby": "person-create-title",
      on: { submit: async (event) => {
        event.preventDefault();
        clear(createProblem);
        try {
          const person = await api.post("/api/v1/persons",
            { name: name.value.trim(), notes: notes.value.trim() || null });
          create.reset();
          clear(createProblem, h("p", { role: "status", class: "saved",
            text: `Added ${person.name}. Register a face for them below.` }));
          await this.load(person.id);
        } catch (exc) {
          clear(createProblem, errorBox(exc));
        }
      } } },
    h("h3", { id: "person-create-title", text: "Add a person" }),
    field("Name", name), field("Notes", notes), createProblem,
    h("button", { type: "submit", text: "Add person" }));

    this.personSelect = select("person_id", [["", "Choose a person"]]);
    this.personSelect.required = true;
    const photo = h("input", { type: "file", name: "image", accept: "image/jpeg,image/png",
      required: true });
    const faceProblem = h("div", { class: "form-problem" });
    const submitFace = h("button", { type: "submit", text: "Register face" });
    const face = h("form", { class: "card-form", "aria-labelledby": "face-title",
      on: { submit: async (event) => {
        event.preventDefault();
        clear(faceProblem);
        const personId = this.personSelect.value;
        if (!personId || !photo.files.length) return;
        const form = new FormData();
        form.append("image", photo.files[0]);
        submitFace.disabled = true;
        clear(faceProblem, loading("Finding the face…"));
        try {
          await api.upload(`/api/v1/persons/${personId}/faces`, form);
          photo.value = "";
          const person = this.persons.find((p) => String(p.id) === personId);
          clear(faceProblem, h("p", { role: "status", class: "saved",
            text: `Registered a face for ${person ? person.name : `person #${personId}`}.` }));
          await this.load(Number(personId));
        } catch (exc) {
          const found = exc.body && exc.body.faces_found !== undefined
            ? h("p", { text: `Faces found in the photo: ${exc.body.faces_found}. `
              + "Use a photo with exactly one face." }) : null;
          clear(faceProblem, errorBox(exc, found));
        } finally {
          submitFace.disabled = false;
        }
      } } },
    h("h3", { id: "face-title", text: "Register a face from a photo" }),
    field("Person", this.personSelect), field("Photo", photo, "JPEG or PNG with one face."),
    faceProblem, submitFace);
    this.forms.append(create, face);
  }

  show() {
    if (!this.loaded) this.load();
  }

  hide() {}

  release() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }

  async load(selectId = null) {
    this.loaded = true;
    this.section.setAttribute("aria-busy", "true");
    clear(this.body, loading("Loading persons…"));
    try {
      this.persons = await api.get("/api/v1/persons");
      this.release();
      if (this.personSelect) {
        const keep = selectId !== null ? String(selectId) : this.personSelect.value;
        clear(this.personSelect, h("option", { value: "", text: "Choose a person" }),
          ...this.persons.map((p) => h("option", { value: String(p.id), text: p.name })));
        this.personSelect.value = this.persons.some((p) => String(p.id) === keep) ? keep : "";
      }
      if (!this.persons.length) {
        clear(this.body, stateBox("empty", "No persons in the gallery yet."));
        return;
      }
      const gallery = h("ul", { class: "gallery", "aria-label": "Persons" },
        this.persons.map((p) => this.card(p)));
      clear(this.body, gallery);
    } catch (exc) {
      clear(this.body, errorBox(exc, h("button", {
        type: "button", text: "Try again", on: { click: () => this.load() },
      })));
    } finally {
      this.section.removeAttribute("aria-busy");
    }
  }

  card(person) {
    const portrait = h("div", { class: "portrait", "aria-hidden": "true",
      text: person.name.slice(0, 1).toUpperCase() });
    const card = h("li", { class: "person-card", dataset: { personId: String(person.id),
      faces: String(person.faces) } },
    portrait,
    h("h3", { class: "person-name", text: person.name }),
    h("p", { class: "muted", text: `${person.faces} face${person.faces === 1 ? "" : "s"}` }),
    person.notes ? h("p", { class: "notes", text: person.notes }) : null,
    h("button", { type: "button", class: "secondary", text: "Sightings",
      "aria-label": `Sightings of ${person.name}`,
      on: { click: () => this.showSightings(person) } }));
    if (person.faces) this.portrait(person, portrait);
    return card;
  }

  async portrait(person, placeholder) {
    try {
      const faces = await api.get(`/api/v1/persons/${person.id}/faces`);
      if (!faces.length) return;
      const url = await imageUrl(`/api/v1/persons/${person.id}/faces/${faces[0].id}/crop`);
      this.urls.push(url);
      placeholder.replaceWith(h("img", { class: "portrait", src: url,
        alt: `Registered face of ${person.name}` }));
    } catch {
      // the initial stays
    }
  }

  async showSightings(person, cursor = null) {
    const title = h("h3", { id: "sightings-title", tabindex: "-1",
      text: `Sightings of ${person.name}` });
    if (!cursor) clear(this.sightings, title, loading());
    let page;
    try {
      page = await api.get(`/api/v1/persons/${person.id}/sightings`, { limit: 20, cursor });
    } catch (exc) {
      clear(this.sightings, title, errorBox(exc));
      return;
    }
    let list = this.sightings.querySelector("ol");
    if (!cursor) {
      list = h("ol", { class: "sighting-list" });
      clear(this.sightings, title, page.items.length ? list
        : stateBox("empty", `${person.name} has not been seen yet.`));
      title.focus();
    }
    this.sightings.querySelector(".older")?.remove();
    for (const sighting of page.items) {
      list.append(h("li", {}, h("button", { type: "button", class: "link",
        text: `${formatTime(sighting.detected_at)} · ${sighting.camera_id} · similarity `
          + `${percent(sighting.similarity)}`,
        on: { click: () => this.openSighting(person.name, sighting) } })));
    }
    if (page.next_cursor) {
      this.sightings.append(h("button", { type: "button", class: "secondary older",
        text: "Older", on: { click: () => this.showSightings(person, page.next_cursor) } }));
    }
  }

  onEvent(message) {
    const type = message.event && message.event.event_type;
    if (this.loaded && type && type.startsWith("person.") && type !== "person.identified") {
      this.load();
    }
  }

  reload() {
    if (this.loaded) this.load();
  }

  destroy() {
    this.release();
  }
}
