"""Fixtures shared by every test tier: mocked AWS from template.yaml, sample events, a fake labeling service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT / "events"
ACCOUNT = "123456789012"
REGION = "us-east-1"
INPUT_BUCKET = f"smgt-{ACCOUNT}-{REGION}-input"
PROCESSING_BUCKET = f"smgt-{ACCOUNT}-{REGION}-processing"


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, the same file `sam local invoke -e` takes."""
    return json.loads((EVENTS_DIR / name).read_text())


def _reset_process_caches() -> None:
    from services.common import labeling, store
    from services.common.clients import reset_clients
    from services.common.settings import get_settings

    get_settings.cache_clear()
    reset_clients()
    labeling.use_labeling_service(None)
    store.reset_connections()


@pytest.fixture(autouse=True)
def aws_credentials(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test ever reaches a real AWS account: fake credentials, no endpoint overrides.

    Integration tests are left alone: the local stack's runner owns the process environment then.
    """
    if request.node.get_closest_marker("integration"):
        yield
        return
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "smgt-workflow-tests",
        "POWERTOOLS_SERVICE_NAME": "smgt-tests",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    _reset_process_caches()
    yield
    _reset_process_caches()


@dataclass
class MockedStack:
    """The template's resources on moto, plus a queue that sees every event on the workflow bus."""

    environment: dict[str, str]
    queue_urls: dict[str, str]
    tap_queue_url: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def drain(self, queue: str) -> list[dict[str, Any]]:
        """Receive and delete every message now on one of the template's queues (by logical id)."""
        return _drain(self.client("sqs"), self.queue_urls[queue])

    def bus_events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event put on the workflow bus so far (optionally of one detail-type)."""
        self.seen.extend(_drain(self.client("sqs"), self.tap_queue_url))
        return [e for e in self.seen if detail_type is None or e["detail-type"] == detail_type]


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out = []
    while True:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = response.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockedStack]:
    """template.yaml provisioned on moto's in-process mock; the functions' environment applied."""
    from moto import mock_aws

    from smgt.local.provision import provision

    with mock_aws():
        provisioned = provision(None)  # type: ignore[arg-type]
        env = provisioned.shared_environment
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        _reset_process_caches()
        from services.common.runtime import prepare

        prepare()
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        tap = sqs.create_queue(QueueName=f"tap-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="tap", EventBusName=env["EVENT_BUS_NAME"], EventPattern=json.dumps({"source": ["smgt.workflow"]}))
        events.put_targets(Rule="tap", EventBusName=env["EVENT_BUS_NAME"], Targets=[{"Id": "tap", "Arn": tap_arn}])
        queue_urls = {lid: r.ref for lid, r in provisioned.of_type("AWS::SQS::Queue").items()}
        yield MockedStack(environment=env, queue_urls=queue_urls, tap_queue_url=tap)


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    """A moto server on a free loopback port, for code that talks to AWS over HTTP (the simulated
    Ground Truth, botocore clients with an endpoint URL)."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:  # module scope: runs before the autouse credentials fixture
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.setenv(key, "testing")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An S3 client on moto's in-process mock, with the test module's ``BUCKET`` created."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=request.module.BUCKET)
        yield client


@pytest.fixture
def labeling_service() -> Iterator[Any]:
    """A fake labeling service installed as the process's backend."""
    from services.common import labeling
    from tests.fakes import FakeLabelingService

    fake = FakeLabelingService()
    labeling.use_labeling_service(fake)
    yield fake
    labeling.use_labeling_service(None)


class FakeLambdaContext:
    function_name = "smgt-test-function"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:smgt-test-function"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/smgt-test-function"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def sqs_event(*bodies: dict[str, Any] | str, queue: str = "queue") -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it, one record per body."""
    records = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": "1700000000000",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


@pytest.fixture
def sqs_event_factory() -> Callable[..., dict[str, Any]]:
    return sqs_event


QUEUE_HANDLERS = {
    "IntakeQueue": "services.batch_api.intake",
    "CoordinatorQueue": "services.level_coordinator.handler",
    "LauncherQueue": "services.job_launcher.handler",
    "ListenerQueue": "services.job_listener.handler",
    "NotifierQueue": "services.notifier.handler",
}


@pytest.fixture
def pump(stack: MockedStack, lambda_context: FakeLambdaContext) -> Callable[..., int]:
    """Deliver what the template's rules routed to each queue to that queue's handler, until all are quiet.

    Returns how many messages were delivered; fails the test on any reported batch item failure.
    """
    import importlib

    def run(max_rounds: int = 50) -> int:
        delivered = 0
        for _ in range(max_rounds):
            moved = 0
            for queue, module in QUEUE_HANDLERS.items():
                bodies = stack.drain(queue)
                if not bodies:
                    continue
                handler = importlib.import_module(module).lambda_handler
                result = handler(sqs_event(*bodies, queue=queue), lambda_context)
                assert result["batchItemFailures"] == [], f"{queue}: {result}"
                moved += len(bodies)
            delivered += moved
            if moved == 0:
                return delivered
        raise AssertionError("messages kept flowing after max_rounds")

    return run


def reference_request(batch_id: str = "reference-0001") -> dict[str, Any]:
    """The reference example (events/batch_api_create.json's body) under another batch id."""
    body = json.loads(load_event("batch_api_create.json")["body"])
    body["batchId"] = batch_id
    return body


@pytest.fixture
def reference_data(stack: MockedStack) -> Any:
    """The synthetic reference dataset in the input bucket, where the sample events point."""
    from smgt.local.synthetic import upload_reference_dataset

    return upload_reference_dataset(stack.client("s3"), stack.environment["INPUT_BUCKET"], prefix="reference", frames=3)


def put_sagemaker_state_change(stack: MockedStack, arn: str, status: str) -> None:
    """What SageMaker puts on the default bus when a labeling job changes state."""
    stack.client("events").put_events(
        Entries=[
            {
                "Source": "aws.sagemaker",
                "DetailType": "SageMaker Ground Truth Labeling Job State Change",
                "Resources": [arn],
                "Detail": json.dumps({"LabelingJobStatus": status}),
            }
        ]
    )


def subscribe_queue(stack: MockedStack, topic_arn: str) -> str:
    """An SQS queue subscribed (raw delivery) to a topic, to read what was published."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"sub-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


# --- the local stack (integration tests) -----------------------------------------------------


@dataclass
class LocalStackSession:
    """A running local stack plus clients a test needs to act as a user and as SageMaker."""

    stack: Any
    client: Any

    def aws(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.stack.aws_endpoint_url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @property
    def environment(self) -> dict[str, str]:
        return self.stack.provisioned.shared_environment

    @property
    def ground_truth(self) -> Any:
        return self.stack.ground_truth


def _port_or_free(port: int) -> int:
    from smgt.local import endpoints

    return 0 if endpoints.port_open(endpoints.HOST, port) else port


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStackSession]:
    """The embedded stack on 127.0.0.1:4566 (or LocalStack found there), API on :3000, Ground Truth on :4580.

    A port already taken by something that is not an AWS endpoint falls back to a free one.
    """
    from smgt.client import SmgtClient
    from smgt.local import endpoints
    from smgt.local.stack import LocalStack

    aws_port = endpoints.AWS_PORT
    # Reuse LocalStack on :4566; anything else there (another process's embedded stack, with its
    # own runner and simulated Ground Truth consuming the same queues) would share our messages.
    if endpoints.port_open(endpoints.HOST, aws_port) and not endpoints.detect_localstack(
        f"http://{endpoints.HOST}:{aws_port}"
    ):
        aws_port = 0
    # An embedded moto server keeps its state in this process's moto backends, shared by every
    # server started here: each module starts from an empty account, as a fresh stack would.
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    stack = LocalStack(
        port=aws_port,
        api_port=_port_or_free(endpoints.API_PORT),
        gt_port=_port_or_free(endpoints.GROUND_TRUTH_PORT),
        ground_truth_options={"work_seconds": 0.5},
        schedule_interval=2.0,
        failure_visibility_timeout=1,
        parameters={"LoggingLevel": "WARNING"},
    )
    with stack:
        yield LocalStackSession(stack=stack, client=SmgtClient(stack.api_url))
