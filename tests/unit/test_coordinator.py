"""Level barriers: each job counted once, each level ended once, the next level started once."""

from __future__ import annotations

from typing import Any

import pytest

from services.common import batches, coordinator, store
from services.common.events import BatchCreated, LabelingJobFinished
from services.common.settings import get_settings
from services.common.statuses import BatchStatus, JobStatus, LevelStatus
from tests.conftest import MockedStack, reference_request


def _finished(job: str, level: int, status: JobStatus = JobStatus.COMPLETED, batch_id: str = "reference-0001") -> LabelingJobFinished:
    return LabelingJobFinished(batch_id=batch_id, job_name=job, level=level, status=status)


@pytest.fixture
def batch(stack: MockedStack) -> str:
    batches.create_batch(reference_request(), get_settings())
    coordinator.on_batch_created(BatchCreated(batch_id="reference-0001", num_levels=2))
    return "reference-0001"


def test_duplicate_finished_events_count_the_job_once(batch: str, stack: MockedStack) -> None:
    for _ in range(4):
        coordinator.on_job_finished(_finished("vehicle", 1))
    level = store.get_level(batch, 1)
    assert int(level.jobs_ended) == 1 and level.status is LevelStatus.IN_PROGRESS
    assert [e["detail"]["level"] for e in stack.bus_events("Level Started")] == [1]


def test_last_job_of_a_level_starts_the_next_level_exactly_once(batch: str, stack: MockedStack) -> None:
    coordinator.on_job_finished(_finished("vehicle", 1))
    coordinator.on_job_finished(_finished("lane", 1))
    coordinator.on_job_finished(_finished("lane", 1))
    coordinator.on_job_finished(_finished("vehicle", 1))
    assert [e["detail"]["level"] for e in stack.bus_events("Level Started")] == [1, 2]
    assert store.get_level(batch, 1).status is LevelStatus.ENDED
    assert store.get_level(batch, 2).status is LevelStatus.IN_PROGRESS
    assert int(store.get_batch(batch).current_level) == 2


def test_last_level_ending_completes_the_batch_once(batch: str, stack: MockedStack) -> None:
    for job, level in [("vehicle", 1), ("lane", 1), ("vehicle-audit", 2), ("lane-audit", 2), ("lane-audit", 2)]:
        coordinator.on_job_finished(_finished(job, level))
    assert store.get_batch(batch).status is BatchStatus.COMPLETE
    completed = stack.bus_events("Batch Completed")
    assert len(completed) == 1 and completed[0]["detail"]["status"] == "COMPLETE"


def test_a_failed_job_fails_the_batch_and_stops_the_others(batch: str, stack: MockedStack, labeling_service: Any) -> None:
    store.get_job(batch, "lane").update(
        actions=[store.JobItem.job_status.set(JobStatus.IN_PROGRESS.value), store.JobItem.labeling_job_arn.set("arn:x")]
    )
    labeling_service.jobs["reference-0001-lane"] = labeling_service.jobs.get("reference-0001-lane") or _running("reference-0001-lane")
    coordinator.on_job_finished(
        LabelingJobFinished(batch_id=batch, job_name="vehicle", level=1, status=JobStatus.FAILED, failure_reason="boom")
    )
    batch_item = store.get_batch(batch)
    assert batch_item.status is BatchStatus.FAILED
    assert batch_item.failure_reason == "labeling job vehicle ended FAILED: boom"
    assert labeling_service.stop_calls == ["reference-0001-lane"]
    assert len(stack.bus_events("Batch Failed")) == 1
    # the stopped job's end later changes nothing
    coordinator.on_job_finished(_finished("lane", 1, JobStatus.STOPPED))
    assert len(stack.bus_events("Batch Failed")) == 1
    assert [e["detail"]["level"] for e in stack.bus_events("Level Started")] == [1]


def _running(name: str) -> Any:
    from services.common.labeling import LabelingJobDescription
    from services.common.statuses import LabelingJobStatus

    return LabelingJobDescription(name=name, arn=f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}", status=LabelingJobStatus.IN_PROGRESS)


def test_continue_policy_skips_children_of_failed_jobs_and_completes_with_errors(
    stack: MockedStack, reference_data: Any, labeling_service: Any, pump: Any
) -> None:
    body = reference_request("continue-0001")
    body["failurePolicy"] = "CONTINUE"
    batches.create_batch(body, get_settings())
    pump()
    job = labeling_service.fail("continue-0001-vehicle")
    from tests.conftest import put_sagemaker_state_change

    put_sagemaker_state_change(stack, job.arn, "Failed")
    lane = labeling_service.complete("continue-0001-lane")
    put_sagemaker_state_change(stack, lane.arn, "Completed")
    pump()
    assert store.get_job("continue-0001", "vehicle-audit").status is JobStatus.SKIPPED
    assert "continue-0001-vehicle-audit" not in labeling_service.create_calls
    audit = labeling_service.complete("continue-0001-lane-audit")
    put_sagemaker_state_change(stack, audit.arn, "Completed")
    pump()
    assert store.get_batch("continue-0001").status is BatchStatus.COMPLETED_WITH_ERRORS
