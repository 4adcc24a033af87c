"""The HTTP API keeps its published contract (docs/openapi.json, docs/batch-request.schema.json).

The documents are generated from the pydantic models (services/common/schema.py); these tests keep
the checked-in copies current, check that they are valid, that the API accepts what the schema
describes and refuses what it refuses, that real responses match the documented bodies, and that
no body, query or mutation of the reference request makes the API answer 5xx.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.batch_api import api
from services.common import schema as contract
from services.common.modalities import Modality
from services.common.request import MAX_JOBS_PER_BATCH, NAME_PATTERN
from tests.conftest import MockedStack, load_event, reference_request

DOCS = contract.DOCS_DIR
OPENAPI_URI = "https://smgt-workflow.example/openapi.json"
ALLOWED = {200, 201, 400, 404, 409}


# --- helpers ----------------------------------------------------------------------------------


def http_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event like events/batch_api_create.json."""
    event = load_event("batch_api_create.json")
    route = f"{method} {path}"
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event.pop("body", None)
    event["isBase64Encoded"] = base64_body
    if body is not None:
        event["body"] = body
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def call(event: dict[str, Any], context: Any) -> tuple[int, Any]:
    response = api.lambda_handler(event, context)
    return response["statusCode"], json.loads(response["body"])


def create(body: Any, context: Any) -> tuple[int, Any]:
    return call(http_event("POST", "/batch/create", body=json.dumps(body)), context)


def request_validator() -> Draft202012Validator:
    return Draft202012Validator(contract.request_json_schema())


