"""Logging set-up: plain text for people, or one JSON object per line for log pipelines
(`FRAMEWATCH_LOG_FORMAT=json`); either way every record carries the request id of the request
(or queue item) it belongs to."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from framewatch.core.context import current_request

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
# uvicorn's `color_message` is its message again, with terminal colours.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id",
                                                       "color_message"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request.get().request_id or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's loggers go through the root handler too, so they are formatted alike.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic talks at INFO whenever the schema version is read; only `migrate` lets it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request it makes at INFO: a line per provider call and per demo frame.
    logging.getLogger("httpx").setLevel(logging.WARNING)
