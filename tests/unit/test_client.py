"""The API client (smgt/client.py) against a tiny local HTTP server, and the rich rendering (smgt/progress.py)."""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from rich.console import Console
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from services.common.batches import BatchDetail, BatchList, BatchSummary, JobView, LevelView
from smgt.client import (
    ApiConnectionError,
    ApiError,
    SmgtClient,
    WatchTimeout,
    is_loopback_url,
    region_from_host,
)
from smgt.progress import ChangePrinter, render_batch, render_list, watch_live

BATCH_ID = "reference-0001"
NOW = "2026-11-25T12:00:00Z"


def _job(name: str, level: int, modality: str, status: str, sm: str | None, **extra: Any) -> JobView:
    return JobView(
        batch_id=BATCH_ID,
        batch_status="IN_PROGRESS",
        job_name=name,
        job_level=level,
        job_modality=modality,
        status=status,
        labeling_job_name=f"{BATCH_ID}-{name}",
        sagemaker_status=sm,
        label_attribute_name=f"{name}-ref",
        **extra,
    )


def detail(status: str = "IN_PROGRESS", second: str = "IN_PROGRESS") -> dict[str, Any]:
    """A GET /batch/show?batchId= answer built from the API's own models (wire shape)."""
    first = LevelView(
        level=1,
        status="COMPLETE",
        num_child_batches=2,
        num_child_batches_complete=2,
        num_child_batches_failed=0,
        job_levels=[
            _job(
                "lane",
                1,
                "VideoObjectTracking",
                "COMPLETED",
                "Completed",
                num_frames=10,
                num_frames_completed=10,
            ),
            _job(
                "vehicle",
                1,
                "VideoObjectTracking",
                "COMPLETED",
                "Completed",
                num_frames=10,
                num_frames_completed=10,
            ),
        ],
    )
    audit = LevelView(
        level=2,
        status="IN_PROGRESS" if second == "IN_PROGRESS" else "COMPLETED_WITH_ERRORS",
        num_child_batches=1,
        num_child_batches_complete=0 if second == "IN_PROGRESS" else 1,
        num_child_batches_failed=0 if second != "FAILED" else 1,
        job_levels=[
            _job(
                "vehicle-audit",
                2,
                "VideoObjectTrackingAudit",
                second,
                {"IN_PROGRESS": "InProgress", "FAILED": "Failed"}.get(second, "Completed"),
                num_frames=10,
                num_frames_completed=3,
                failure_reason="workers gave up" if second == "FAILED" else None,
            )
        ],
    )
    return BatchDetail(
        batch_id=BATCH_ID,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        current_level=2,
        num_levels=3,
        failure_policy="CONTINUE",
        failure_reason="a job failed" if status == "FAILED" else None,
        input_labeling_jobs=[
            {"jobName": "lane", "jobLevel": 1, "jobModality": "VideoObjectTracking"},
            {"jobName": "vehicle", "jobLevel": 1, "jobModality": "VideoObjectTracking"},
            {"jobName": "vehicle-audit", "jobLevel": 2, "jobModality": "VideoObjectTrackingAudit"},
            {"jobName": "final-check", "jobLevel": 3, "jobModality": "ImageClassification"},
        ],
        first_level=first,
        second_level=audit,
        levels=[first, audit],
    ).to_wire()


def page() -> dict[str, Any]:
    return BatchList(
        batches=[
            BatchSummary(
                batch_id=BATCH_ID, status="IN_PROGRESS", created_at=NOW, current_level=1, num_levels=2
            )
        ],
        next_token="tok-123",
    ).model_dump(mode="json", by_alias=True)


