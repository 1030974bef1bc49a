"""Frames: validating images, storing them on disk, serving them back."""