def documented(path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for the response body the OpenAPI document promises for (path, method, status)."""
    registry = Registry().with_resource(OPENAPI_URI, DRAFT202012.create_resource(contract.openapi_document()))
    pointer = "/".join(
        p.replace("~", "~0").replace("/", "~1")
        for p in ("paths", path, method, "responses", str(status), "content", "application/json", "schema")
    )
    return Draft202012Validator({"$ref": f"{OPENAPI_URI}#/{pointer}"}, registry=registry)


def assert_documented(path: str, method: str, status: int, body: Any) -> None:
    document = contract.openapi_document()
    assert str(status) in document["paths"][path][method]["responses"], f"{method} {path} -> {status} undocumented"
    errors = sorted(documented(path, method, status).iter_errors(body), key=str)
    assert not errors, f"{method} {path} -> {status}: {[e.message for e in errors]}\n{body}"


def assert_problem_body(body: Any) -> list[str]:
    assert set(body) == {"message", "errors"}
    assert body["errors"] and all(set(e) == {"field", "rule"} for e in body["errors"])
    assert all(isinstance(e["field"], str) and isinstance(e["rule"], str) for e in body["errors"])
    return [e["field"] for e in body["errors"]]


# --- the documents ----------------------------------------------------------------------------


def test_checked_in_documents_are_what_the_generator_produces_now() -> None:
    assert contract.stale_files() == [], "run: python -m services.common.schema --write"
    for name, text in contract.generated_files().items():
        assert json.loads((DOCS / name).read_text()) == json.loads(text)


def test_the_check_command_reports_a_stale_file(tmp_path: Any) -> None:
    assert contract.main(["--check", "--docs-dir", str(tmp_path)]) == 1
    assert contract.main(["--write", "--docs-dir", str(tmp_path)]) == 0
    assert contract.main(["--check", "--docs-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(contract.generated_files())


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = json.loads((DOCS / contract.OPENAPI_FILE).read_text())
    try:  # installed with moto[server]'s dependencies
        from openapi_spec_validator import OpenAPIV31SpecValidator, validate
    except ImportError:  # pragma: no cover - the structure, at least
        assert document["openapi"] == "3.1.0" and document["info"]["title"] and document["info"]["version"]
        for schema in document["components"]["schemas"].values():
            Draft202012Validator.check_schema(schema)
    else:
        validate(document, cls=OpenAPIV31SpecValidator)
    assert set(document["paths"]) == {"/batch/create", "/batch/show", "/batch/cancel"}
    assert document["servers"] == [{"url": "http://127.0.0.1:3000", "description": document["servers"][0]["description"]}]
    sigv4 = document["components"]["securitySchemes"]["sigv4"]
    assert sigv4["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert document["security"] == [{"sigv4": []}]


def test_the_routes_are_the_templates_routes() -> None:
    from smgt.local.template import Template

    routes = {
        (route.method.lower(), route.path)
        for spec in Template.load().functions().values()
        for route in spec.http_routes
    }
    document = contract.openapi_document()
    assert routes == {(method, path) for path, item in document["paths"].items() for method in item}


def test_request_schema_is_a_valid_json_schema_with_an_id_and_title() -> None:
    schema = json.loads((DOCS / contract.REQUEST_SCHEMA_FILE).read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == contract.SCHEMA_ID and schema["title"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"batchId", "labelingJobs"}


def test_the_create_request_body_is_the_request_schema() -> None:
    document = contract.openapi_document()
    body = document["paths"]["/batch/create"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/BatchRequest"}
    schema = contract.request_json_schema()
    components = document["components"]["schemas"]
    for name, definition in schema.pop("$defs").items():
        assert json.dumps(components[name]) == json.dumps(definition).replace("#/$defs/", "#/components/schemas/")
    top = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    assert json.dumps(components["BatchRequest"]) == json.dumps(top).replace("#/$defs/", "#/components/schemas/")


def test_the_schemas_patterns_compile_as_ecma_262_would_need() -> None:
    """No Python-only regex syntax in the published documents (named groups, \\d, \\Z)."""
    text = (DOCS / contract.OPENAPI_FILE).read_text() + (DOCS / contract.REQUEST_SCHEMA_FILE).read_text()
    for python_only in ("(?P<", "\\\\d", "\\\\Z", "\\\\A"):
        assert python_only not in text


# --- the schema and the API agree ------------------------------------------------------------


def test_the_reference_request_is_valid_and_the_api_accepts_it(stack: MockedStack, lambda_context: Any) -> None:
    body = reference_request("contract-0001")
    assert list(request_validator().iter_errors(body)) == []
    status, answer = create(body, lambda_context)
    assert status == 201, answer
    assert_documented("/batch/create", "post", 201, answer)


def _unknown_top_level(body: dict[str, Any]) -> None:
    body["priority"] = "high"


def _unknown_in_job(body: dict[str, Any]) -> None:
    body["labelingJobs"][1]["workTeam"] = "crowd"


def _unknown_in_input_config(body: dict[str, Any]) -> None:
    body["labelingJobs"][0]["inputConfig"]["manifest"] = "s3://x/y"


def _missing_job_name(body: dict[str, Any]) -> None:
    del body["labelingJobs"][2]["jobName"]


def _missing_labeling_jobs(body: dict[str, Any]) -> None:
    del body["labelingJobs"]


def _job_level_a_string(body: dict[str, Any]) -> None:
    body["labelingJobs"][0]["jobLevel"] = "one"


def _batch_id_a_number(body: dict[str, Any]) -> None:
    body["batchId"] = 17


def _labeling_jobs_an_object(body: dict[str, Any]) -> None:
    body["labelingJobs"] = {"jobName": "vehicle"}


def _max_tasks_out_of_range(body: dict[str, Any]) -> None:
    body["labelingJobs"][3]["maxConcurrentTaskCount"] = 0


def _bad_failure_policy(body: dict[str, Any]) -> None:
    body["failurePolicy"] = "RETRY"


def _bad_modality(body: dict[str, Any]) -> None:
    body["labelingJobs"][0]["jobModality"] = "ImageClassification"


def _bad_batch_id(body: dict[str, Any]) -> None:
    body["batchId"] = "-leading-hyphen"


def _job_level_far_too_high(body: dict[str, Any]) -> None:
    body["labelingJobs"][2]["jobLevel"] = 10**9


def _workteam_arn_unicode_digits(body: dict[str, Any]) -> None:
    body["labelingJobs"][0]["workteamArn"] = "arn:aws:sagemaker:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:workteam/private-crowd/x"


@pytest.mark.parametrize(
    ("mutate", "fields"),
    [
        (_unknown_top_level, ["priority"]),
        (_unknown_in_job, ["labelingJobs[1].workTeam"]),
        (_unknown_in_input_config, ["labelingJobs[0].inputConfig.manifest"]),
        (_missing_job_name, ["labelingJobs[2].jobName"]),
        (_missing_labeling_jobs, ["labelingJobs"]),
        (_job_level_a_string, ["labelingJobs[0].jobLevel"]),
        (_batch_id_a_number, ["batchId"]),
        (_labeling_jobs_an_object, ["labelingJobs"]),
        (_max_tasks_out_of_range, ["labelingJobs[3].maxConcurrentTaskCount"]),
        (_bad_failure_policy, ["failurePolicy"]),
        (_bad_modality, ["labelingJobs[0].jobModality"]),
        (_bad_batch_id, ["batchId"]),
        (_job_level_far_too_high, ["labelingJobs[2].jobLevel"]),
        (_workteam_arn_unicode_digits, ["labelingJobs[0].workteamArn"]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_what_the_schema_refuses_the_api_refuses_at_the_same_field(
    mutate: Any, fields: list[str], stack: MockedStack, lambda_context: Any
) -> None:
    body = reference_request("contract-0002")
    mutate(body)
    assert list(request_validator().iter_errors(body)), "the schema accepts it"
    started = time.monotonic()
    status, answer = create(body, lambda_context)
    assert time.monotonic() - started < 5
    assert status == 400, answer
    assert set(fields) <= set(assert_problem_body(answer))
    assert_documented("/batch/create", "post", 400, answer)


def test_names_with_a_trailing_newline_are_refused(stack: MockedStack, lambda_context: Any) -> None:
    """ECMA-262's $ (the schema's) ends the string; Python's re.match $ also matches before a final newline."""
    body = reference_request("contract-0006\n")
    body["labelingJobs"][0]["jobName"] = "vehicle\n"
    status, answer = create(body, lambda_context)
    assert status == 400, answer
    assert {"batchId", "labelingJobs[0].jobName"} <= set(assert_problem_body(answer))


