"""Database models; one module per table, shared by the feature folders."""

from framewatch.core.database import Base
from framewatch.models.api_key import ApiKey
from framewatch.models.camera import Camera
from framewatch.models.detection import Detection
from framewatch.models.event_log import DetectionEventLog
from framewatch.models.frame import Frame
from framewatch.models.provider_config import DetectionProviderConfig
from framewatch.models.queue_item import QueueItem

__all__ = [
    "ApiKey",
    "Base",
    "Camera",
    "Detection",
    "DetectionEventLog",
    "DetectionProviderConfig",
    "Frame",
    "QueueItem",
]
