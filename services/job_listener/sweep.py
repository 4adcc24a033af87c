"""The scheduled sweep: stop jobs past ``JobCompletionTimeout``, recover state-change events that were lost."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import listener
from services.common.labeling import get_labeling_service
from services.common.observability import logger, tracer
from services.common.runtime import prepare


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    report = listener.sweep(scheduled.time, get_labeling_service(), prepare())
    return report.model_dump()