def test_a_batch_over_the_job_limit_is_refused(stack: MockedStack, lambda_context: Any) -> None:
    body = reference_request("contract-0003")
    template = body["labelingJobs"][0]
    jobs = []
    for i in range(MAX_JOBS_PER_BATCH + 1):
        job = copy.deepcopy(template)
        job.update(jobName=f"j{i}", labelAttributeName=f"j{i}-ref")
        jobs.append(job)
    body["labelingJobs"] = jobs
    status, answer = create(body, lambda_context)
    assert status == 400, answer
    assert "labelingJobs" in assert_problem_body(answer)


def test_a_batch_larger_than_one_transaction_is_created_whole(stack: MockedStack, lambda_context: Any) -> None:
    """10 levels and 120 jobs are more than DynamoDB's 100 items per transaction: written in parts."""
    body = reference_request("contract-0005")
    template = body["labelingJobs"][0]
    jobs = []
    for i in range(120):
        job = copy.deepcopy(template)
        job.update(jobName=f"j{i}", jobLevel=min(i + 1, 10), labelAttributeName=f"j{i}-ref")
        jobs.append(job)
    body["labelingJobs"] = jobs
    status, answer = create(body, lambda_context)
    assert status == 201, answer
    assert answer["status"] == "IN_PROGRESS"
    from services.common import store

    state = store.load_batch_state("contract-0005")
    assert len(state.jobs) == 120 and len(state.levels) == 10
    assert sum(int(level.jobs_total) for level in state.levels) == 120
    again, replay = create(body, lambda_context)
    assert again == 200 and replay["created"] is False


def test_a_request_too_big_to_store_is_refused(stack: MockedStack, lambda_context: Any) -> None:
    body = reference_request("contract-0004")
    for job in body["labelingJobs"][:2]:
        job["inputConfig"]["inputManifestS3Uri"] += "/" + "k" * 1000
    for i in range(60):
        job = copy.deepcopy(body["labelingJobs"][i % 2])
        job.update(jobName=f"more{i}", labelAttributeName=f"more{i}-ref", taskDescription="é" * 255)
        job["inputConfig"]["inputManifestS3Uri"] = job["inputConfig"]["inputManifestS3Uri"].replace("manifests", "m")
        job["labelCategoryConfigS3Uri"] += "/" + "ü" * 1000
        body["labelingJobs"].append(job)
    status, answer = create(body, lambda_context)
    assert status == 400, answer
    assert "(body)" in assert_problem_body(answer)


