"""HTTP API (API Gateway HTTP API, payload v2): create, show and cancel batches."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ParamValidationError
from pynamodb.exceptions import PynamoDBException

from services.common import batches
from services.common.errors import BatchConflict, BatchNotFound, InvalidRequest, Problem
from services.common.observability import logger, tracer
from services.common.request import NAME_PATTERN, NAME_RULE
from services.common.runtime import prepare
from services.common.statuses import BatchStatus

app = APIGatewayHttpResolver()

_LIMIT = re.compile(r"[0-9]{1,3}")  # str.isdigit() also takes "²", which int() refuses
_TOKEN_RULE = "not a token this API issued"


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body, default=str))


def _bad_request(problems: list[Problem]) -> Response:
    return _json(
        400,
        {"message": "the request is invalid", "errors": [p.model_dump() for p in problems]},
    )


def _body() -> Any:
    try:
        raw = app.current_event.decoded_body
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest([Problem(field="(body)", rule="not UTF-8 text")]) from None
    if not raw:
        raise InvalidRequest([Problem(field="(body)", rule="a JSON body is required")])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidRequest([Problem(field="(body)", rule=f"not valid JSON: {error.msg} at line {error.lineno}")]) from None
    except RecursionError:
        raise InvalidRequest([Problem(field="(body)", rule="JSON nested too deeply")]) from None


def _batch_id(value: object) -> str:
    """A batch id from the caller: malformed ids never reach the table (keys have size and encoding limits)."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest([Problem(field="batchId", rule="required, a string")])
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidRequest([Problem(field="batchId", rule=NAME_RULE)])
    return value


def _token_is_well_formed(token: str) -> bool:
    """The shape of a token ``store.list_batches`` issues: base64url JSON of a DynamoDB key."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError, JSONDecodeError included
        return False
    if not isinstance(key, dict) or not key:
        return False
    for value in key.values():  # {"pk": {"S": "..."}, "created_at": {"S": "..."}, ...}
        if not (isinstance(value, dict) and len(value) == 1):
            return False
        ((kind, text),) = value.items()
        if kind not in ("S", "N") or not isinstance(text, str):
            return False
    return True


def _refused_by_dynamodb(error: PynamoDBException) -> bool:
    """A well-formed but forged token: DynamoDB (or botocore before it) refuses the start key."""
    return error.cause_response_code == "ValidationException" or isinstance(error.cause, ParamValidationError)


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
    if "batchId" in params:
        return _json(200, batches.show_batch(_batch_id(params["batchId"]), settings).to_wire())
    problems = []
    try:
        status = BatchStatus(params.get("status", BatchStatus.IN_PROGRESS.value))
    except ValueError:
        problems.append(Problem(field="status", rule=f"must be one of {[s.value for s in BatchStatus]}"))
    limit_raw = params.get("limit", "25")
    if not _LIMIT.fullmatch(limit_raw) or not 1 <= int(limit_raw) <= 100:
        problems.append(Problem(field="limit", rule="must be an integer from 1 to 100"))
    token = params.get("nextToken") or None
    if token is not None and not _token_is_well_formed(token):
        problems.append(Problem(field="nextToken", rule=_TOKEN_RULE))
    if problems:
        raise InvalidRequest(problems)
    try:
        page = batches.list_batches(status, int(limit_raw), token)
    except ValueError:
        raise InvalidRequest([Problem(field="nextToken", rule=_TOKEN_RULE)]) from None
    except PynamoDBException as error:
        if token is None or not _refused_by_dynamodb(error):
            raise
        raise InvalidRequest([Problem(field="nextToken", rule=_TOKEN_RULE)]) from None
    return _json(200, page.model_dump(mode="json", by_alias=True))


@app.post("/batch/cancel")
@tracer.capture_method
def cancel() -> Response:
    prepare()
    body = _body()
    if not isinstance(body, dict):
        raise InvalidRequest([Problem(field="(body)", rule="must be a JSON object")])
    unknown = sorted(set(body) - {"batchId"})
    if unknown:
        raise InvalidRequest([Problem(field=name, rule="unknown field: not part of the request schema") for name in unknown])
    batch_id = _batch_id(body.get("batchId"))
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