# ---- a tiny API server ----------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    # (method, path) -> callable(Recorded) -> (status, json body); default answers below
    answers: dict[tuple[str, str], Callable[[Recorded], tuple[int, Any]]] = field(default_factory=dict)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi(url="")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data()
        rec = Recorded(
            method=request.method,
            path=request.path,
            query={
                k: v
                for k, v in urllib.parse.parse_qs(
                    request.query_string.decode(), keep_blank_values=True
                ).items()
            },
            headers={k.lower(): v for k, v in request.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        fake.requests.append(rec)
        answer = fake.answers.get((rec.method, rec.path))
        if answer is None:
            status, body = 404, {"message": "Not Found"}
        else:
            status, body = answer(rec)
        if isinstance(body, Response):  # a raw answer, not JSON
            return body(environ, start_response)
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    fake.answers.update(
        {
            ("POST", "/batch/create"): lambda r: (
                201,
                {"batchId": r.body["batchId"], "status": "IN_PROGRESS", "created": True},
            ),
            ("GET", "/batch/show"): lambda r: (200, detail() if "batchId" in r.query else page()),
            ("POST", "/batch/cancel"): lambda r: (200, {"batchId": r.body["batchId"], "status": "CANCELLED"}),
        }
    )
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("SMGT_API_URL", raising=False)


def client_for(api: FakeApi, **kwargs: Any) -> SmgtClient:
    client = SmgtClient(api.url, timeout=5, **kwargs)
    client._sleep = lambda _s: None  # watch without waiting
    return client


# ---- paths, bodies, query strings -----------------------------------------------------------


def test_default_url_comes_from_env_then_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SmgtClient().api_url == "http://127.0.0.1:3000"
    monkeypatch.setenv("SMGT_API_URL", "https://abc.execute-api.eu-west-1.amazonaws.com/")
    client = SmgtClient()
    assert client.api_url == "https://abc.execute-api.eu-west-1.amazonaws.com"
    assert client.signed


def test_create_posts_the_body(api: FakeApi) -> None:
    body = {"batchId": BATCH_ID, "labelingJobs": [{"jobName": "vehicle"}]}
    answer = client_for(api).create(body)
    assert answer == {"batchId": BATCH_ID, "status": "IN_PROGRESS", "created": True}
    (rec,) = api.requests
    assert (rec.method, rec.path, rec.body) == ("POST", "/batch/create", body)
    assert rec.headers["content-type"] == "application/json"
    assert "authorization" not in rec.headers  # loopback: unsigned


def test_show_passes_the_batch_id(api: FakeApi) -> None:
    answer = client_for(api).show("batch with spaces/&")
    assert answer["batchId"] == BATCH_ID and answer["levels"][0]["jobLevels"][0]["jobName"] == "lane"
    (rec,) = api.requests
    assert (rec.method, rec.path) == ("GET", "/batch/show")
    assert rec.query == {"batchId": ["batch with spaces/&"]}
    assert rec.body is None


def test_list_sends_only_given_parameters(api: FakeApi) -> None:
    client = client_for(api)
    assert client.list() == page()
    assert client.list(status="COMPLETE", limit=5, next_token="tok 1") == page()
    first, second = api.requests
    assert first.query == {}
    assert second.query == {"status": ["COMPLETE"], "limit": ["5"], "nextToken": ["tok 1"]}


def test_cancel_posts_the_batch_id(api: FakeApi) -> None:
    assert client_for(api).cancel(BATCH_ID) == {"batchId": BATCH_ID, "status": "CANCELLED"}
    (rec,) = api.requests
    assert (rec.method, rec.path, rec.body) == ("POST", "/batch/cancel", {"batchId": BATCH_ID})


def test_api_url_with_a_stage_path_is_kept(api: FakeApi) -> None:
    api.answers[("GET", "/prod/batch/show")] = lambda r: (200, detail())
    SmgtClient(api.url + "/prod/", timeout=5).show(BATCH_ID)
    assert api.requests[0].path == "/prod/batch/show"


# ---- errors -----------------------------------------------------------------------------------


def test_bad_request_lists_the_errors(api: FakeApi) -> None:
    problems = [
        {"field": "labelingJobs[0].jobModality", "rule": "unknown modality"},
        {"field": "batchId", "rule": "required"},
    ]
    api.answers[("POST", "/batch/create")] = lambda r: (
        400,
        {"message": "the request is invalid", "errors": problems},
    )
    with pytest.raises(ApiError) as caught:
        client_for(api).create({"labelingJobs": []})
    error = caught.value
    assert error.status == 400
    assert error.body == {"message": "the request is invalid", "errors": problems}
    assert error.errors == problems
    text = str(error)
    assert "the request is invalid" in text
    assert "labelingJobs[0].jobModality: unknown modality" in text
    assert "batchId: required" in text


def test_not_found(api: FakeApi) -> None:
    api.answers[("GET", "/batch/show")] = lambda r: (
        404,
        {"message": "batch 'nope' does not exist", "batchId": "nope"},
    )
    with pytest.raises(ApiError) as caught:
        client_for(api).show("nope")
    assert caught.value.status == 404
    assert caught.value.body["batchId"] == "nope"
    assert "does not exist" in str(caught.value) and "404" in str(caught.value)


def test_non_json_error_body_is_kept_as_text(api: FakeApi) -> None:
    api.answers[("GET", "/batch/show")] = lambda r: (502, Response("upstream broke", status=502))
    with pytest.raises(ApiError) as caught:
        client_for(api).show(BATCH_ID)
    assert caught.value.status == 502
    assert caught.value.body == "upstream broke"
    assert "upstream broke" in str(caught.value)


def test_connection_refused_says_what_to_do() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SmgtClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ApiConnectionError) as caught:
        client.show(BATCH_ID)
    message = str(caught.value)
    assert f"no API answers at http://127.0.0.1:{port}" in message
    assert "smgt local start" in message and "SMGT_API_URL" in message and "--api" in message
    assert isinstance(caught.value, ApiError) and caught.value.status is None


# ---- signing ----------------------------------------------------------------------------------


def test_loopback_detection_and_region_from_host() -> None:
    assert is_loopback_url("http://127.0.0.1:3000")
    assert is_loopback_url("http://localhost:3000/")
    assert is_loopback_url("http://[::1]:3000")
    assert not is_loopback_url("https://abcdef1234.execute-api.us-east-1.amazonaws.com")
    assert (
        region_from_host("https://abcdef1234.execute-api.eu-central-1.amazonaws.com/prod") == "eu-central-1"
    )
    assert region_from_host("https://api.example.com") is None


def test_deployed_url_is_signed_with_sigv4() -> None:
    client = SmgtClient("https://abcdef1234.execute-api.eu-west-1.amazonaws.com")
    request = client.prepare_request("GET", "/batch/show", query={"batchId": BATCH_ID})
    auth = request.headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 ")
    assert "Credential=testing/" in auth
    assert "/eu-west-1/execute-api/aws4_request" in auth  # region from the host
    assert request.headers["X-Amz-Security-Token"] == "testing"
    assert "X-Amz-Date" in request.headers
    assert (
        request.url == f"https://abcdef1234.execute-api.eu-west-1.amazonaws.com/batch/show?batchId={BATCH_ID}"
    )


def test_signed_post_covers_the_body_and_explicit_region() -> None:
    client = SmgtClient("https://api.example.com/v1", region="ap-southeast-2")
    request = client.prepare_request("POST", "/batch/cancel", body={"batchId": BATCH_ID})
    auth = request.headers["Authorization"]
    assert "/ap-southeast-2/execute-api/aws4_request" in auth
    assert "content-type" in auth.split("SignedHeaders=")[1]
    assert json.loads(request.data) == {"batchId": BATCH_ID}


def test_custom_domain_falls_back_to_env_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    request = SmgtClient("https://api.example.com").prepare_request("GET", "/batch/show")
    assert "/us-west-2/execute-api/aws4_request" in request.headers["Authorization"]


def test_loopback_request_is_not_signed() -> None:
    request = SmgtClient("http://127.0.0.1:3000").prepare_request("GET", "/batch/show", {"batchId": BATCH_ID})
    assert "Authorization" not in request.headers


# ---- watch ------------------------------------------------------------------------------------


def test_watch_stops_at_a_terminal_status(api: FakeApi) -> None:
    answers = iter([detail(), detail(), detail("COMPLETED_WITH_ERRORS", "FAILED"), detail("COMPLETE")])
    api.answers[("GET", "/batch/show")] = lambda r: (200, next(answers))
    seen: list[str] = []
    final = client_for(api).watch(BATCH_ID, interval=0.01, on_update=lambda d: seen.append(d["status"]))
    assert final["status"] == "COMPLETED_WITH_ERRORS"
    assert seen == ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED_WITH_ERRORS"]
    assert len(api.requests) == 3


def test_watch_retries_transient_errors(api: FakeApi) -> None:
    answers = iter([(503, {"message": "Service Unavailable"}), (200, detail("CANCELLED"))])
    api.answers[("GET", "/batch/show")] = lambda r: next(answers)
    assert client_for(api).watch(BATCH_ID, interval=0.01)["status"] == "CANCELLED"


def test_watch_times_out_with_the_last_detail(api: FakeApi) -> None:
    client = SmgtClient(api.url, timeout=5)
    with pytest.raises(WatchTimeout) as caught:
        client.watch(BATCH_ID, interval=0.01, timeout=0.1)
    assert caught.value.detail is not None and caught.value.detail["status"] == "IN_PROGRESS"


# ---- rendering --------------------------------------------------------------------------------


def _text(renderable: Any) -> str:
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_render_batch_shows_levels_jobs_and_statuses() -> None:
    text = _text(render_batch(detail("FAILED", "FAILED")))
    assert BATCH_ID in text and "FAILED" in text and "level 2/3" in text
    for name in ("lane", "vehicle", "vehicle-audit", "final-check"):
        assert name in text
    assert "VideoObjectTrackingAudit" in text
    assert "COMPLETED" in text and "Completed" in text and "Failed" in text
    assert "10/10" in text and "3/10" in text
    assert "workers gave up" in text and "a job failed" in text
    assert "Level 3" in text and "not started" in text  # a level the coordinator has not reached


def test_render_batch_colours_statuses() -> None:
    console = Console(
        record=True, width=120, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    console.print(render_batch(detail("FAILED", "FAILED")))
    html = console.export_html(inline_styles=True)
    assert "FAILED" in html and "color: #" in html


def test_render_list() -> None:
    text = _text(render_list(page()))
    assert BATCH_ID in text and "IN_PROGRESS" in text and "1/2" in text and "tok-123" in text
    assert "no batches" in _text(render_list({"batches": []}))


def test_change_printer_prints_only_changes() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    printer = ChangePrinter(console)
    first = printer.lines(detail())
    assert str(first[0]).startswith(f"{BATCH_ID}: IN_PROGRESS")
    assert len(first) == 4  # the batch, then its three jobs
    assert printer.lines(detail()) == []
    last = [str(line) for line in printer.lines(detail("COMPLETED_WITH_ERRORS", "FAILED"))]
    assert len(last) == 2
    assert "vehicle-audit: FAILED" in last[0] and "workers gave up" in last[0]
    assert last[1].startswith(f"{BATCH_ID}: COMPLETED_WITH_ERRORS")


def test_watch_live_without_a_terminal_prints_lines(api: FakeApi) -> None:
    answers = iter([detail(), detail(), detail("COMPLETE", "COMPLETED")])
    api.answers[("GET", "/batch/show")] = lambda r: (200, next(answers))
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=False)
    final = watch_live(client_for(api), BATCH_ID, 0.01, console)
    assert final["status"] == "COMPLETE"
    text = console.export_text()
    assert text.count(f"{BATCH_ID}: IN_PROGRESS") == 1
    assert f"{BATCH_ID}: COMPLETE" in text
    assert "Level 1" in text  # the final tables once


def test_watch_live_on_a_terminal_uses_a_live_view(api: FakeApi) -> None:
    answers = iter([detail(), detail("CANCELLED")])
    api.answers[("GET", "/batch/show")] = lambda r: (200, next(answers))
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    final = watch_live(client_for(api), BATCH_ID, 0.01, console)
    assert final["status"] == "CANCELLED"
    text = console.export_text()
    assert "CANCELLED" in text and "vehicle-audit" in text