# --- every response matches the document ----------------------------------------------------


def test_every_answer_is_the_documented_body(
    stack: MockedStack, labeling_service: Any, lambda_context: Any
) -> None:
    body = reference_request("contract-0005")
    status, answer = create(body, lambda_context)
    assert status == 201
    assert_documented("/batch/create", "post", 201, answer)
    status, answer = create(body, lambda_context)
    assert status == 200
    assert_documented("/batch/create", "post", 200, answer)
    other = copy.deepcopy(body)
    other["failurePolicy"] = "CONTINUE"
    status, answer = create(other, lambda_context)
    assert status == 409
    assert_documented("/batch/create", "post", 409, answer)

    for query, expected in [
        ({"batchId": "contract-0005"}, 200),
        ({}, 200),
        ({"status": "IN_PROGRESS", "limit": "1"}, 200),
        ({"batchId": "no-such-batch"}, 404),
        ({"limit": "²"}, 400),
        ({"nextToken": "not a token"}, 400),
        ({"sort": "asc"}, 400),
    ]:
        status, answer = call(http_event("GET", "/batch/show", query=query), lambda_context)
        assert status == expected, (query, answer)
        assert_documented("/batch/show", "get", status, answer)

    for cancel_body, expected in [
        ({"batchId": "contract-0005"}, 200),
        ({"batchId": "no-such-batch"}, 404),
        ({"batchId": "contract-0005", "force": True}, 400),
        (["contract-0005"], 400),
    ]:
        status, answer = call(http_event("POST", "/batch/cancel", body=json.dumps(cancel_body)), lambda_context)
        assert status == expected, (cancel_body, answer)
        assert_documented("/batch/cancel", "post", status, answer)


def test_listing_pages_with_the_tokens_it_issues(stack: MockedStack, lambda_context: Any) -> None:
    for i in range(3):
        assert create(reference_request(f"contract-page-{i}"), lambda_context)[0] == 201
    seen: list[str] = []
    token = None
    for _ in range(5):
        query = {"limit": "2"} | ({"nextToken": token} if token else {})
        status, page = call(http_event("GET", "/batch/show", query=query), lambda_context)
        assert status == 200, page
        seen += [b["batchId"] for b in page["batches"]]
        token = page["nextToken"]
        if not token:
            break
    assert sorted(seen) == [f"contract-page-{i}" for i in range(3)]


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"1").decode(),
        base64.urlsafe_b64encode(b'{"pk": 1}').decode(),
        base64.urlsafe_b64encode(b'{"pk": {"S": 1}}').decode(),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "²",
    ],
)
def test_a_forged_next_token_is_a_bad_request(token: str, stack: MockedStack, lambda_context: Any) -> None:
    status, answer = call(http_event("GET", "/batch/show", query={"nextToken": token}), lambda_context)
    assert status == 400, answer
    assert assert_problem_body(answer) == ["nextToken"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (http_event("POST", "/batch/create", body="[" * 100_000), "(body)"),
        (http_event("POST", "/batch/create", body=base64.b64encode(b"\xff{}").decode(), base64_body=True), "(body)"),
        (http_event("POST", "/batch/create", body="{"), "(body)"),
        (http_event("POST", "/batch/create"), "(body)"),
        (http_event("GET", "/batch/show", query={"batchId": "a" * 3000}), "batchId"),
        (http_event("GET", "/batch/show", query={"batchId": "x\ud800"}), "batchId"),
        (http_event("GET", "/batch/show", query={"batchId": ""}), "batchId"),
        (http_event("POST", "/batch/cancel", body=json.dumps({"batchId": "b" * 3000})), "batchId"),
        (http_event("POST", "/batch/cancel", body="{}"), "batchId"),
    ],
    ids=["deep-json", "not-utf8", "truncated", "no-body", "long-id", "surrogate-id", "empty-id", "cancel-long-id",
         "cancel-no-id"],
)
def test_malformed_input_is_a_bad_request(event: dict[str, Any], field: str, stack: MockedStack, lambda_context: Any) -> None:
    status, answer = call(event, lambda_context)
    assert status == 400, answer
    assert field in assert_problem_body(answer)


# --- fuzzing through the Lambda handler ------------------------------------------------------

