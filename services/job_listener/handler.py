"""SageMaker's own job state-change events: record what DescribeLabelingJob says, announce ends."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import listener
from services.common.events import parse_sagemaker_state_change
from services.common.labeling import get_labeling_service
from services.common.observability import logger, tracer
from services.common.runtime import prepare

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    prepare()
    listener.on_state_change(parse_sagemaker_state_change(record.body), get_labeling_service())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
