"""The local stack's plumbing against an embedded moto server: provisioning, the runner, the HTTP API.

Handlers are fakes (injected by logical id), so these tests check the emulation, not the services.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from smgt.local import endpoints
from smgt.local.http_api import HttpApiServer
from smgt.local.provision import ProvisionedStack, provision
from smgt.local.runner import Runner


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = endpoints.start_moto_server(port=0)
    host, port = server.get_host_and_port()
    yield endpoints.url_for(host, port)
    server.stop()


@pytest.fixture(scope="module")
def stack(moto_url: str) -> ProvisionedStack:
    return provision(moto_url)


def _client(stack: ProvisionedStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.endpoint_url,
        region_name=stack.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _depth(stack: ProvisionedStack, queue: str) -> dict[str, int]:
    attrs = _client(stack, "sqs").get_queue_attributes(
        QueueUrl=stack.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {k: int(v) for k, v in attrs.items()}


class Recorder:
    """A fake handler: records every event; fails the messages whose body contains a marker."""

    def __init__(self, fail_marker: str | None = None, raise_always: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.fail_marker = fail_marker
        self.raise_always = raise_always
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self.lock:
            self.events.append(event)
            self.contexts.append(context)
        if self.raise_always:
            raise RuntimeError("handler failure on purpose")
        failures = [
            {"itemIdentifier": r["messageId"]}
            for r in event.get("Records", [])
            if self.fail_marker and self.fail_marker in r["body"]
        ]
        return {"batchItemFailures": failures}

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for e in self.events for r in e.get("Records", [])]


# --------------------------------------------------------------------------- provisioning


def test_provision_creates_everything_from_the_template(stack: ProvisionedStack) -> None:
    assert {"EventBus", "BatchTable", "InputBucket", "ProcessingBucket", "StatusTopic"} <= set(stack.created)
    table = _client(stack, "dynamodb").describe_table(TableName=stack.ref("BatchTable"))["Table"]
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {
        "JobNameIndex",
        "StatusIndex",
        "InFlightIndex",
    }
    attrs = _client(stack, "sqs").get_queue_attributes(
        QueueUrl=stack.queue_url("IntakeQueue"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": stack.queue_arn("IntakeDLQ"),
        "maxReceiveCount": 5,
    }
    assert "input" in stack.ref("InputBucket") and "processing" in stack.ref("ProcessingBucket")
    env = stack.environments["JobLauncherFunction"]
    assert env["TABLE_NAME"] == stack.ref("BatchTable")
    assert env["EVENT_BUS_NAME"] == stack.ref("EventBus") == "smgt-bus"
    assert env["POWERTOOLS_SERVICE_NAME"] == "job_launcher"
    assert env["LABELING_JOB_ROLE_ARN"].startswith(f"arn:aws:iam::{stack.account_id}:role/")
    assert env["JOB_COMPLETION_TIMEOUT"] == "864000"


def test_second_provision_is_a_no_op(stack: ProvisionedStack) -> None:
    again = provision(stack.endpoint_url)
    assert again.created == []
    assert {lid: r.ref for lid, r in again.resources.items()} == {
        lid: r.ref for lid, r in stack.resources.items()
    }


# --------------------------------------------------------------------------- runner


def test_runner_delivers_a_bus_event_as_lambda_would(stack: ProvisionedStack) -> None:
    fake = Recorder()
    runner = Runner(
        stack,
        handlers={"LevelCoordinatorFunction": fake},
        functions=["LevelCoordinatorFunction"],
        schedule_interval=None,
    )
    with runner:
        assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
        assert os.environ["TABLE_NAME"] == stack.ref("BatchTable")
        _client(stack, "events").put_events(
            Entries=[
                {
                    "EventBusName": stack.ref("EventBus"),
                    "Source": "smgt.workflow",
                    "DetailType": "Batch Created",
                    "Detail": json.dumps({"version": "1", "batchId": "b-1"}),
                }
            ]
        )
        assert _wait(lambda: len(fake.records) == 1)
        assert runner.wait_idle(10)
    assert os.environ.get("AWS_ENDPOINT_URL") != stack.endpoint_url  # restored on stop
    record = fake.records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == stack.queue_arn("CoordinatorQueue")
    assert record["awsRegion"] == stack.region
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"messageId", "receiptHandle", "body", "messageAttributes", "md5OfBody"} <= set(record)
    body = json.loads(record["body"])
    assert body["detail-type"] == "Batch Created" and body["detail"]["batchId"] == "b-1"
    context = fake.contexts[0]
    assert context.function_name and context.memory_limit_in_mb == 512
    assert context.invoked_function_arn.startswith("arn:aws:lambda:")
    assert 0 < context.get_remaining_time_in_millis() <= 60_000 and context.aws_request_id
    assert runner.stats["LevelCoordinatorFunction"].deliveries == 1
    assert runner.stats["LevelCoordinatorFunction"].failures == 0


def test_sagemaker_state_change_on_default_bus_reaches_the_listener(stack: ProvisionedStack) -> None:
    fake = Recorder()
    with Runner(
        stack,
        handlers={"JobListenerFunction": fake},
        functions=["JobListenerFunction"],
        schedule_interval=None,
        set_environ=False,
    ) as runner:
        _client(stack, "events").put_events(
            Entries=[
                {
                    "Source": "aws.sagemaker",
                    "DetailType": "SageMaker Ground Truth Labeling Job State Change",
                    "Resources": [f"arn:aws:sagemaker:us-east-1:{stack.account_id}:labeling-job/job-1"],
                    "Detail": json.dumps({"LabelingJobStatus": "Completed"}),
                }
            ]
        )
        assert _wait(lambda: len(fake.records) == 1)
        assert runner.wait_idle(10)
    assert json.loads(fake.records[0]["body"])["source"] == "aws.sagemaker"


def test_partial_batch_failure_leaves_only_the_failed_message(stack: ProvisionedStack) -> None:
    sqs = _client(stack, "sqs")
    url = stack.queue_url("LauncherQueue")
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "1", "MessageBody": "ok-1"},
            {"Id": "2", "MessageBody": "fail-2"},
            {"Id": "3", "MessageBody": "ok-3"},
        ],
    )
    fake = Recorder(fail_marker="fail")
    with Runner(
        stack,
        handlers={"JobLauncherFunction": fake},
        functions=["JobLauncherFunction"],
        schedule_interval=None,
        set_environ=False,
    ) as runner:
        assert _wait(lambda: len(fake.records) == 3)
        assert _wait(lambda: runner.stats["JobLauncherFunction"].deleted == 2)
    # the failed message waits out the queue's visibility timeout, as with Lambda; the others are gone
    assert _depth(stack, "LauncherQueue") == {
        "ApproximateNumberOfMessages": 0,
        "ApproximateNumberOfMessagesNotVisible": 1,
    }
    assert runner.stats["JobLauncherFunction"].failed_messages == 1
    sqs.purge_queue(QueueUrl=url)


def test_message_failing_max_receive_count_times_ends_in_the_dlq(stack: ProvisionedStack) -> None:
    sqs = _client(stack, "sqs")
    sqs.send_message(QueueUrl=stack.queue_url("NotifierQueue"), MessageBody="poison")
    fake = Recorder(raise_always=True)
    with Runner(
        stack,
        handlers={"NotifierFunction": fake},
        functions=["NotifierFunction"],
        schedule_interval=None,
        set_environ=False,
        failure_visibility_timeout=0,
    ) as runner:
        assert _wait(lambda: _depth(stack, "NotifierDLQ")["ApproximateNumberOfMessages"] == 1, timeout=15)
        assert runner.wait_idle(10)
    assert len(fake.records) == 5  # maxReceiveCount deliveries, then the endpoint moved it
    assert [r["attributes"]["ApproximateReceiveCount"] for r in fake.records] == ["1", "2", "3", "4", "5"]
    assert runner.stats["NotifierFunction"].errors == 5
    dead = sqs.receive_message(QueueUrl=stack.queue_url("NotifierDLQ"))["Messages"]
    assert dead[0]["Body"] == "poison"
    sqs.purge_queue(QueueUrl=stack.queue_url("NotifierDLQ"))


def test_scheduled_function_gets_scheduled_events(stack: ProvisionedStack) -> None:
    fake = Recorder()
    with Runner(
        stack,
        handlers={"JobSweepFunction": fake},
        functions=["JobSweepFunction"],
        schedule_interval=0.1,
        set_environ=False,
    ):
        assert _wait(lambda: len(fake.events) >= 2, timeout=5)
    event = fake.events[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["account"] == stack.account_id and event["resources"][0].startswith("arn:aws:events:")


def test_missing_handler_module_fails_unless_skipped(stack: ProvisionedStack) -> None:
    def missing(spec: Any) -> Any:
        raise ModuleNotFoundError(spec.module)

    with pytest.raises(ImportError):
        Runner(stack, resolve_handler=missing, schedule_interval=None, set_environ=False).start()
    runner = Runner(
        stack, resolve_handler=missing, schedule_interval=None, set_environ=False, skip_missing=True
    )
    with runner:
        assert runner.handlers == {}


# --------------------------------------------------------------------------- HTTP API


def test_http_api_produces_payload_v2_events(stack: ProvisionedStack) -> None:
    seen: list[dict[str, Any]] = []

    def fake(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        return {
            "statusCode": 201,
            "headers": {"content-type": "application/json", "x-batch": "b-1"},
            "body": json.dumps({"batchId": "b-1"}),
            "isBase64Encoded": False,
            "cookies": ["a=b"],
        }

    with HttpApiServer(stack, handlers={"BatchApiFunction": fake}, port=0) as api:
        request = urllib.request.Request(
            f"{api.url}/batch/create?dry=1&tag=a&tag=b",
            data=json.dumps({"batchId": "b-1"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "X-Custom": "Yes"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 201
            assert resp.headers["x-batch"] == "b-1" and resp.headers["Set-Cookie"] == "a=b"
            assert json.loads(resp.read()) == {"batchId": "b-1"}
        for method, path in (("GET", "/nope"), ("GET", "/batch/create")):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(urllib.request.Request(f"{api.url}{path}", method=method), timeout=5)
            assert err.value.code == 404 and json.loads(err.value.read()) == {"message": "Not Found"}
    event = seen[0]
    assert event["version"] == "2.0" and event["routeKey"] == "POST /batch/create"
    assert event["rawPath"] == "/batch/create" and event["rawQueryString"] == "dry=1&tag=a&tag=b"
    assert event["queryStringParameters"] == {"dry": "1", "tag": "a,b"}
    assert event["headers"]["x-custom"] == "Yes" and event["headers"]["content-type"] == "application/json"
    assert json.loads(event["body"]) == {"batchId": "b-1"} and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/batch/create"
    assert ctx["http"]["sourceIp"] == "127.0.0.1" and "userAgent" in ctx["http"]
    assert ctx["stage"] == "$default" and ctx["routeKey"] == "POST /batch/create"
    assert ctx["accountId"] == stack.account_id and ctx["requestId"] and ctx["apiId"]
    assert ctx["domainName"] and ctx["time"] and isinstance(ctx["timeEpoch"], int)


def test_http_api_maps_handler_errors_to_500(stack: ProvisionedStack) -> None:
    def boom(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    with HttpApiServer(stack, handlers={"BatchApiFunction": boom}, port=0) as api:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{api.url}/batch/show?batchId=x", timeout=5)
        assert err.value.code == 500


def test_endpoint_detection(moto_url: str) -> None:
    port = moto_url.rsplit(":", 1)[1]
    assert not endpoints.detect_localstack(moto_url)
    assert endpoints.detect_moto(moto_url)
    found = endpoints.ensure_aws_endpoint(endpoints.HOST, int(port))
    assert found.kind == "moto-external" and not found.started_here


def test_a_foreign_server_on_the_aws_port_is_refused() -> None:
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    server = make_server(endpoints.HOST, 0, Response("not aws", status=404), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(endpoints.EndpointError, match=rf"{server.server_port}.*--port"):
            endpoints.ensure_aws_endpoint(endpoints.HOST, server.server_port)
    finally:
        server.shutdown()
        server.server_close()


def test_local_stack_starts_and_stops_everything_it_started() -> None:
    from smgt.local.stack import LocalStack

    fake = Recorder()
    local = LocalStack(
        port=0,
        api_port=0,
        gt_port=0,
        ground_truth=False,
        schedule_interval=None,
        resolve_handler=lambda spec: fake,
    )
    with local:
        assert local.endpoints.aws_kind == "moto"
        assert set(local.runner.handlers) == {  # type: ignore[union-attr]
            "BatchIntakeFunction",
            "LevelCoordinatorFunction",
            "JobLauncherFunction",
            "JobListenerFunction",
            "JobSweepFunction",
            "NotifierFunction",
        }
        with urllib.request.urlopen(f"{local.api_url}/batch/show", timeout=5) as resp:
            assert resp.status == 200  # the fake's return value, inferred as 2.0 does
        assert local.provisioned.outputs["ApiUrl"] == local.api_url  # type: ignore[union-attr]
        assert "POST /batch/create" in local.describe()
        aws_url = local.aws_endpoint_url
        assert local.wait_idle(5)
    assert not endpoints.port_open(endpoints.HOST, int(aws_url.rsplit(":", 1)[1]))
    assert local.runner is None and local.api is None
