"""Batches as users see them: create (idempotent), show (the reference detail keys), list, cancel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common import bus, manifests, store
from services.common.events import BatchCreated, BatchFailed
from services.common.labeling import LabelingService, get_labeling_service
from services.common.observability import logger
from services.common.request import BatchRequest, parse_request
from services.common.settings import Settings
from services.common.statuses import BatchStatus, JobStatus, LevelStatus

Publish = Callable[..., None]

_LEVEL_KEYS = {1: "firstLevel", 2: "secondLevel", 3: "thirdLevel"}


class _View(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class JobView(_View):
    batch_id: str = Field(alias="batchId")
    batch_status: str = Field(alias="batchStatus")
    job_name: str = Field(alias="jobName")
    job_level: int = Field(alias="jobLevel")
    job_modality: str = Field(alias="jobModality")
    status: JobStatus
    labeling_job_name: str = Field(alias="labelingJobName")
    labeling_job_arn: str | None = Field(default=None, alias="labelingJobArn")
    sagemaker_status: str | None = Field(default=None, alias="sagemakerStatus")
    label_attribute_name: str = Field(alias="labelAttributeName")
    label_category_s3_uri: str | None = Field(default=None, alias="labelCategoryS3Uri")
    chain_from_job_name: str | None = Field(default=None, alias="chainFromJobName")
    job_input_s3_uri: str | None = Field(default=None, alias="jobInputS3Uri")
    job_input_s3_url: str | None = Field(default=None, alias="jobInputS3Url")
    job_output_s3_uri: str | None = Field(default=None, alias="jobOutputS3Uri")
    job_output_s3_url: str | None = Field(default=None, alias="jobOutputS3Url")
    num_frames: int | None = Field(default=None, alias="numFrames")
    num_frames_completed: int | None = Field(default=None, alias="numFramesCompleted")
    label_counters: dict[str, int] | None = Field(default=None, alias="labelCounters")
    failure_reason: str | None = Field(default=None, alias="failureReason")
    processing: dict[str, Any] | None = Field(
        default=None, description="what the between-level processors kept: linesIn, linesOut, flagsByCheck"
    )


class LevelView(_View):
    level: int
    status: str
    num_child_batches: int = Field(alias="numChildBatches")
    num_child_batches_complete: int = Field(alias="numChildBatchesComplete")
    num_child_batches_failed: int = Field(alias="numChildBatchesFailed")
    job_levels: list[JobView] = Field(alias="jobLevels")


class ExportView(_View):
    """The merged export: every chain's final annotations per sequence and frame, plus MOT text."""

    jsonl_s3_uri: str | None = Field(default=None, alias="jsonlS3Uri")
    jsonl_s3_url: str | None = Field(default=None, alias="jsonlS3Url")
    mot_s3_prefixes: dict[str, str] = Field(default_factory=dict, alias="motS3Prefixes")
    sequences: int = 0
    frames: int = 0
    error: str | None = None


class BatchDetail(_View):
    batch_id: str = Field(alias="batchId")
    status: BatchStatus
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    current_level: int = Field(alias="currentLevel")
    num_levels: int = Field(alias="numLevels")
    failure_policy: str = Field(alias="failurePolicy")
    failure_reason: str | None = Field(default=None, alias="failureReason")
    input_labeling_jobs: list[dict[str, Any]] = Field(alias="inputLabelingJobs")
    first_level: LevelView | None = Field(default=None, alias="firstLevel")
    second_level: LevelView | None = Field(default=None, alias="secondLevel")
    third_level: LevelView | None = Field(default=None, alias="thirdLevel")
    levels: list[LevelView]
    export: ExportView | None = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class BatchSummary(_View):
    batch_id: str = Field(alias="batchId")
    status: BatchStatus
    created_at: datetime = Field(alias="createdAt")
    current_level: int = Field(alias="currentLevel")
    num_levels: int = Field(alias="numLevels")


class BatchList(_View):
    batches: list[BatchSummary]
    next_token: str | None = Field(default=None, alias="nextToken")


class CreateOutcome(BaseModel):
    batch_id: str
    created: bool
    status: BatchStatus


def create_batch(body: object, settings: Settings, publish: Publish = bus.publish) -> CreateOutcome:
    """Validate everything, write in one transaction, announce the batch.

    A retried create (same id, same body) answers with the existing batch and announces it again
    only if no level has started yet, which covers a crash between the write and the event.
    """
    request: BatchRequest = parse_request(
        body, settings.allowed_buckets, (settings.workteam_for_level(1), settings.workteam_for_level(2))
    )
    batch, created = store.create_batch(request)
    if created or int(batch.current_level) == 0:
        publish(BatchCreated(batch_id=batch.batch_id, num_levels=int(batch.num_levels)))
    logger.info("batch accepted", extra={"batch_id": batch.batch_id, "newly_created": created})
    return CreateOutcome(batch_id=batch.batch_id, created=created, status=batch.status)


def show_batch(batch_id: str, settings: Settings, s3: Any = None) -> BatchDetail:
    state = store.load_batch_state(batch_id)
    return _detail(state, settings, s3)


def _level_status(level: store.LevelItem) -> str:
    if level.status is LevelStatus.ENDED:
        return "COMPLETE" if int(level.jobs_failed) == 0 else "COMPLETED_WITH_ERRORS"
    return level.status.value


