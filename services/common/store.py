"""The one DynamoDB table: batch, level and job items, and every conditional operation on them.

Every state change here is a conditional write, so that duplicated, late, reordered or
concurrent messages change nothing twice: a job is counted once, a level ends once, a batch ends
once. Other modules never touch pynamodb; they get typed items and domain errors.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from services.common.errors import BatchConflict, BatchNotFound, JobNotFound
from services.common.request import BatchRequest
from services.common.statuses import BatchStatus, FailurePolicy, JobStatus, LevelStatus

INFLIGHT = "1"
"""Value of the sparse ``inflight`` key: present only while a job may still change on SageMaker."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _batch_pk(batch_id: str) -> str:
    # Lower-cased: SageMaker job names (batchId-jobName) are unique case-insensitively.
    return f"BATCH#{batch_id.lower()}"


def _level_sk(level: int) -> str:
    return f"LEVEL#{level:03d}"


def _job_sk(job_name: str) -> str:
    return f"JOB#{job_name.lower()}"


class _Item(Model):
    class Meta:
        table_name = "unbound"
        region = "us-east-1"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class StatusIndex(GlobalSecondaryIndex["BatchItem"]):
    class Meta:
        index_name = "StatusIndex"
        projection = AllProjection()

    batch_status = UnicodeAttribute(hash_key=True)
    created_at = UTCDateTimeAttribute(range_key=True)


class BatchItem(_Item):
    batch_id = UnicodeAttribute()
    batch_status = UnicodeAttribute()
    request = JSONAttribute()
    fingerprint = UnicodeAttribute()
    failure_policy = UnicodeAttribute(default=FailurePolicy.FAIL_BATCH.value)
    num_levels = NumberAttribute()
    current_level = NumberAttribute(default=0)
    failure_reason = UnicodeAttribute(null=True)
    ended_by = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    ended_at = UTCDateTimeAttribute(null=True)
    notified_at = UTCDateTimeAttribute(null=True)
    notify_lease_until = NumberAttribute(null=True)
    notify_claimant = UnicodeAttribute(null=True)
    export = JSONAttribute(null=True)
    export_error = UnicodeAttribute(null=True)
    status_index = StatusIndex()

    @property
    def status(self) -> BatchStatus:
        return BatchStatus(self.batch_status)

    @property
    def parsed_request(self) -> BatchRequest:
        return BatchRequest.model_validate(self.request)


class LevelItem(_Item):
    batch_id = UnicodeAttribute()
    level = NumberAttribute()
    level_status = UnicodeAttribute()
    jobs_total = NumberAttribute()
    jobs_ended = NumberAttribute(default=0)
    jobs_failed = NumberAttribute(default=0)
    advanced = BooleanAttribute(default=False)
    started_at = UTCDateTimeAttribute(null=True)
    ended_at = UTCDateTimeAttribute(null=True)

    @property
    def status(self) -> LevelStatus:
        return LevelStatus(self.level_status)


class JobNameIndex(GlobalSecondaryIndex["JobItem"]):
    class Meta:
        index_name = "JobNameIndex"
        projection = AllProjection()

    job_name_key = UnicodeAttribute(hash_key=True)


class InFlightIndex(GlobalSecondaryIndex["JobItem"]):
    class Meta:
        index_name = "InFlightIndex"
        projection = AllProjection()

    inflight = UnicodeAttribute(hash_key=True)
    deadline = NumberAttribute(range_key=True)


class LabelCounters(MapAttribute):
    total_labeled = NumberAttribute(default=0)
    human_labeled = NumberAttribute(default=0)
    machine_labeled = NumberAttribute(default=0)
    failed_non_retryable_error = NumberAttribute(default=0)
    unlabeled = NumberAttribute(default=0)


class JobItem(_Item):
    batch_id = UnicodeAttribute()
    job_name = UnicodeAttribute()
    level = NumberAttribute()
    modality = UnicodeAttribute()
    labeling_job_name = UnicodeAttribute()
    job_name_key = UnicodeAttribute()
    job_status = UnicodeAttribute()
    chain_from = UnicodeAttribute(null=True)
    label_attribute_name = UnicodeAttribute()
    labeling_job_arn = UnicodeAttribute(null=True)
    sagemaker_status = UnicodeAttribute(null=True)
    input_manifest_uri = UnicodeAttribute(null=True)
    label_category_uri = UnicodeAttribute(null=True)
    output_manifest_uri = UnicodeAttribute(null=True)
    counters = LabelCounters(null=True)
    failure_reason = UnicodeAttribute(null=True)
    inflight = UnicodeAttribute(null=True)
    deadline = NumberAttribute(null=True)
    counted = BooleanAttribute(default=False)
    last_checked_at = NumberAttribute(null=True)
    launched_at = UTCDateTimeAttribute(null=True)
    launch_announced = BooleanAttribute(default=False)
    processing = JSONAttribute(null=True)
    ended_at = UTCDateTimeAttribute(null=True)
    job_name_index = JobNameIndex()
    inflight_index = InFlightIndex()

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.job_status)


