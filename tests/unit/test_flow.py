"""The reference batch end to end, in process: real handlers, template routing on moto, a fake labeling service."""

from __future__ import annotations

import json
from typing import Any

from services.batch_api import api
from services.common.labeling import BATCH_TAG
from services.common.manifests import read_json
from tests.conftest import (
    MockedStack,
    _drain,
    load_event,
    put_sagemaker_state_change,
    subscribe_queue,
)


def _finish_all(stack: MockedStack, fake: Any, names: list[str], pump: Any, fail: set[str] = frozenset()) -> None:
    for name in names:
        job = fake.fail(name) if name in fail else fake.complete(name)
        put_sagemaker_state_change(stack, job.arn, job.status.value)
    pump()


def test_reference_batch_runs_both_levels_and_notifies_once(
    stack: MockedStack, reference_data: Any, labeling_service: Any, pump: Any, lambda_context: Any
) -> None:
    # Given a subscriber on the status topic
    inbox = subscribe_queue(stack, stack.environment["STATUS_TOPIC_ARN"])
    # When the sample create request is posted
    response = api.lambda_handler(load_event("batch_api_create.json"), lambda_context)
    assert response["statusCode"] == 201, response["body"]
    pump()
    # Then level 1's two jobs run in parallel, with the batch id tag
    assert sorted(labeling_service.create_calls) == ["reference-0001-lane", "reference-0001-vehicle"]
    assert all(spec.tags[BATCH_TAG] == "reference-0001" for spec in labeling_service.specs.values())

    _finish_all(stack, labeling_service, ["reference-0001-vehicle", "reference-0001-lane"], pump)

    # Level 2 starts once, reading level 1's outputs, with auditLabelAttributeName injected
    assert sorted(labeling_service.create_calls) == [
        "reference-0001-lane",
        "reference-0001-lane-audit",
        "reference-0001-vehicle",
        "reference-0001-vehicle-audit",
    ]
    audit = labeling_service.specs["reference-0001-vehicle-audit"]
    parent = labeling_service.jobs["reference-0001-vehicle"]
    assert audit.input_manifest_uri == parent.output_manifest_uri
    category = read_json(audit.label_category_uri)
    assert category["auditLabelAttributeName"] == "vehicle-ref"
    assert category["annotationType"] == read_json(reference_data.vehicle_categories_uri)["annotationType"]

    _finish_all(stack, labeling_service, ["reference-0001-vehicle-audit", "reference-0001-lane-audit"], pump)

    # One SNS message in the reference shape carries the whole batch
    messages = _drain(stack.client("sqs"), inbox)
    assert len(messages) == 1
    message = messages[0]
    assert message["status"] == "SUCCESS" and message["batchId"] == "reference-0001"
    info = message["batchInfo"]
    assert info["status"] == "COMPLETE"
    assert [j["jobName"] for j in info["firstLevel"]["jobLevels"]] == ["lane", "vehicle"]
    assert all(j["status"] == "COMPLETED" for lv in info["levels"] for j in lv["jobLevels"])
    assert info["secondLevel"]["jobLevels"][0]["jobOutputS3Uri"].endswith("/manifests/output/output.manifest")
    assert info["thirdLevel"] is None
    assert len(info["inputLabelingJobs"]) == 4
    # the fake service wrote no output manifests: the export records why it failed, the batch stands
    assert info["export"]["jsonlS3Uri"] is None and "NoSuchKey" in info["export"]["error"]

    # And show answers the same detail
    shown = api.lambda_handler(load_event("batch_api_show.json"), lambda_context)
    assert json.loads(shown["body"])["status"] == "COMPLETE"


def test_failed_first_level_job_fails_the_batch_with_its_reason(
    stack: MockedStack, reference_data: Any, labeling_service: Any, pump: Any, lambda_context: Any
) -> None:
    inbox = subscribe_queue(stack, stack.environment["STATUS_TOPIC_ARN"])
    api.lambda_handler(load_event("batch_api_create.json"), lambda_context)
    pump()
    # When the vehicle job fails while the lane job still runs
    job = labeling_service.fail("reference-0001-vehicle", "ClientError: annotators could not load frames")
    put_sagemaker_state_change(stack, job.arn, "Failed")
    pump()
    # Then the lane job is stopped, no level 2 job starts, and the message carries the reason
    assert labeling_service.stop_calls == ["reference-0001-lane"]
    assert not any("audit" in name for name in labeling_service.create_calls)
    messages = _drain(stack.client("sqs"), inbox)
    assert len(messages) == 1
    assert messages[0]["status"] == "FAILED"
    assert "annotators could not load frames" in messages[0]["message"]
    assert messages[0]["batchInfo"]["failureReason"].startswith("labeling job vehicle ended FAILED")
    # And the stopped job's own end, arriving later, changes nothing
    stopped = labeling_service.jobs["reference-0001-lane"]
    put_sagemaker_state_change(stack, stopped.arn, "Stopped")
    pump()
    assert _drain(stack.client("sqs"), inbox) == []


def test_duplicated_state_change_events_change_nothing(
    stack: MockedStack, reference_data: Any, labeling_service: Any, pump: Any, lambda_context: Any
) -> None:
    api.lambda_handler(load_event("batch_api_create.json"), lambda_context)
    pump()
    vehicle = labeling_service.complete("reference-0001-vehicle")
    for _ in range(3):
        put_sagemaker_state_change(stack, vehicle.arn, "Completed")
    pump()
    lane = labeling_service.complete("reference-0001-lane")
    put_sagemaker_state_change(stack, lane.arn, "Completed")
    put_sagemaker_state_change(stack, vehicle.arn, "Completed")
    pump()
    # Level 2 was started once and each audit job created once
    assert labeling_service.create_calls.count("reference-0001-vehicle-audit") == 1
    assert len(stack.bus_events("Level Started")) == 2
    shown = json.loads(api.lambda_handler(load_event("batch_api_show.json"), lambda_context)["body"])
    assert shown["firstLevel"]["numChildBatchesComplete"] == 2
