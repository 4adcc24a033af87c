"""The HTTP API's contract, generated from the pydantic models: an OpenAPI 3.1 document and the
JSON Schema of the batch request.

    python -m services.common.schema --write    # docs/openapi.json, docs/batch-request.schema.json
    python -m services.common.schema --check    # exit 1 when the checked-in files are out of date
    python -m services.common.schema            # print the OpenAPI document

Nothing here is written by hand except what the models cannot say: the paths, the status codes and
the small response bodies ``services/batch_api/api.py`` builds (the models below describe them, and
tests/unit/test_api_contract.py checks real responses against them). Request bodies use the
models' validation schema, response bodies their serialization schema, both with the wire
(camelCase) names.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from services.common.batches import BatchDetail, BatchList
from services.common.errors import Problem
from services.common.request import NAME_PATTERN, BatchRequest
from services.common.statuses import BatchStatus

API_TITLE = "smgt-workflow batch API"
API_VERSION = "1.0.0"
"""The contract's version: bump it when the wire format changes, not with every release."""
LOCAL_SERVER = "http://127.0.0.1:3000"
SCHEMA_ID = "https://smgt-workflow.example/schemas/batch-request.schema.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
OPENAPI_FILE = "openapi.json"
REQUEST_SCHEMA_FILE = "batch-request.schema.json"

Mode = Literal["validation", "serialization"]


# --- the bodies api.py builds by hand ---------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", field_title_generator=lambda name, info: info.alias or name)


class CreateResponse(_Wire):
    """The batch was accepted: created now (201) or already there with the same request (200)."""

    batch_id: str = Field(alias="batchId")
    status: BatchStatus
    created: bool


class CancelRequest(_Wire):
    """The body of ``POST /batch/cancel``."""

    batch_id: str = Field(alias="batchId", json_schema_extra={"pattern": NAME_PATTERN.pattern})


class CancelResponse(_Wire):
    """The batch's status after the cancel: CANCELLED, or the status it had already ended with."""

    batch_id: str = Field(alias="batchId")
    status: BatchStatus


class InvalidRequestResponse(_Wire):
    """400: every problem found at once, each with a field path such as ``labelingJobs[2].inputConfig``."""

    message: str
    errors: list[Problem] = Field(min_length=1)


class ErrorResponse(_Wire):
    """404 (no such batch) and 409 (the batch id exists with a different request)."""

    message: str
    batch_id: str = Field(alias="batchId")


# --- generation -------------------------------------------------------------------------------


def _model_schema(model: type[BaseModel], mode: Mode) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode=mode)