_MODELS: tuple[type[Model], ...] = (BatchItem, LevelItem, JobItem)


def bind_table(table_name: str, region: str) -> None:
    """Point every item model at the deployment's table (read from settings at cold start)."""
    for model in (_Item, *_MODELS):
        if model.Meta.table_name == table_name and model.Meta.region == region and model._connection is not None:
            continue
        model.Meta.table_name = table_name
        model.Meta.region = region
        model._connection = None


def reset_connections() -> None:
    """Drop cached DynamoDB connections (their endpoint was fixed when they were made)."""
    for model in (_Item, *_MODELS):
        model._connection = None


def _connection() -> Connection:
    """The item models' own connection: a new one per transaction would build a new botocore client each time."""
    return BatchItem._get_connection().connection


def _is_condition_failure(error: Exception) -> bool:
    cause = getattr(error, "cause_response_code", None)
    if cause == "ConditionalCheckFailedException":
        return True
    if isinstance(error, TransactWriteError):
        reasons = getattr(error, "cancellation_reasons", None) or []
        return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)
    return False


@dataclass(frozen=True)
class BatchState:
    """Everything stored about one batch, read in one query."""

    batch: BatchItem
    levels: list[LevelItem]
    jobs: list[JobItem]

    def level(self, level: int) -> LevelItem:
        return next(item for item in self.levels if item.level == level)

    def jobs_of_level(self, level: int) -> list[JobItem]:
        return [job for job in self.jobs if job.level == level]

    def job(self, job_name: str) -> JobItem:
        lowered = job_name.lower()
        return next(job for job in self.jobs if job.job_name.lower() == lowered)


# --- batches -----------------------------------------------------------------------------------


TRANSACTION_ITEMS = 100
"""DynamoDB's limit of items in one transaction."""


def create_batch(request: BatchRequest, now: datetime | None = None) -> tuple[BatchItem, bool]:
    """Write batch, levels and jobs; returns the stored batch and whether this call created it.

    The same request again returns the existing batch; a different request under the same id
    raises ``BatchConflict``. A batch that fits in one transaction is written in one conditional
    transaction; a larger one claims its id first (status ``CREATING``), then writes its levels and
    jobs in transactions of 100 conditional puts, then opens (``IN_PROGRESS``). A retry after a
    crash finishes what the first call began; nothing written is ever overwritten.
    """
    batch = new_batch_item(request, BatchStatus.IN_PROGRESS, now)
    items = _level_and_job_items(request, batch.pk)
    if 1 + len(items) > TRANSACTION_ITEMS:
        return _create_in_parts(request, batch, items)
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.save(batch, condition=BatchItem.pk.does_not_exist())
            for item in items:
                tx.save(item)
    except TransactWriteError as error:
        if not _is_condition_failure(error):
            raise
        return _existing_for(request), False
    return batch, True


def new_batch_item(request: BatchRequest, status: BatchStatus, now: datetime | None = None) -> BatchItem:
    """The batch item of a request, not yet written."""
    now = now or utcnow()
    return BatchItem(
        _batch_pk(request.batch_id),
        "BATCH",
        batch_id=request.batch_id,
        batch_status=status.value,
        request=request.to_wire(),
        fingerprint=request.fingerprint(),
        failure_policy=request.failure_policy.value,
        num_levels=len(request.levels),
        current_level=0,
        created_at=now,
        updated_at=now,
    )


def _existing_for(request: BatchRequest) -> BatchItem:
    existing = get_batch(request.batch_id)
    if existing.fingerprint != request.fingerprint():
        raise BatchConflict(request.batch_id) from None
    return existing


