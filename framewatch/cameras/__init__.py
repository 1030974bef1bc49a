"""Cameras: the sources of frames."""
