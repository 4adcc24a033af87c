"""Every function processes its sample event from events/ (the files `sam local invoke -e` takes)."""

from __future__ import annotations

import json
from typing import Any

from services.batch_api import api, intake
from services.common import store
from services.common.statuses import BatchStatus
from services.job_launcher import handler as launcher_handler
from services.job_listener import handler as listener_handler
from services.job_listener import sweep as sweep_handler
from services.level_coordinator import handler as coordinator_handler
from services.notifier import handler as notifier_handler
from tests.conftest import MockedStack, load_event


def _create_reference_batch(lambda_context: Any) -> None:
    response = api.lambda_handler(load_event("batch_api_create.json"), lambda_context)
    assert response["statusCode"] == 201, response["body"]


def test_api_create_sample_creates_the_batch_and_announces_it(stack: MockedStack, lambda_context: Any) -> None:
    response = api.lambda_handler(load_event("batch_api_create.json"), lambda_context)
    assert response["statusCode"] == 201
    assert json.loads(response["body"]) == {"batchId": "reference-0001", "status": "IN_PROGRESS", "created": True}
    assert [e["detail"]["batchId"] for e in stack.bus_events("Batch Created")] == ["reference-0001"]


def test_api_show_sample_answers_the_reference_detail_keys(stack: MockedStack, lambda_context: Any) -> None:
    _create_reference_batch(lambda_context)
    response = api.lambda_handler(load_event("batch_api_show.json"), lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert {"batchId", "status", "inputLabelingJobs", "firstLevel", "secondLevel", "thirdLevel", "levels"} <= set(body)
    assert body["firstLevel"]["numChildBatches"] == 2


def test_api_cancel_sample_cancels_the_batch(stack: MockedStack, labeling_service: Any, lambda_context: Any) -> None:
    _create_reference_batch(lambda_context)
    response = api.lambda_handler(load_event("batch_api_cancel.json"), lambda_context)
    assert json.loads(response["body"]) == {"batchId": "reference-0001", "status": "CANCELLED"}
    assert stack.bus_events("Batch Failed")[0]["detail"]["status"] == "CANCELLED"


def test_intake_sample_creates_the_requested_batch(stack: MockedStack, lambda_context: Any) -> None:
    result = intake.lambda_handler(load_event("batch_intake_requested.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    assert store.get_batch("reference-0002").batch_id == "reference-0002"


def test_coordinator_batch_created_sample_starts_level_one(stack: MockedStack, lambda_context: Any) -> None:
    _create_reference_batch(lambda_context)
    result = coordinator_handler.lambda_handler(load_event("level_coordinator_batch_created.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    assert [e["detail"]["level"] for e in stack.bus_events("Level Started")] == [1]


def test_launcher_level_started_sample_launches_level_one(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _create_reference_batch(lambda_context)
    result = launcher_handler.lambda_handler(load_event("job_launcher_level_started.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    assert sorted(labeling_service.create_calls) == ["reference-0001-lane", "reference-0001-vehicle"]


def test_listener_state_change_sample_records_the_end_and_announces_it(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _create_reference_batch(lambda_context)
    launcher_handler.lambda_handler(load_event("job_launcher_level_started.json"), lambda_context)
    labeling_service.complete("reference-0001-vehicle")
    result = listener_handler.lambda_handler(load_event("job_listener_state_change.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    job = store.get_job("reference-0001", "vehicle")
    assert job.status.value == "COMPLETED"
    assert job.output_manifest_uri.endswith("reference-0001-vehicle/manifests/output/output.manifest")
    assert stack.bus_events("Labeling Job Finished")[0]["detail"]["jobName"] == "vehicle"


def test_coordinator_job_finished_sample_counts_the_job(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _create_reference_batch(lambda_context)
    coordinator_handler.lambda_handler(load_event("level_coordinator_batch_created.json"), lambda_context)
    result = coordinator_handler.lambda_handler(load_event("level_coordinator_job_finished.json"), lambda_context)
    assert result == {"batchItemFailures": []}
    assert int(store.get_level("reference-0001", 1).jobs_ended) == 1


def test_sweep_scheduled_sample_checks_inflight_jobs(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _create_reference_batch(lambda_context)
    launcher_handler.lambda_handler(load_event("job_launcher_level_started.json"), lambda_context)
    report = sweep_handler.lambda_handler(load_event("job_sweep_scheduled.json"), lambda_context)
    assert report["checked"] == 2


def test_notifier_batch_completed_sample_publishes_once(stack: MockedStack, lambda_context: Any) -> None:
    _create_reference_batch(lambda_context)
    store.end_batch("reference-0001", BatchStatus.COMPLETE)
    event = load_event("notifier_batch_completed.json")
    assert notifier_handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert store.get_batch("reference-0001").notified_at is not None