def _level_and_job_items(request: BatchRequest, pk: str) -> list[_Item]:
    items: list[_Item] = [
        LevelItem(
            pk,
            _level_sk(level),
            batch_id=request.batch_id,
            level=level,
            level_status=LevelStatus.PENDING.value,
            jobs_total=len(request.jobs_of_level(level)),
        )
        for level in request.levels
    ]
    for job in request.labeling_jobs:
        name = request.labeling_job_name(job.job_name)
        items.append(
            JobItem(
                pk,
                _job_sk(job.job_name),
                batch_id=request.batch_id,
                job_name=job.job_name,
                level=job.job_level,
                modality=job.job_modality,
                labeling_job_name=name,
                job_name_key=name.lower(),
                job_status=JobStatus.PENDING.value,
                chain_from=job.input_config.chain_from_job_name,
                label_attribute_name=job.resolved_label_attribute_name,
                input_manifest_uri=job.input_config.input_manifest_s3_uri,
                label_category_uri=job.label_category_config_s3_uri,
            )
        )
    return items


def _create_in_parts(request: BatchRequest, batch: BatchItem, items: list[_Item]) -> tuple[BatchItem, bool]:
    batch.batch_status = BatchStatus.CREATING.value
    created = True
    try:
        batch.save(condition=BatchItem.pk.does_not_exist())
    except PutError as error:
        if not _is_condition_failure(error):
            raise
        batch, created = _existing_for(request), False
        if batch.status is not BatchStatus.CREATING:
            return batch, False
    for start in range(0, len(items), TRANSACTION_ITEMS):
        chunk = items[start : start + TRANSACTION_ITEMS]
        try:
            with TransactWrite(connection=_connection()) as tx:
                for item in chunk:
                    tx.save(item, condition=type(item).pk.does_not_exist())
        except TransactWriteError as error:
            if not _is_condition_failure(error):
                raise
            for item in chunk:  # part of this chunk was written before a crash: add only what is missing
                try:
                    item.save(condition=type(item).pk.does_not_exist())
                except PutError as put_error:
                    if not _is_condition_failure(put_error):
                        raise
    try:
        batch.update(
            actions=[BatchItem.batch_status.set(BatchStatus.IN_PROGRESS.value), BatchItem.updated_at.set(utcnow())],
            condition=BatchItem.batch_status == BatchStatus.CREATING.value,
        )
    except UpdateError as error:
        if not _is_condition_failure(error):
            raise
    return get_batch(request.batch_id), created


def get_batch(batch_id: str) -> BatchItem:
    try:
        return BatchItem.get(_batch_pk(batch_id), "BATCH", consistent_read=True)
    except DoesNotExist:
        raise BatchNotFound(batch_id) from None


def load_batch_state(batch_id: str) -> BatchState:
    batch: BatchItem | None = None
    pk = _batch_pk(batch_id)
    for item in BatchItem.query(pk, BatchItem.sk == "BATCH", consistent_read=True):
        batch = item
    if batch is None:
        raise BatchNotFound(batch_id)
    levels = sorted(LevelItem.query(pk, LevelItem.sk.startswith("LEVEL#"), consistent_read=True), key=lambda x: x.level)
    jobs = list(JobItem.query(pk, JobItem.sk.startswith("JOB#"), consistent_read=True))
    return BatchState(batch=batch, levels=levels, jobs=jobs)


def end_batch(batch_id: str, status: BatchStatus, reason: str | None = None, ended_by: str | None = None) -> bool:
    """Move the batch out of IN_PROGRESS; only the first caller wins.

    ``ended_by`` names what ended it (a job, a request), so a retry of that same message can tell
    it is the winner coming back after a crash and finish the announcement.
    """
    batch = BatchItem(_batch_pk(batch_id), "BATCH")
    now = utcnow()
    actions = [BatchItem.batch_status.set(status.value), BatchItem.updated_at.set(now), BatchItem.ended_at.set(now)]
    if reason:
        actions.append(BatchItem.failure_reason.set(reason))
    if ended_by:
        actions.append(BatchItem.ended_by.set(ended_by))
    try:
        batch.update(actions=actions, condition=BatchItem.batch_status == BatchStatus.IN_PROGRESS.value)
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def set_current_level(batch_id: str, level: int) -> None:
    """Only moves forward, so a late duplicate cannot move the batch back a level."""
    batch = BatchItem(_batch_pk(batch_id), "BATCH")
    try:
        batch.update(
            actions=[BatchItem.current_level.set(level), BatchItem.updated_at.set(utcnow())],
            condition=BatchItem.pk.exists() & (BatchItem.current_level < level),
        )
    except UpdateError as error:
        if not _is_condition_failure(error):
            raise


def record_export(batch_id: str, export: dict[str, Any] | None, error: str | None = None) -> None:
    """Where the merged export landed (or why it could not be made); the batch's outcome stays as it is."""
    batch = BatchItem(_batch_pk(batch_id), "BATCH")
    actions: list[Any] = [BatchItem.updated_at.set(utcnow())]
    actions.append(BatchItem.export.set(export) if export is not None else BatchItem.export.remove())
    actions.append(BatchItem.export_error.set(error) if error else BatchItem.export_error.remove())
    batch.update(actions=actions)


