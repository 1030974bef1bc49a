"""framewatch: a detection-integration service for camera systems."""

__version__ = "0.1.0"
