"""Recording what the labeling service says about our jobs: from its state-change events and from the sweep.

The event only says that something changed; ``DescribeLabelingJob`` says what (output manifest,
counters, failure reason), so the recorded state always comes from the description.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.common import bus, store
from services.common.batches import Publish
from services.common.errors import JobNotFound, LabelingServiceError
from services.common.events import LabelingJobFinished, SageMakerJobStateChange
from services.common.labeling import LabelingJobDescription, LabelingService
from services.common.observability import logger
from services.common.settings import Settings
from services.common.statuses import JobStatus

TIMEOUT_REASON = "timeout"


def on_state_change(change: SageMakerJobStateChange, service: LabelingService, publish: Publish = bus.publish) -> bool:
    """Returns False for a job this workflow did not start (logged, nothing to do)."""
    try:
        job = store.find_job_by_labeling_job_name(change.labeling_job_name)
    except JobNotFound:
        logger.warning("state change for a job this workflow does not own", extra={"arn": change.labeling_job_arn})
        return False
    if not change.status.is_terminal and not job.status.is_terminal:
        store.record_observed(job, change.status.value)
        return True
    reconcile(job, service.describe_job(job.labeling_job_name), publish)
    return True


def reconcile(job: store.JobItem, description: LabelingJobDescription, publish: Publish = bus.publish) -> None:
    """Record a terminal description once, and announce it until the coordinator has counted it."""
    if not description.status.is_terminal:
        store.record_observed(job, description.status.value)
        return
    store.record_job_end(
        job,
        description.status.to_job_status(),
        sagemaker_status=description.status.value,
        output_manifest_uri=description.output_manifest_uri,
        counters=description.counters.model_dump(),
        failure_reason=description.failure_reason,
        labeling_job_arn=description.arn,
    )
    job.refresh(consistent_read=True)
    if not job.counted:
        publish(finished_event(job))


def finished_event(job: store.JobItem) -> LabelingJobFinished:
    return LabelingJobFinished(
        batch_id=job.batch_id,
        job_name=job.job_name,
        level=int(job.level),
        status=job.status,
        output_manifest_s3_uri=job.output_manifest_uri,
        failure_reason=job.failure_reason,
    )


class SweepReport(BaseModel):
    checked: int = 0
    timed_out: int = 0
    reconciled: int = 0
    errors: int = 0


def sweep(now: datetime, service: LabelingService, settings: Settings, publish: Publish = bus.publish) -> SweepReport:
    """Stop jobs past their deadline; re-describe jobs not heard of for a while (lost events)."""
    report = SweepReport()
    epoch = int(now.timestamp())
    for job in store.inflight_jobs():
        report.checked += 1
        try:
            _sweep_job(job, epoch, service, settings, publish, report)
        except LabelingServiceError as error:
            # One job the service cannot answer for (throttled, unknown) must not stop the others.
            report.errors += 1
            logger.warning(
                "sweep could not check a job; next sweep tries again",
                extra={"job": job.labeling_job_name, "code": error.code, "reason": error.message},
            )
    logger.info("sweep done", extra=report.model_dump())
    return report


def _sweep_job(
    job: store.JobItem, epoch: int, service: LabelingService, settings: Settings, publish: Publish, report: SweepReport
) -> None:
    """Time one job out, or re-describe it when it has not been checked for a while."""
    if job.status.is_terminal or (job.deadline is not None and int(job.deadline) <= epoch):
        # Record the timeout before stopping, so the Stopped event that follows cannot be
        # recorded first and hide the reason; the job leaves the list once the stop is sent.
        if store.record_job_end(job, JobStatus.FAILED, failure_reason=TIMEOUT_REASON, keep_inflight=True):
            report.timed_out += 1
        service.stop_job(job.labeling_job_name)
        store.clear_inflight(job)
        job.refresh(consistent_read=True)
        if not job.counted:
            publish(finished_event(job))
        return
    last = int(job.last_checked_at or 0)
    if epoch - last >= settings.sweep_recheck_seconds:
        before = job.status
        reconcile(job, service.describe_job(job.labeling_job_name), publish)
        if job.status is not before:
            report.reconciled += 1