def claim_notification(batch_id: str, claimant: str, lease_seconds: int) -> bool:
    """Let one message at a time announce the batch's end.

    ``claimant`` is the message's own id: its redelivery after a crash takes the claim back at once,
    concurrent duplicates (other messages) lose it, and a lease that ran out frees it for anyone.
    """
    batch = BatchItem(_batch_pk(batch_id), "BATCH")
    now = int(utcnow().timestamp())
    try:
        batch.update(
            actions=[BatchItem.notify_lease_until.set(now + lease_seconds), BatchItem.notify_claimant.set(claimant)],
            condition=BatchItem.notified_at.does_not_exist()
            & (
                BatchItem.notify_lease_until.does_not_exist()
                | (BatchItem.notify_lease_until < now)
                | (BatchItem.notify_claimant == claimant)
            ),
        )
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def mark_notified(batch_id: str) -> bool:
    """Record that the end-of-batch notification went out; False if it already had."""
    batch = BatchItem(_batch_pk(batch_id), "BATCH")
    try:
        batch.update(actions=[BatchItem.notified_at.set(utcnow())], condition=BatchItem.notified_at.does_not_exist())
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


@dataclass(frozen=True)
class BatchPage:
    batches: list[BatchItem]
    next_token: str | None


def list_batches(status: BatchStatus, limit: int = 25, next_token: str | None = None) -> BatchPage:
    """Newest first, one status at a time (the StatusIndex), resumable with an opaque token."""
    last_key = json.loads(base64.urlsafe_b64decode(next_token.encode())) if next_token else None
    result = BatchItem.status_index.query(
        status.value, scan_index_forward=False, limit=limit, last_evaluated_key=last_key
    )
    batches = list(result)
    token = None
    if result.last_evaluated_key:
        token = base64.urlsafe_b64encode(json.dumps(result.last_evaluated_key).encode()).decode()
    return BatchPage(batches=batches, next_token=token)


# --- levels ------------------------------------------------------------------------------------


def start_level(batch_id: str, level: int) -> bool:
    """PENDING -> IN_PROGRESS, once."""
    item = LevelItem(_batch_pk(batch_id), _level_sk(level))
    try:
        item.update(
            actions=[LevelItem.level_status.set(LevelStatus.IN_PROGRESS.value), LevelItem.started_at.set(utcnow())],
            condition=LevelItem.level_status == LevelStatus.PENDING.value,
        )
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def get_level(batch_id: str, level: int) -> LevelItem:
    return LevelItem.get(_batch_pk(batch_id), _level_sk(level), consistent_read=True)


def count_job_end(job: JobItem, failed: bool) -> bool:
    """Mark the job counted and add it to its level's counters, atomically; False if already counted."""
    level = LevelItem(job.pk, _level_sk(int(job.level)))
    level_actions = [LevelItem.jobs_ended.add(1)]
    if failed:
        level_actions.append(LevelItem.jobs_failed.add(1))
    try:
        with TransactWrite(connection=_connection()) as tx:
            tx.update(
                JobItem(job.pk, job.sk),
                actions=[JobItem.counted.set(True)],
                condition=JobItem.pk.exists() & ((JobItem.counted.does_not_exist()) | (JobItem.counted == False)),
            )
            tx.update(level, actions=level_actions, condition=LevelItem.pk.exists())
    except TransactWriteError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def claim_level_end(batch_id: str, level: int) -> bool:
    """The one caller that sees the last job counted ends the level; concurrent callers cannot both win."""
    item = LevelItem(_batch_pk(batch_id), _level_sk(level))
    try:
        item.update(
            actions=[LevelItem.level_status.set(LevelStatus.ENDED.value), LevelItem.ended_at.set(utcnow())],
            condition=(LevelItem.jobs_ended == LevelItem.jobs_total)
            & (LevelItem.level_status == LevelStatus.IN_PROGRESS.value),
        )
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def mark_level_advanced(batch_id: str, level: int) -> None:
    LevelItem(_batch_pk(batch_id), _level_sk(level)).update(actions=[LevelItem.advanced.set(True)])


# --- jobs --------------------------------------------------------------------------------------


def find_job_by_labeling_job_name(labeling_job_name: str) -> JobItem:
    """The listener only knows SageMaker's name (from the ARN); names compare case-insensitively."""
    for job in JobItem.job_name_index.query(labeling_job_name.lower(), limit=1):
        return job
    raise JobNotFound(labeling_job_name)


