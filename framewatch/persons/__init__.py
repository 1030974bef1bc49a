"""Persons: a gallery of known people, identification of faces, sightings."""
