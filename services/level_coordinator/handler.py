"""Level barriers: ``Batch Created`` starts level 1; each ``Labeling Job Finished`` may end a level."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import coordinator
from services.common.events import BatchCreated, LabelingJobFinished, UnknownEvent, parse_workflow_event
from services.common.observability import logger, tracer
from services.common.runtime import prepare

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    prepare()
    event = parse_workflow_event(record.body)
    if isinstance(event, BatchCreated):
        coordinator.on_batch_created(event)
    elif isinstance(event, LabelingJobFinished):
        coordinator.on_job_finished(event)
    else:
        raise UnknownEvent(f"the coordinator does not handle {event.detail_type.value}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