def get_job(batch_id: str, job_name: str) -> JobItem:
    try:
        return JobItem.get(_batch_pk(batch_id), _job_sk(job_name), consistent_read=True)
    except DoesNotExist:
        raise JobNotFound(f"{batch_id}/{job_name}") from None


def begin_launch(job: JobItem) -> bool:
    """PENDING/LAUNCHING -> LAUNCHING. False once the job is launched or ended: nothing to do then."""
    try:
        job.update(
            actions=[JobItem.job_status.set(JobStatus.LAUNCHING.value)],
            condition=JobItem.job_status.is_in(JobStatus.PENDING.value, JobStatus.LAUNCHING.value),
        )
    except UpdateError as error:
        if _is_condition_failure(error):
            return False
        raise
    return True


def record_inputs(job: JobItem, input_manifest_uri: str, label_category_uri: str) -> None:
    job.update(
        actions=[
            JobItem.input_manifest_uri.set(input_manifest_uri),
            JobItem.label_category_uri.set(label_category_uri),
        ]
    )


def record_launched(job: JobItem, arn: str, deadline: int) -> None:
    """Store the ARN; move to IN_PROGRESS unless a fast state-change event already ended the job."""
    now = utcnow()
    try:
        job.update(
            actions=[
                JobItem.labeling_job_arn.set(arn),
                JobItem.job_status.set(JobStatus.IN_PROGRESS.value),
                JobItem.launched_at.set(now),
                JobItem.inflight.set(INFLIGHT),
                JobItem.deadline.set(deadline),
                JobItem.last_checked_at.set(int(now.timestamp())),
            ],
            condition=JobItem.job_status == JobStatus.LAUNCHING.value,
        )
    except UpdateError as error:
        if not _is_condition_failure(error):
            raise
        job.update(actions=[JobItem.labeling_job_arn.set(arn), JobItem.launched_at.set(now)])


def mark_launch_announced(job: JobItem) -> None:
    job.update(actions=[JobItem.launch_announced.set(True)])


def record_processing(job: JobItem, summary: dict[str, Any]) -> None:
    """What the between-level processors kept of the parent's output (shown in batch/show)."""
    job.update(actions=[JobItem.processing.set(summary)])


def record_observed(job: JobItem, sagemaker_status: str) -> None:
    """A non-terminal observation: when we last looked, for the sweep."""
    job.update(
        actions=[
            JobItem.sagemaker_status.set(sagemaker_status),
            JobItem.last_checked_at.set(int(utcnow().timestamp())),
        ]
    )


def record_job_end(
    job: JobItem,
    status: JobStatus,
    *,
    sagemaker_status: str | None = None,
    output_manifest_uri: str | None = None,
    counters: dict[str, int] | None = None,
    failure_reason: str | None = None,
    labeling_job_arn: str | None = None,
    keep_inflight: bool = False,
) -> bool:
    """Record the terminal state once; False if the job had already ended.

    ``keep_inflight`` leaves the job on the sweep's list: for a job we ended ourselves (timeout)
    whose StopLabelingJob has not been confirmed yet.
    """
    actions: list[Any] = [
        JobItem.job_status.set(status.value),
        JobItem.ended_at.set(utcnow()),
        JobItem.last_checked_at.set(int(utcnow().timestamp())),
    ]
    if not keep_inflight:
        actions.append(JobItem.inflight.remove())
    if sagemaker_status:
        actions.append(JobItem.sagemaker_status.set(sagemaker_status))
    if output_manifest_uri:
        actions.append(JobItem.output_manifest_uri.set(output_manifest_uri))
    if counters is not None:
        actions.append(JobItem.counters.set(LabelCounters(**counters)))
    if failure_reason:
        actions.append(JobItem.failure_reason.set(failure_reason))
    if labeling_job_arn:
        actions.append(JobItem.labeling_job_arn.set(labeling_job_arn))
    terminal = [s.value for s in JobStatus if s.is_terminal]
    try:
        job.update(actions=actions, condition=~JobItem.job_status.is_in(*terminal))
    except UpdateError as error:
        if _is_condition_failure(error):
            job.refresh(consistent_read=True)
            return False
        raise
    return True


def clear_inflight(job: JobItem) -> None:
    job.update(actions=[JobItem.inflight.remove()])


def inflight_jobs(deadline_before: int | None = None) -> Iterator[JobItem]:
    """Jobs that may still change on SageMaker, oldest deadline first (the sweep's work list)."""
    condition = InFlightIndex.deadline < deadline_before if deadline_before is not None else None
    return JobItem.inflight_index.query(INFLIGHT, condition)

