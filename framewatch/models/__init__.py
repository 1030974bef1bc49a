"""Database models; one module per table, shared by the feature folders."""

from framewatch.core.database import Base
from framewatch.models.api_key import ApiKey
from framewatch.models.camera import Camera
from framewatch.models.detection import Detection
from framewatch.models.event_log import DetectionEventLog
from framewatch.models.frame import Frame
from framewatch.models.person import GalleryVersion, Person, PersonFace, PersonSubject
from framewatch.models.provider_config import DetectionProviderConfig
from framewatch.models.provider_health import ProviderHealth
from framewatch.models.queue_item import QueueItem
from framewatch.models.queue_worker import QueueWorker
from framewatch.models.stats import (
    DetectionSeriesHourly,
    DetectionStatsDaily,
    DetectionStatsHourly,
    JobRun,
    ProviderStatsDaily,
    ProviderStatsHourly,
)
from framewatch.models.webhook import WebhookDelivery, WebhookSubscription

__all__ = [
    "ApiKey",
    "Base",
    "Camera",
    "Detection",
    "DetectionEventLog",
    "DetectionProviderConfig",
    "DetectionSeriesHourly",
    "DetectionStatsDaily",
    "DetectionStatsHourly",
    "Frame",
    "GalleryVersion",
    "JobRun",
    "Person",
    "PersonFace",
    "PersonSubject",
    "ProviderHealth",
    "ProviderStatsDaily",
    "ProviderStatsHourly",
    "QueueItem",
    "QueueWorker",
    "WebhookDelivery",
    "WebhookSubscription",
]
