"""HTTP API (API Gateway HTTP API, payload v2): create, show and cancel batches."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from services.common import batches
from services.common.errors import BatchConflict, BatchNotFound, InvalidRequest, Problem
from services.common.observability import logger, tracer
from services.common.runtime import prepare
from services.common.statuses import BatchStatus

app = APIGatewayHttpResolver()


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body, default=str))


def _bad_request(problems: list[Problem]) -> Response:
    return _json(
        400,
        {"message": "the request is invalid", "errors": [p.model_dump() for p in problems]},
    )


def _body() -> Any:
    raw = app.current_event.decoded_body
    if not raw:
        raise InvalidRequest([Problem(field="(body)", rule="a JSON body is required")])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidRequest([Problem(field="(body)", rule=f"not valid JSON: {error.msg} at line {error.lineno}")]) from None


@app.post("/batch/create")
@tracer.capture_method
def create() -> Response:
    outcome = batches.create_batch(_body(), prepare())
    return _json(201 if outcome.created else 200, {"batchId": outcome.batch_id, "status": outcome.status.value, "created": outcome.created})


@app.get("/batch/show")
@tracer.capture_method
def show() -> Response:
    settings = prepare()
    params = app.current_event.query_string_parameters or {}
    unknown = sorted(set(params) - {"batchId", "status", "limit", "nextToken"})
    if unknown:
        raise InvalidRequest([Problem(field=name, rule="unknown query parameter") for name in unknown])
    if batch_id := params.get("batchId"):
        return _json(200, batches.show_batch(batch_id, settings).to_wire())
    problems = []
    try:
        status = BatchStatus(params.get("status", BatchStatus.IN_PROGRESS.value))
    except ValueError:
        problems.append(Problem(field="status", rule=f"must be one of {[s.value for s in BatchStatus]}"))
    limit_raw = params.get("limit", "25")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
        problems.append(Problem(field="limit", rule="must be an integer from 1 to 100"))
    if problems:
        raise InvalidRequest(problems)
    try:
        page = batches.list_batches(status, int(limit_raw), params.get("nextToken"))
    except ValueError:
        raise InvalidRequest([Problem(field="nextToken", rule="not a token this API issued")]) from None
    return _json(200, page.model_dump(mode="json", by_alias=True))


@app.post("/batch/cancel")
@tracer.capture_method
def cancel() -> Response:
    prepare()
    body = _body()
    batch_id = body.get("batchId") if isinstance(body, dict) else None
    if not isinstance(batch_id, str) or not batch_id:
        raise InvalidRequest([Problem(field="batchId", rule="required, a string")])
    status = batches.cancel_batch(batch_id)
    return _json(200, {"batchId": batch_id, "status": status.value})


@app.exception_handler(InvalidRequest)
def _invalid(error: InvalidRequest) -> Response:
    return _bad_request(error.problems)


@app.exception_handler(BatchNotFound)
def _not_found(error: BatchNotFound) -> Response:
    return _json(404, {"message": str(error), "batchId": error.batch_id})


@app.exception_handler(BatchConflict)
def _conflict(error: BatchConflict) -> Response:
    return _json(409, {"message": str(error), "batchId": error.batch_id})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