FUZZ = settings(
    max_examples=int(os.environ.get("SMGT_FUZZ_EXAMPLES", "60")),  # SMGT_FUZZ_EXAMPLES=5000 for a deeper run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 20)
# keys the API knows, so mutations often reach the deeper checks instead of failing on the first field
known_keys = st.sampled_from(
    [
        "batchId", "labelingJobs", "failurePolicy", "destinationSnsArn", "jobName", "jobType", "jobModality",
        "jobLevel", "inputConfig", "inputManifestS3Uri", "chainFromJobName", "labelCategoryConfigS3Uri",
        "labelAttributeName", "workteamArn", "taskTimeLimitInSeconds", "taskAvailabilityLifetimeInSeconds",
        "maxConcurrentTaskCount", "taskTitle", "taskDescription", "taskKeywords",
    ]
)
interesting = st.sampled_from(
    [
        0, -1, 1, 2, 3, 4, 90, 91, 10**6, 2**63, -(2**63), 1.5, float("inf"), float("nan"), "", " ", "\n", "x\ud800",
        "0", "1", "vehicle", "lane", "VEHICLE", "vehicle-audit", "VideoObjectTracking", "VideoObjectTrackingAudit",
        "PointCloudObjectDetectionVerification", "s3://smgt-123456789012-us-east-1-input/k",
        "s3://other-bucket/k", "s3://smgt-123456789012-us-east-1-processing/x", "CONTINUE", "FAIL_BATCH",
        "arn:aws:sns:us-east-1:123456789012:topic", [], {}, [None], {"a": 1}, True, None,
    ]
)
values = interesting | json_values | names
edge_ints = st.integers(-2, 5) | st.sampled_from([29, 30, 90, 91, 5000, 5001, 604800, 10**9, 2**63]) | st.integers()
s3_uris = st.builds(
    "s3://{}/{}".format,
    st.sampled_from(["smgt-123456789012-us-east-1-input", "smgt-123456789012-us-east-1-processing", "other-bucket"]),
    st.text(min_size=1, max_size=40),
)
job_names = st.sampled_from(["vehicle", "lane", "vehicle-audit", "lane-audit", "Vehicle"]) | names
# per field, values near what the API accepts, so that mutated requests reach the whole-batch checks and the store
JOB_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "jobName": job_names | st.text(max_size=70),
    "jobModality": st.sampled_from([m.value for m in Modality]) | st.text(max_size=12),
    "jobLevel": edge_ints,
    "inputConfig": st.fixed_dictionaries(
        {}, optional={"inputManifestS3Uri": s3_uris, "chainFromJobName": job_names | st.text(max_size=5)}
    ),
    "labelCategoryConfigS3Uri": s3_uris | st.none(),
    "labelAttributeName": job_names.map(lambda n: f"{n}-ref") | job_names | st.text(max_size=130) | st.none(),
    "workteamArn": st.builds("arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/{}".format, names),
    "taskTimeLimitInSeconds": edge_ints,
    "taskAvailabilityLifetimeInSeconds": edge_ints,
    "maxConcurrentTaskCount": edge_ints,
    "taskTitle": st.text(max_size=130) | st.none(),
    "taskDescription": st.text(max_size=260) | st.none(),
    "taskKeywords": st.lists(st.text(max_size=31), max_size=6) | st.none(),
}
job_fields = st.sampled_from(sorted(JOB_FIELDS)).flatmap(lambda key: st.tuples(st.just(key), JOB_FIELDS[key]))


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*at, i))


@st.composite
def mutated_requests(draw: st.DrawFn) -> Any:
    body: Any = reference_request(draw(names))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(body))
        at = draw(st.sampled_from(paths))
        if not at:
            if draw(st.integers(0, 9)) == 0:
                body = draw(values)
            continue
        parent = body
        for step in at[:-1]:
            parent = parent[step]
        key = at[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "set-job-field", "set-job-field"]))
        if action == "set-job-field" and isinstance(body, dict) and isinstance(body.get("labelingJobs"), list):
            jobs = [job for job in body["labelingJobs"] if isinstance(job, dict)]
            if jobs:
                key, value = draw(job_fields)
                draw(st.sampled_from(jobs))[key] = value
        elif action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(known_keys | st.text(max_size=8))] = draw(values)
        elif action == "add" and isinstance(parent, list):
            parent.insert(key, draw(values))
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return body


