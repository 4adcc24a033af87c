"""Putting our events on the workflow's bus."""

from __future__ import annotations

import json
from typing import Any

from services.common.clients import client
from services.common.events import EVENT_SOURCE, EventDetail
from services.common.observability import logger
from services.common.settings import get_settings


class PublishError(RuntimeError):
    """EventBridge refused an entry: the caller's message must be retried, not acknowledged."""


def publish(*details: EventDetail, events_client: Any = None, bus_name: str | None = None) -> None:
    """Put events in one call (at most 10 per call, as PutEvents allows)."""
    events_client = events_client or client("events")
    bus_name = bus_name or get_settings().event_bus_name
    for start in range(0, len(details), 10):
        chunk = details[start : start + 10]
        entries = [
            {
                "Source": EVENT_SOURCE,
                "DetailType": d.detail_type.value,
                "Detail": json.dumps(d.to_wire()),
                "EventBusName": bus_name,
            }
            for d in chunk
        ]
        response = events_client.put_events(Entries=entries)
        if response.get("FailedEntryCount"):
            failed = [e for e in response["Entries"] if e.get("ErrorCode")]
            raise PublishError(f"EventBridge refused {len(failed)} event(s): {failed}")
        for d in chunk:
            logger.info("event published", extra={"detail_type": d.detail_type.value, "detail": d.to_wire()})
