"""The launcher inside the workflow: its handler on SQS (backoff) and a refusal followed by the batch's policy.

These use the per-test stack of tests/conftest.py (template routing on moto, the real handlers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.common import store
from services.common.events import LevelStarted
from services.common.settings import get_settings
from services.common.statuses import BatchStatus, JobStatus, LabelingJobStatus
from tests.conftest import REGION, MockedStack, load_event, put_sagemaker_state_change, sqs_event
from tests.unit.test_launcher import create_batch, foreign_job, job, sagemaker_error


@pytest.mark.parametrize("policy", ["FAIL_BATCH", "CONTINUE"])
def test_validation_exception_fails_the_job_with_sagemakers_message_and_the_batch_follows_its_policy(
    stack: MockedStack,
    reference_data: Any,
    labeling_service: Any,
    pump: Callable[..., int],
    lambda_context: Any,
    policy: str,
) -> None:
    from services.batch_api import api

    message = (
        "1 validation error detected: Value 'Video Frame' at 'humanTaskConfig.taskKeywords.1.member' "
        "failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9]+( [A-Za-z0-9]+)*"
    )
    labeling_service.create_errors.append(sagemaker_error("ValidationException", message))
    create = load_event("batch_api_create.json")
    body = json.loads(create["body"])
    body["failurePolicy"] = policy
    create["body"] = json.dumps(body)
    assert api.lambda_handler(create, lambda_context)["statusCode"] == 201
    pump()  # no batch item failure: a refusal is not retried

    refused_name = labeling_service.create_calls[0].removeprefix("reference-0001-")
    other_name = "lane" if refused_name == "vehicle" else "vehicle"
    refused = job("reference-0001", refused_name)
    assert refused.status is JobStatus.FAILED
    assert refused.failure_reason == f"ValidationException: {message}"
    batch = store.get_batch("reference-0001")
    if policy == "FAIL_BATCH":
        assert batch.status is BatchStatus.FAILED
        assert message in batch.failure_reason
        assert labeling_service.stop_calls == [f"reference-0001-{other_name}"]
    else:
        assert batch.status is BatchStatus.IN_PROGRESS
        assert labeling_service.stop_calls == []
        # The level goes on; the audit of the refused job is skipped, the other one runs
        done = labeling_service.complete(f"reference-0001-{other_name}")
        put_sagemaker_state_change(stack, done.arn, "Completed")
        pump()
        assert job("reference-0001", f"{refused_name}-audit").status is JobStatus.SKIPPED
        assert job("reference-0001", f"{other_name}-audit").status is JobStatus.IN_PROGRESS


def test_the_handler_postpones_a_deferred_message_with_backoff(
    stack: MockedStack, labeling_service: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.common import bus
    from services.job_launcher import handler
    from smgt.local.runner import sqs_record

    monkeypatch.setenv("MAX_CONCURRENT_LABELING_JOBS", "1")
    monkeypatch.setenv("LAUNCH_RETRY_BASE_SECONDS", "1")
    get_settings.cache_clear()
    labeling_service.jobs["other"] = foreign_job("other")
    create_batch("backoff-0001")
    bus.publish(LevelStarted(batch_id="backoff-0001", level=1))
    sqs = stack.client("sqs")
    url = stack.queue_urls["LauncherQueue"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=url, AttributeNames=["All"], MaxNumberOfMessages=1).get(
            "Messages", []
        )

    [message] = receive()
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    result = handler.lambda_handler({"Records": [sqs_record(message, arn, REGION)]}, lambda_context)
    # The record is reported failed, so SQS keeps it...
    assert result["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert labeling_service.create_calls == []
    assert {job("backoff-0001", n).status for n in ("vehicle", "lane")} == {JobStatus.PENDING}
    # ...and it comes back after the backoff (1 s), not after the queue's 360 s visibility timeout
    assert receive() == []
    time.sleep(1.2)
    [again] = receive()
    assert again["MessageId"] == message["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    # Once a slot frees, the next delivery launches the level and the message is done
    labeling_service.jobs["other"] = foreign_job("other", LabelingJobStatus.COMPLETED)
    monkeypatch.setenv("MAX_CONCURRENT_LABELING_JOBS", "2")
    get_settings.cache_clear()
    result = handler.lambda_handler({"Records": [sqs_record(again, arn, REGION)]}, lambda_context)
    assert result["batchItemFailures"] == []
    assert {job("backoff-0001", n).status for n in ("vehicle", "lane")} == {JobStatus.IN_PROGRESS}


def test_a_postpone_sqs_refuses_still_reports_the_record_failed(
    stack: MockedStack, labeling_service: Any, lambda_context: Any
) -> None:
    from services.job_launcher import handler

    create_batch("refused-0001")
    labeling_service.create_errors.extend([sagemaker_error("ThrottlingException")] * 2)
    envelope = {
        "source": "smgt.workflow",
        "detail-type": "Level Started",
        "detail": LevelStarted(batch_id="refused-0001", level=1).to_wire(),
    }
    event = sqs_event(envelope)  # a receipt handle SQS never issued: ChangeMessageVisibility fails
    result = handler.lambda_handler(event, lambda_context)
    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
