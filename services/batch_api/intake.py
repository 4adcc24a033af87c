"""``Batch Requested`` events from other systems: the same validation as the API, refusals as events."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import batches, bus
from services.common.errors import BatchConflict, InvalidRequest, Problem
from services.common.events import BatchRejected, BatchRequested, UnknownEvent, parse_workflow_event
from services.common.observability import logger, tracer
from services.common.runtime import prepare

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    settings = prepare()
    event = parse_workflow_event(record.body)
    if not isinstance(event, BatchRequested):
        raise UnknownEvent(f"intake expects Batch Requested, got {event.detail_type.value}")
    batch_id = event.request.get("batchId") if isinstance(event.request.get("batchId"), str) else None
    try:
        batches.create_batch(event.request, settings)
    except InvalidRequest as error:
        logger.info("batch rejected", extra={"batch_id": batch_id, "errors": [p.model_dump() for p in error.problems]})
        bus.publish(BatchRejected(batch_id=batch_id, errors=error.problems))
    except BatchConflict as error:
        bus.publish(
            BatchRejected(batch_id=batch_id, errors=[Problem(field="batchId", rule=str(error))])
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
