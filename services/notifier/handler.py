"""``Batch Completed`` / ``Batch Failed``: one SNS message carrying the whole batch."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import notifications
from services.common.events import BatchCompleted, BatchFailed, UnknownEvent, parse_workflow_event
from services.common.observability import logger, tracer
from services.common.runtime import prepare

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    settings = prepare()
    event = parse_workflow_event(record.body)
    if not isinstance(event, BatchCompleted | BatchFailed):
        raise UnknownEvent(f"the notifier does not handle {event.detail_type.value}")
    notifications.notify_batch_end(event.batch_id, settings, claimant=record.message_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
