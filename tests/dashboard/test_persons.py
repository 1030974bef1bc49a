"""The persons gallery: add a person, register a face from a photo, see who was seen where."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import DATA
from tests.dashboard.conftest import BUILTIN_PROVIDER_ID, Served, expect, login, screenshot


def test_register_a_person_from_a_photo_and_see_them_identified(page: Any,
                                                                  server: Served) -> None:
    server.enable_builtin()
    server.add_camera("court", "Court", provider_id=BUILTIN_PROVIDER_ID)
    login(page, server)
    page.get_by_role("link", name="Persons").click()
    expect(page.get_by_text("No persons in the gallery yet.")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("Jordan Example")
    page.get_by_label("Notes", exact=True).fill("plays on the left")
    page.get_by_role("button", name="Add person").click()
    card = page.locator("li.person-card", has_text="Jordan Example")
    expect(card).to_contain_text("0 faces")
    # The new person is chosen in the face form already.
    person_id = card.get_attribute("data-person-id") or ""
    expect(page.get_by_label("Person", exact=True)).to_have_value(person_id)

    # A photo without a face: the API's answer is shown.
    page.get_by_label("Photo", exact=True).set_input_files(DATA / "coffee.jpg")
    page.get_by_role("button", name="Register face").click()
    problem = page.locator("form.card-form", has_text="Register a face").locator(".state-error")
    expect(problem.locator(".error-code")).to_have_text("validation_error")
    expect(problem).to_contain_text("Faces found in the photo: 0")

    page.get_by_label("Photo", exact=True).set_input_files(DATA / "player_left_1.jpg")
    page.get_by_role("button", name="Register face").click()
    expect(page.get_by_text("Registered a face for Jordan Example.")).to_be_visible()
    expect(card).to_contain_text("1 face")
    portrait = card.locator("img.portrait")
    expect(portrait).to_have_attribute("src", re.compile(r"^blob:"))
    expect(portrait).to_have_attribute("alt", "Registered face of Jordan Example")

    # Another photo of the same man, through the built-in detector: identified by name.
    sent = server.send_frame("court", (DATA / "player_left_2.jpg").read_bytes())
    faces = [d for d in sent["detections"] if d["type"] == "face"]
    assert faces and faces[0]["person"]["name"] == "Jordan Example"
    card.get_by_role("button", name="Sightings of Jordan Example").click()
    sightings = page.locator("ol.sighting-list li")
    expect(sightings).to_have_count(1)
    expect(sightings.first).to_contain_text("court")
    screenshot(page, "persons")

    sightings.first.get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Jordan Example at court")).to_be_visible()
    dialog.get_by_role("button", name=re.compile(r"^Open detection #\d+$")).click()
    expect(dialog.locator("dl.facts")).to_contain_text("Jordan Example (similarity")
    page.keyboard.press("Escape")

    # The camera tile names him too.
    page.get_by_role("link", name="Cameras").click()
    labels = page.locator("article.tile[data-camera-id='court'] ul.tile-labels li")
    expect(labels.filter(has_text=re.compile(r"^face \d+% Jordan Example$"))).to_have_count(1)