def request_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the ``POST /batch/create`` body.

    It says what each field accepts; the whole-batch rules (levels 1..N, chaining, unique names,
    labeling job name length, the deployment's buckets) are checked by the API and listed in the
    description.
    """
    schema = _model_schema(BatchRequest, "validation")
    head = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "smgt-workflow batch request",
        "description": (
            "The body of POST /batch/create. Beyond this schema the API checks the batch as a whole: "
            "jobLevel values run 1..N with no gaps, job names are unique (case-insensitively), "
            "<batchId>-<jobName> is at most 63 characters, chainFromJobName names a job of a lower level "
            "(and, for Audit / Verification modalities, of the same base task type), "
            "labelCategoryConfigS3Uri is required unless the job chains, labelAttributeName follows the "
            "modality's rules, and S3 URIs name the deployment's input or processing bucket."
        ),
    }
    schema.pop("title", None)
    schema.pop("description", None)
    return head | schema


class _Components:
    """``components/schemas``, filled from the models' schemas with their ``$defs`` hoisted."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        schema = _rewrite_refs(copy.deepcopy(schema))
        for def_name, definition in schema.pop("$defs", {}).items():
            self._put(def_name, definition)
        self._put(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def model(self, model: type[BaseModel], mode: Mode = "serialization") -> dict[str, str]:
        return self.add(model.__name__, _model_schema(model, mode))

    def _put(self, name: str, schema: dict[str, Any]) -> None:
        if name in self.schemas and self.schemas[name] != schema:
            raise ValueError(f"two different schemas are both named {name!r}")
        self.schemas[name] = schema


def _rewrite_refs(node: Any, *, in_mapping: bool = False) -> Any:
    """Point ``$ref`` values (and a discriminator's ``mapping`` values) at ``components/schemas``."""
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", "#/components/schemas/", 1)
                if (key == "$ref" or in_mapping) and isinstance(value, str)
                else _rewrite_refs(value, in_mapping=key == "mapping")
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 of the HTTP API (template.yaml's HttpApi, payload format 2.0, AWS_IAM auth)."""
    c = _Components()
    request_schema = request_json_schema()
    for key in ("$schema", "$id"):
        request_schema.pop(key)  # an $id inside a component would rebase its #/components refs
    batch_request = c.add("BatchRequest", request_schema)
    create_response = c.model(CreateResponse)
    cancel_request = c.model(CancelRequest, "validation")
    cancel_response = c.model(CancelResponse)
    invalid = _response("The request is invalid; every problem is listed.", c.model(InvalidRequestResponse))
    not_found = _response("No batch has this id.", c.model(ErrorResponse))
    batch_detail = c.model(BatchDetail)
    batch_list = c.model(BatchList)
    status = c.add(BatchStatus.__name__, TypeAdapter(BatchStatus).json_schema(mode="validation"))
    batch_id_schema = {"type": "string", "pattern": NAME_PATTERN.pattern}

    paths = {
        "/batch/create": {
            "post": {
                "operationId": "createBatch",
                "summary": "Create a batch (idempotent per batchId and body)",
                "description": (
                    "Validates the whole request, stores the batch, its levels and jobs, and announces it. "
                    "The same body again answers 200 with the existing batch; another body under an "
                    "existing batchId answers 409."
                ),
                "requestBody": {"required": True, "content": _json_content(batch_request)},
                "responses": {
                    "200": _response("The batch already exists with this same request.", create_response),
                    "201": _response("The batch was created.", create_response),
                    "400": invalid,
                    "409": _response("The batchId exists with a different request.", c.model(ErrorResponse)),
                },
            }
        },
        "/batch/show": {
            "get": {
                "operationId": "showBatches",
                "summary": "One batch in detail (batchId), or a page of batches of one status",
                "description": "With batchId the other parameters are ignored. Any other parameter answers 400.",
                "parameters": [
                    _query("batchId", "The batch to show in detail.", batch_id_schema),
                    _query("status", "List batches of this status (default IN_PROGRESS), newest first.", status),
                    _query(
                        "limit",
                        "Page size.",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                    ),
                    _query("nextToken", "The nextToken of the previous page.", {"type": "string"}),
                ],
                "responses": {
                    "200": _response(
                        "BatchDetail when batchId was given, otherwise BatchList.",
                        {"oneOf": [batch_detail, batch_list]},
                    ),
                    "400": invalid,
                    "404": not_found,
                },
            }
        },
        "/batch/cancel": {
            "post": {
                "operationId": "cancelBatch",
                "summary": "Cancel a batch: stop its running labeling jobs",
                "description": "A batch that has already ended keeps its status and answers it.",
                "requestBody": {"required": True, "content": _json_content(cancel_request)},
                "responses": {
                    "200": _response("The batch's status now.", cancel_response),
                    "400": invalid,
                    "404": not_found,
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": (
                "Multi-level SageMaker Ground Truth labeling batches. API Gateway HTTP API (payload "
                "format 2.0) with AWS_IAM authorization: requests are signed with SigV4 for the "
                "execute-api service. Generated by `python -m services.common.schema --write`."
            ),
        },
        "servers": [{"url": LOCAL_SERVER, "description": "the local stack (smgt local start)"}],
        "security": [{"sigv4": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(c.schemas.items())),
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "AWS Signature Version 4 (service execute-api)",
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            },
        },
    }


# --- files ------------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    """The exact text of a generated file."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def generated_files() -> dict[str, str]:
    """File name (in docs/) -> content."""
    return {OPENAPI_FILE: render(openapi_document()), REQUEST_SCHEMA_FILE: render(request_json_schema())}


def stale_files(docs_dir: Path = DOCS_DIR) -> list[str]:
    """The generated files that are missing from docs_dir or differ from what the models give now."""
    out = []
    for name, text in generated_files().items():
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def write_files(docs_dir: Path = DOCS_DIR) -> list[Path]:
    docs_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated_files().items():
        path = docs_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.schema", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"write {OPENAPI_FILE} and {REQUEST_SCHEMA_FILE}")
    action.add_argument("--check", action="store_true", help="exit 1 if the files are missing or out of date")
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR, help="where the files live (default: docs/)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.write:
        for path in write_files(args.docs_dir):
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = stale_files(args.docs_dir)
        for name in stale:
            print(f"{args.docs_dir / name} is out of date: run python -m services.common.schema --write", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(render(openapi_document()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
