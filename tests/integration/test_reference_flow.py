"""Whole flows on the local stack: real handlers, emulated AWS APIs, the simulated Ground Truth."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from services.common.notifications import without_presigned_urls
from smgt.client import ApiError
from smgt.local.demo import reference_request, subscribe, wait_for_message
from smgt.local.synthetic import upload_reference_dataset
from tests.conftest import LocalStackSession

pytestmark = pytest.mark.integration


def _start_reference_batch(session: LocalStackSession, prefix: str) -> tuple[str, str]:
    """Upload a dataset, subscribe to the status topic, create the reference batch; return (batch id, inbox)."""
    env = session.environment
    dataset = upload_reference_dataset(session.aws("s3"), env["INPUT_BUCKET"], prefix=prefix, frames=4)
    inbox = subscribe({"sqs": session.aws("sqs"), "sns": session.aws("sns")}, env["STATUS_TOPIC_ARN"])
    batch_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    request = reference_request(batch_id, dataset, session.stack.provisioned.account_id, session.stack.region)
    answer = session.client.create(request)
    assert answer == {"batchId": batch_id, "status": "IN_PROGRESS", "created": True}
    return batch_id, inbox


def _jobs(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["jobName"]: job for level in detail["levels"] for job in level["jobLevels"]}


def _exists(session: LocalStackSession, uri: str) -> bool:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        session.aws("s3").head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - a missing object is the answer
        return False
    return True


def _read_manifest(session: LocalStackSession, uri: str) -> list[dict[str, Any]]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = session.aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_reference_batch_completes_with_four_jobs_and_one_notification(local_stack: LocalStackSession) -> None:
    batch_id, inbox = _start_reference_batch(local_stack, "ref")
    detail = local_stack.client.watch(batch_id, interval=0.5, timeout=120)

    assert detail["status"] == "COMPLETE"
    jobs = _jobs(detail)
    assert sorted(jobs) == ["lane", "lane-audit", "vehicle", "vehicle-audit"]
    assert {job["status"] for job in jobs.values()} == {"COMPLETED"}
    # level 2 reads level 1's real output manifest, and the audit output carries both label sets
    for audit, parent in (("vehicle-audit", "vehicle"), ("lane-audit", "lane")):
        assert jobs[audit]["jobInputS3Uri"] == jobs[parent]["jobOutputS3Uri"]
        lines = _read_manifest(local_stack, jobs[audit]["jobOutputS3Uri"])
        assert lines and all(f"{parent}-ref" in line and f"{audit}-ref-metadata" in line for line in lines)
        assert all("adjustment-status" in line[f"{audit}-ref-metadata"] for line in lines)

    # the merged export holds every frame of the sequence once, with both chains' final labels
    export = detail["export"]
    assert export["error"] is None and export["sequences"] == 1 and export["frames"] == 4
    records = _read_manifest(local_stack, export["jsonlS3Uri"])
    assert [r["frameNo"] for r in records] == sorted(r["frameNo"] for r in records)
    assert all(
        r["jobs"]["vehicle"]["fromJob"] == "vehicle-audit" and r["jobs"]["lane"]["fromJob"] == "lane-audit"
        for r in records
    )
    assert set(export["motS3Prefixes"]) == {"vehicle"}

    message = wait_for_message(local_stack.aws("sqs"), inbox, timeout=20)
    assert message is not None
    assert message["status"] == "SUCCESS" and message["batchId"] == batch_id
    assert message["batchInfo"]["export"]["jsonlS3Uri"] == export["jsonlS3Uri"]
    outputs = [job["jobOutputS3Uri"] for level in message["batchInfo"]["levels"] for job in level["jobLevels"]]
    assert len(outputs) == 4 and all(_exists(local_stack, uri) for uri in outputs)
    assert wait_for_message(local_stack.aws("sqs"), inbox, timeout=2) is None


def test_failing_level_one_job_fails_the_batch_with_the_reason(local_stack: LocalStackSession) -> None:
    local_stack.ground_truth.set_behaviour("fail-*-vehicle", "fail", failure_reason="ClientError: frames unreadable")
    local_stack.ground_truth.set_behaviour("fail-*-lane", "slow", delay_seconds=20)
    batch_id, inbox = _start_reference_batch(local_stack, "fail")
    detail = local_stack.client.watch(batch_id, interval=0.5, timeout=120)

    assert detail["status"] == "FAILED"
    assert "frames unreadable" in detail["failureReason"]
    jobs = _jobs(detail)
    assert jobs["vehicle"]["status"] == "FAILED"
    assert jobs["vehicle-audit"]["status"] == "PENDING" and jobs["lane-audit"]["status"] == "PENDING"
    message = wait_for_message(local_stack.aws("sqs"), inbox, timeout=20)
    assert message is not None and message["status"] == "FAILED"
    assert "frames unreadable" in message["message"]
    # the lane job still running was stopped
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _jobs(local_stack.client.show(batch_id))["lane"]["status"] != "STOPPED":
        time.sleep(0.5)
    assert _jobs(local_stack.client.show(batch_id))["lane"]["status"] == "STOPPED"


def test_duplicated_state_change_event_changes_nothing(local_stack: LocalStackSession) -> None:
    batch_id, inbox = _start_reference_batch(local_stack, "dup")
    before = local_stack.client.watch(batch_id, interval=0.5, timeout=120)
    assert before["status"] == "COMPLETE"
    assert wait_for_message(local_stack.aws("sqs"), inbox, timeout=20) is not None

    # SageMaker (at least once) sends the level 1 and level 2 completions again
    for job in ("vehicle", "lane-audit"):
        local_stack.ground_truth._put_event(local_stack.ground_truth._find(f"{batch_id}-{job}").last_event)
    assert local_stack.stack.wait_idle(30)
    time.sleep(1)
    after = local_stack.client.show(batch_id)
    assert without_presigned_urls(after) == without_presigned_urls(before)
    assert wait_for_message(local_stack.aws("sqs"), inbox, timeout=3) is None


def test_invalid_request_is_refused_over_http_with_field_paths(local_stack: LocalStackSession) -> None:
    with pytest.raises(ApiError) as caught:
        local_stack.client.create({"batchId": "bad id", "labelingJobs": [{"jobName": "x"}], "extra": 1})
    assert caught.value.status == 400
    fields = {error["field"] for error in caught.value.body["errors"]}
    assert {"batchId", "extra", "labelingJobs[0].jobModality", "labelingJobs[0].inputConfig"} <= fields


def test_unknown_batch_answers_404(local_stack: LocalStackSession) -> None:
    with pytest.raises(ApiError) as caught:
        local_stack.client.show("no-such-batch")
    assert caught.value.status == 404


def test_batch_requested_event_with_errors_becomes_batch_rejected(local_stack: LocalStackSession) -> None:
    env = local_stack.environment
    sqs, events = local_stack.aws("sqs"), local_stack.aws("events")
    url = sqs.create_queue(QueueName=f"rejected-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"rejected-{uuid.uuid4().hex[:6]}"
    events.put_rule(Name=rule, EventBusName=env["EVENT_BUS_NAME"], EventPattern=json.dumps({"detail-type": ["Batch Rejected"]}))
    events.put_targets(Rule=rule, EventBusName=env["EVENT_BUS_NAME"], Targets=[{"Id": "q", "Arn": arn}])
    events.put_events(
        Entries=[
            {
                "Source": "smgt.workflow",
                "DetailType": "Batch Requested",
                "EventBusName": env["EVENT_BUS_NAME"],
                "Detail": json.dumps({"batchId": "intake-bad", "labelingJobs": []}),
            }
        ]
    )
    message = wait_for_message(sqs, url, timeout=20)
    assert message is not None
    assert message["detail"]["batchId"] == "intake-bad"
    assert message["detail"]["errors"][0]["field"] == "labelingJobs"
