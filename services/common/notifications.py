"""The one message at the end of a batch: its whole state, in the reference shape, on SNS."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common import store
from services.common.batches import BatchDetail, show_batch
from services.common.clients import client
from services.common.observability import logger
from services.common.settings import Settings
from services.common.statuses import BatchStatus


class BatchNotification(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    batch_id: str = Field(alias="batchId")
    message: str
    batch_info: BatchDetail = Field(alias="batchInfo")
    status: Literal["SUCCESS", "FAILED"]


def build_notification(detail: BatchDetail) -> BatchNotification:
    if detail.status is BatchStatus.COMPLETE:
        return BatchNotification(
            batch_id=detail.batch_id,
            message="Batch processing has completed successfully.",
            batch_info=detail,
            status="SUCCESS",
        )
    reason = detail.failure_reason or "one or more labeling jobs did not complete"
    words = {
        BatchStatus.CANCELLED: "was cancelled",
        BatchStatus.COMPLETED_WITH_ERRORS: "completed with errors",
    }.get(detail.status, "failed")
    return BatchNotification(
        batch_id=detail.batch_id, message=f"Batch processing {words}: {reason}", batch_info=detail, status="FAILED"
    )


def notify_batch_end(batch_id: str, settings: Settings, sns: Any = None) -> bool:
    """Publish once per batch; False when it had already been published."""
    batch = store.get_batch(batch_id)
    if batch.notified_at is not None:
        return False
    if not batch.status.is_terminal:
        raise RuntimeError(f"batch {batch_id} is still {batch.status.value}; refusing to announce its end")
    notification = build_notification(show_batch(batch_id, settings))
    topic = batch.parsed_request.destination_sns_arn or settings.status_topic_arn
    (sns or client("sns")).publish(
        TopicArn=topic,
        Subject=f"smgt batch {batch.batch_id}: {notification.status}"[:100],
        Message=json.dumps(notification.model_dump(mode="json", by_alias=True)),
        MessageAttributes={
            "batchId": {"DataType": "String", "StringValue": batch.batch_id},
            "status": {"DataType": "String", "StringValue": notification.status},
        },
    )
    store.mark_notified(batch_id)
    logger.info("batch notification published", extra={"batch_id": batch_id, "topic": topic})
    return True
