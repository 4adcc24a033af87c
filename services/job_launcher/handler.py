"""``Level Started``: create the level's labeling jobs, each at most once.

A launch that must wait (the account at ``MAX_CONCURRENT_LABELING_JOBS``, throttling,
``ResourceLimitExceeded``) reports its record failed, so SQS keeps the message; before that the
record's visibility is extended with an exponential backoff on its receive count, so it comes back
after 30 s, 60 s, 120 s... (``LAUNCH_RETRY_BASE_SECONDS``, capped at ``LAUNCH_RETRY_MAX_SECONDS``)
instead of hammering the service every visibility timeout. Each receive counts toward the queue's
``maxReceiveCount``; see services/common/backoff.py for the trade-off.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import backoff, launcher
from services.common.events import LevelStarted, UnknownEvent, parse_workflow_event
from services.common.labeling import get_labeling_service
from services.common.observability import logger, tracer
from services.common.runtime import prepare

# A level that must wait is not a function error: answer every deferred record in the response
# (even when all of them are) rather than raising, so the Errors metric and alarms stay for real failures.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    settings = prepare()
    event = parse_workflow_event(record.body)
    if not isinstance(event, LevelStarted):
        raise UnknownEvent(f"the launcher does not handle {event.detail_type.value}")
    try:
        launcher.launch_level(event, get_labeling_service(), settings)
    except launcher.LaunchDeferred as deferred:
        receives = _receive_count(record)
        delay = backoff.retry_delay_seconds(
            receives, settings.launch_retry_base_seconds, settings.launch_retry_max_seconds
        )
        postponed = backoff.postpone(record.event_source_arn, record.receipt_handle, delay)
        logger.info(
            "level launch deferred",
            extra={
                "batch_id": event.batch_id,
                "level": event.level,
                "receive_count": receives,
                "retry_in_seconds": delay if postponed else None,
                "reason": str(deferred),
            },
        )
        raise


def _receive_count(record: SQSRecord) -> int:
    try:
        return max(1, int(record.attributes.approximate_receive_count))
    except (KeyError, TypeError, ValueError):
        return 1


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
