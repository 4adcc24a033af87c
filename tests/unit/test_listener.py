"""The listener and its sweep: timeouts stop jobs and fail them once; lost events are recovered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.batch_api import api
from services.common import listener, store
from services.common.settings import get_settings
from services.common.statuses import JobStatus
from services.job_launcher import handler as launcher_handler
from tests.conftest import MockedStack, load_event


def _launch_level_one(lambda_context: Any) -> None:
    assert api.lambda_handler(load_event("batch_api_create.json"), lambda_context)["statusCode"] == 201
    launcher_handler.lambda_handler(load_event("job_launcher_level_started.json"), lambda_context)


def test_a_job_past_its_deadline_is_failed_with_timeout_then_stopped_once(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _launch_level_one(lambda_context)
    later = store.utcnow() + timedelta(seconds=get_settings().job_completion_timeout_seconds + 60)
    report = listener.sweep(later, labeling_service, get_settings())
    assert (report.checked, report.timed_out) == (2, 2)
    vehicle = store.get_job("reference-0001", "vehicle")
    assert (vehicle.status, vehicle.failure_reason, vehicle.inflight) == (JobStatus.FAILED, "timeout", None)
    assert sorted(labeling_service.stop_calls) == ["reference-0001-lane", "reference-0001-vehicle"]
    finished = stack.bus_events("Labeling Job Finished")
    assert sorted(e["detail"]["jobName"] for e in finished) == ["lane", "vehicle"]
    # the jobs left the sweep's list: a second sweep finds nothing to do
    assert listener.sweep(later, labeling_service, get_settings()).checked == 0


def test_a_job_whose_end_event_was_lost_is_recorded_by_the_sweep(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _launch_level_one(lambda_context)
    labeling_service.complete("reference-0001-lane")  # no state-change event is delivered
    report = listener.sweep(store.utcnow(), labeling_service, get_settings())
    assert report.reconciled == 1
    lane = store.get_job("reference-0001", "lane")
    assert lane.status is JobStatus.COMPLETED and lane.output_manifest_uri
    assert [e["detail"]["jobName"] for e in stack.bus_events("Labeling Job Finished")] == ["lane"]


def test_a_state_change_for_a_job_this_workflow_does_not_own_is_ignored(
    stack: MockedStack, labeling_service: Any
) -> None:
    from services.common.events import SageMakerJobStateChange
    from services.common.statuses import LabelingJobStatus

    change = SageMakerJobStateChange(
        labeling_job_arn="arn:aws:sagemaker:us-east-1:123456789012:labeling-job/someone-elses-job",
        status=LabelingJobStatus.COMPLETED,
    )
    assert listener.on_state_change(change, labeling_service) is False
    assert stack.bus_events() == []


def test_a_job_the_service_cannot_describe_does_not_stop_the_sweep(
    stack: MockedStack, reference_data: Any, labeling_service: Any, lambda_context: Any
) -> None:
    _launch_level_one(lambda_context)
    labeling_service.jobs.pop("reference-0001-vehicle")  # the service answers ResourceNotFound for it
    labeling_service.complete("reference-0001-lane")
    report = listener.sweep(store.utcnow(), labeling_service, get_settings())
    assert (report.checked, report.errors, report.reconciled) == (2, 1, 1)
    assert store.get_job("reference-0001", "lane").status is JobStatus.COMPLETED
    assert store.get_job("reference-0001", "vehicle").status is JobStatus.IN_PROGRESS