STATUS_SEEN: dict[int, int] = {}


def _assert_answer(response: dict[str, Any]) -> None:
    STATUS_SEEN[response["statusCode"]] = STATUS_SEEN.get(response["statusCode"], 0) + 1
    assert response["statusCode"] in ALLOWED, response
    body = json.loads(response["body"])
    if response["statusCode"] == 400:
        assert_problem_body(body)


@FUZZ
@given(body=mutated_requests())
def test_fuzz_mutated_reference_requests_never_answer_5xx(body: Any, stack: MockedStack, lambda_context: Any) -> None:
    _assert_answer(api.lambda_handler(http_event("POST", "/batch/create", body=json.dumps(body)), lambda_context))


@FUZZ
@given(
    body=json_values | st.text(max_size=40) | st.binary(max_size=40),
    as_text=st.booleans(),
    path=st.sampled_from(["/batch/create", "/batch/cancel"]),
)
def test_fuzz_arbitrary_bodies_never_answer_5xx(
    body: Any, as_text: bool, path: str, stack: MockedStack, lambda_context: Any
) -> None:
    if isinstance(body, bytes):
        event = http_event("POST", path, body=base64.b64encode(body).decode(), base64_body=True)
    else:
        event = http_event("POST", path, body=body if as_text and isinstance(body, str) else json.dumps(body))
    _assert_answer(api.lambda_handler(event, lambda_context))


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


show_queries = st.fixed_dictionaries(
    {},
    optional={
        "batchId": names | st.text(max_size=70) | st.just("reference-0001"),
        "status": st.sampled_from(["IN_PROGRESS", "COMPLETE", "FAILED", "CANCELLED"]) | st.text(max_size=12),
        "limit": st.integers(-5, 150).map(str) | st.text("0123456789²³¹١٢٣٤٥٦٧٨٩٠ +-.e", max_size=4),
        "nextToken": st.text(max_size=30) | json_values.map(_token) | st.binary(max_size=20).map(
            lambda b: base64.urlsafe_b64encode(b).decode()
        ),
        "sort": st.text(max_size=5),
    },
)
cancel_bodies = st.fixed_dictionaries({}, optional={"batchId": names | values, "force": values}) | values


@FUZZ
@given(query=show_queries, cancel=cancel_bodies)
def test_fuzz_show_queries_and_cancel_bodies_never_answer_5xx(
    query: dict[str, str], cancel: Any, stack: MockedStack, labeling_service: Any, lambda_context: Any
) -> None:
    _assert_answer(api.lambda_handler(http_event("GET", "/batch/show", query=query), lambda_context))
    _assert_answer(api.lambda_handler(http_event("POST", "/batch/cancel", body=json.dumps(cancel)), lambda_context))


# --- schemathesis against the local stack's HTTP API -----------------------------------------


@pytest.mark.integration
def test_schemathesis_against_the_local_stack() -> None:
    """Positive and negative cases from docs/openapi.json over HTTP: no 5xx, documented statuses and bodies."""
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    from smgt.local.runner import import_handler
    from smgt.local.stack import LocalStack

    def only_the_api(spec: Any) -> Any:
        if spec.logical_id == "BatchApiFunction":
            return import_handler(spec)
        return lambda event, context: {"batchItemFailures": []}

    schema = schemathesis.openapi.from_dict(json.loads((DOCS / contract.OPENAPI_FILE).read_text()))
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    # The local stack checks no authorization (the deployed API does, with SigV4): send a placeholder
    # so negative cases vary the documented inputs, not the missing signature.
    signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/local (not checked by the local stack)"}
    strategy = schema.as_strategy(GenerationMode.POSITIVE, headers=signed) | schema.as_strategy(
        GenerationMode.NEGATIVE, headers=signed
    )
    local = LocalStack(
        port=0, api_port=0, gt_port=0, ground_truth=False, schedule_interval=None, resolve_handler=only_the_api
    )
    with local:
        base_url = local.api_url

        examples = int(os.environ.get("SMGT_SCHEMATHESIS_EXAMPLES", "100"))

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base_url, checks=checks, timeout=10)

        run()