def _detail(state: store.BatchState, settings: Settings, s3: Any) -> BatchDetail:
    batch = state.batch
    expiry = settings.presigned_url_expiry_seconds

    def url(uri: str | None) -> str | None:
        return manifests.presign(uri, expiry, s3) if uri else None

    levels = []
    for level in state.levels:
        jobs = sorted(state.jobs_of_level(int(level.level)), key=lambda j: j.job_name)
        views = [_job_view(batch, job, url) for job in jobs]
        levels.append(
            LevelView(
                level=int(level.level),
                status=_level_status(level),
                num_child_batches=int(level.jobs_total),
                num_child_batches_complete=int(level.jobs_ended),
                num_child_batches_failed=int(level.jobs_failed),
                job_levels=views,
            )
        )
    by_number = {lv.level: lv for lv in levels}
    export = None
    if batch.export is not None or batch.export_error:
        made = batch.export or {}
        export = ExportView(
            jsonl_s3_uri=made.get("jsonl_uri"),
            jsonl_s3_url=url(made.get("jsonl_uri")),
            mot_s3_prefixes=made.get("mot_uris", {}),
            sequences=made.get("sequences", 0),
            frames=made.get("frames", 0),
            error=batch.export_error,
        )
    return BatchDetail(
        batch_id=batch.batch_id,
        status=batch.status,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        current_level=int(batch.current_level),
        num_levels=int(batch.num_levels),
        failure_policy=batch.failure_policy,
        failure_reason=batch.failure_reason,
        input_labeling_jobs=list(batch.request.get("labelingJobs", [])),
        first_level=by_number.get(1),
        second_level=by_number.get(2),
        third_level=by_number.get(3),
        levels=levels,
        export=export,
    )


def _job_view(batch: store.BatchItem, job: store.JobItem, url: Callable[[str | None], str | None]) -> JobView:
    counters = job.counters.as_dict() if job.counters is not None else None
    frames = None
    done = None
    if counters is not None:
        done = int(counters.get("total_labeled", 0))
        frames = done + int(counters.get("unlabeled", 0)) + int(counters.get("failed_non_retryable_error", 0))
    return JobView(
        batch_id=batch.batch_id,
        batch_status=batch.batch_status,
        job_name=job.job_name,
        job_level=int(job.level),
        job_modality=job.modality,
        status=job.status,
        labeling_job_name=job.labeling_job_name,
        labeling_job_arn=job.labeling_job_arn,
        sagemaker_status=job.sagemaker_status,
        label_attribute_name=job.label_attribute_name,
        label_category_s3_uri=job.label_category_uri,
        chain_from_job_name=job.chain_from,
        job_input_s3_uri=job.input_manifest_uri,
        job_input_s3_url=url(job.input_manifest_uri),
        job_output_s3_uri=job.output_manifest_uri,
        job_output_s3_url=url(job.output_manifest_uri),
        num_frames=frames,
        num_frames_completed=done,
        label_counters={k: int(v) for k, v in counters.items()} if counters else None,
        failure_reason=job.failure_reason,
        processing=job.processing,
    )


def list_batches(status: BatchStatus, limit: int = 25, next_token: str | None = None) -> BatchList:
    page = store.list_batches(status, limit=limit, next_token=next_token)
    return BatchList(
        batches=[
            BatchSummary(
                batch_id=b.batch_id,
                status=b.status,
                created_at=b.created_at,
                current_level=int(b.current_level),
                num_levels=int(b.num_levels),
            )
            for b in page.batches
        ],
        next_token=page.next_token,
    )


def stop_inflight_jobs(state: store.BatchState, service: LabelingService) -> list[str]:
    """Ask the labeling service to stop every job of the batch that may still be running."""
    stopped = []
    for job in state.jobs:
        if job.status in (JobStatus.IN_PROGRESS, JobStatus.LAUNCHING) and job.labeling_job_arn:
            service.stop_job(job.labeling_job_name)
            stopped.append(job.job_name)
    return stopped


def end_batch_with_failure(
    batch_id: str,
    status: BatchStatus,
    reason: str,
    service: LabelingService | None = None,
    publish: Publish = bus.publish,
    ended_by: str = "request",
) -> bool:
    """Fail or cancel a batch once: stop what still runs and announce it.

    The caller that ended the batch announces it; a retry by the same cause (``ended_by``) after a
    crash announces it again until the notifier has sent the message.
    """
    won = store.end_batch(batch_id, status, reason, ended_by)
    state = store.load_batch_state(batch_id)
    retry_of_winner = state.batch.status is status and state.batch.ended_by == ended_by
    if not won and (not retry_of_winner or state.batch.notified_at is not None):
        return False
    stopped = stop_inflight_jobs(state, service or get_labeling_service())
    logger.info("batch ended", extra={"batch_id": batch_id, "status": status.value, "stopped": stopped})
    publish(BatchFailed(batch_id=state.batch.batch_id, status=status, reason=state.batch.failure_reason or reason))
    return won


def cancel_batch(batch_id: str, service: LabelingService | None = None, publish: Publish = bus.publish) -> BatchStatus:
    """Stop the batch's in-flight jobs and mark it CANCELLED; a batch that already ended stays as it is."""
    batch = store.get_batch(batch_id)
    if batch.status.is_terminal and batch.status is not BatchStatus.CANCELLED:
        return batch.status
    end_batch_with_failure(batch_id, BatchStatus.CANCELLED, "cancelled by request", service, publish, ended_by="cancel")
    return store.get_batch(batch_id).status
