"""The one message at the end of a batch: its whole state, in the reference shape, on SNS."""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common import manifests, store
from services.common.batches import BatchDetail, show_batch
from services.common.clients import client
from services.common.observability import logger
from services.common.settings import Settings
from services.common.statuses import BatchStatus

SNS_MAX_BYTES = 256 * 1024
_HEADROOM = 8 * 1024
"""Subject and message attributes count toward SNS's limit too."""

NOTIFY_LEASE_SECONDS = 300


class BatchNotification(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    batch_id: str = Field(alias="batchId")
    message: str
    batch_info: dict[str, Any] = Field(alias="batchInfo")
    status: Literal["SUCCESS", "FAILED"]
    batch_info_s3_uri: str | None = Field(default=None, alias="batchInfoS3Uri")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True))


def build_notification(detail: BatchDetail) -> BatchNotification:
    info = detail.to_wire()
    if detail.status is BatchStatus.COMPLETE:
        return BatchNotification(
            batch_id=detail.batch_id,
            message="Batch processing has completed successfully.",
            batch_info=info,
            status="SUCCESS",
        )
    reason = detail.failure_reason or "one or more labeling jobs did not complete"
    words = {
        BatchStatus.CANCELLED: "was cancelled",
        BatchStatus.COMPLETED_WITH_ERRORS: "completed with errors",
    }.get(detail.status, "failed")
    return BatchNotification(
        batch_id=detail.batch_id, message=f"Batch processing {words}: {reason}", batch_info=info, status="FAILED"
    )


def without_presigned_urls(value: Any) -> Any:
    """A detail without its presigned URLs (they are signed anew on every read)."""
    if isinstance(value, dict):
        return {k: without_presigned_urls(v) for k, v in value.items() if not k.endswith("S3Url")}
    if isinstance(value, list):
        return [without_presigned_urls(v) for v in value]
    return value


def fit_to_sns(notification: BatchNotification, settings: Settings, s3: Any = None) -> BatchNotification:
    """Keep the message under SNS's 256 KiB: drop presigned URLs first, then send a summary and
    the full detail's location in S3 (``batchInfoS3Uri``)."""
    limit = SNS_MAX_BYTES - _HEADROOM
    if len(notification.to_json().encode()) <= limit:
        return notification
    lighter = notification.model_copy(update={"batch_info": without_presigned_urls(notification.batch_info)})
    if len(lighter.to_json().encode()) <= limit:
        return lighter
    uri = f"s3://{settings.processing_bucket}/batches/{notification.batch_id}/batch-info.json"
    manifests.write_json(uri, notification.batch_info, s3)
    info = notification.batch_info
    summary = {
        key: info.get(key)
        for key in ("batchId", "status", "createdAt", "updatedAt", "currentLevel", "numLevels", "failureReason")
    }
    summary["levels"] = [
        {k: v for k, v in level.items() if k != "jobLevels"} | {"numJobs": len(level.get("jobLevels", []))}
        for level in info.get("levels", [])
    ]
    return notification.model_copy(update={"batch_info": summary, "batch_info_s3_uri": uri})


def notify_batch_end(batch_id: str, settings: Settings, claimant: str | None = None, sns: Any = None) -> bool:
    """Publish once per batch; False when it had been published (or another message is publishing it).

    ``claimant`` identifies the message being handled (SQS's message id), so that its own
    redelivery after a crash between the publish and the mark can finish the job.
    """
    batch = store.get_batch(batch_id)
    if batch.notified_at is not None:
        return False
    if not batch.status.is_terminal:
        raise RuntimeError(f"batch {batch_id} is still {batch.status.value}; refusing to announce its end")
    if not store.claim_notification(batch_id, claimant or str(uuid.uuid4()), NOTIFY_LEASE_SECONDS):
        logger.info("another notifier holds this batch's announcement", extra={"batch_id": batch_id})
        return False
    notification = fit_to_sns(build_notification(show_batch(batch_id, settings)), settings)
    topic = batch.parsed_request.destination_sns_arn or settings.status_topic_arn
    (sns or client("sns")).publish(
        TopicArn=topic,
        Subject=f"smgt batch {batch.batch_id}: {notification.status}"[:100],
        Message=notification.to_json(),
        MessageAttributes={
            "batchId": {"DataType": "String", "StringValue": batch.batch_id},
            "status": {"DataType": "String", "StringValue": notification.status},
        },
    )
    store.mark_notified(batch_id)
    logger.info("batch notification published", extra={"batch_id": batch_id, "topic": topic})
    return True
