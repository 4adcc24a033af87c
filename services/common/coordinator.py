"""Level barriers: count ended jobs once, end each level once, start the next level or end the batch.

No step trusts that it runs once. Each state change is a conditional write in ``store``; events
are emitted after the write and emitted again by a retry that finds the write done but the step
not yet marked complete, so a crash between the two loses nothing. Consumers of those events
are idempotent in turn.
"""

from __future__ import annotations

from services.common import bus, export, manifests, store
from services.common.batches import Publish, end_batch_with_failure
from services.common.events import BatchCompleted, BatchCreated, LabelingJobFinished, LevelStarted
from services.common.labeling import LabelingService
from services.common.observability import logger
from services.common.settings import Settings, get_settings
from services.common.statuses import BatchStatus, FailurePolicy, JobStatus, LevelStatus


def on_batch_created(event: BatchCreated, publish: Publish = bus.publish) -> None:
    batch = store.get_batch(event.batch_id)
    if batch.status.is_terminal:
        return
    _start_level(batch.batch_id, 1, publish)


def _start_level(batch_id: str, level: int, publish: Publish) -> None:
    store.start_level(batch_id, level)
    store.set_current_level(batch_id, level)
    publish(LevelStarted(batch_id=batch_id, level=level))


def on_job_finished(
    event: LabelingJobFinished, service: LabelingService | None = None, publish: Publish = bus.publish
) -> None:
    job = store.get_job(event.batch_id, event.job_name)
    failed = not event.status.is_success
    counted = store.count_job_end(job, failed)
    logger.info(
        "job end counted" if counted else "job end already counted",
        extra={"batch_id": event.batch_id, "job": event.job_name, "status": event.status.value},
    )
    batch = store.get_batch(event.batch_id)
    if failed and batch.failure_policy == FailurePolicy.FAIL_BATCH.value:
        # No return: if this was the level's last job, the level must still end (and go no further).
        _fail_batch(event.batch_id, job.job_name, event.status, event.failure_reason, service, publish)
    level = store.get_level(event.batch_id, event.level)
    if int(level.jobs_ended) < int(level.jobs_total):
        return
    if store.claim_level_end(event.batch_id, event.level):
        logger.info("level ended", extra={"batch_id": event.batch_id, "level": event.level})
    level = store.get_level(event.batch_id, event.level)
    if level.status is LevelStatus.ENDED and not level.advanced:
        advance(event.batch_id, event.level, publish, service)


def _fail_batch(
    batch_id: str,
    job_name: str,
    status: JobStatus,
    failure_reason: str | None,
    service: LabelingService | None,
    publish: Publish,
) -> None:
    reason = f"labeling job {job_name} ended {status.value}"
    if failure_reason:
        reason += f": {failure_reason}"
    end_batch_with_failure(batch_id, BatchStatus.FAILED, reason, service, publish, ended_by=f"job:{job_name}")


def advance(
    batch_id: str,
    level: int,
    publish: Publish = bus.publish,
    service: LabelingService | None = None,
    settings: Settings | None = None,
) -> None:
    """After ``level`` ended: start the next level, or end the batch after the last one."""
    batch = store.get_batch(batch_id)
    if batch.status.is_terminal and batch.status not in (BatchStatus.COMPLETE, BatchStatus.COMPLETED_WITH_ERRORS):
        store.mark_level_advanced(batch_id, level)
        return
    if batch.failure_policy == FailurePolicy.FAIL_BATCH.value and int(store.get_level(batch_id, level).jobs_failed):
        # The failed job's own message may not have ended the batch yet (it crashed after counting, or
        # runs concurrently with this one): the level's counter is final now, so fail here, never go on.
        state = store.load_batch_state(batch_id)
        failed = min(
            (j for j in state.jobs_of_level(level) if j.status.is_terminal and not j.status.is_success),
            key=lambda j: (j.ended_at or store.utcnow(), j.job_name),
        )
        _fail_batch(batch_id, failed.job_name, failed.status, failed.failure_reason, service, publish)
        store.mark_level_advanced(batch_id, level)
        return
    if level < int(batch.num_levels):
        _start_level(batch.batch_id, level + 1, publish)
    else:
        state = store.load_batch_state(batch_id)
        export_batch(state, settings or get_settings())
        had_errors = any(int(lv.jobs_failed) for lv in state.levels)
        status = BatchStatus.COMPLETED_WITH_ERRORS if had_errors else BatchStatus.COMPLETE
        won = store.end_batch(batch_id, status)
        batch = store.get_batch(batch_id)
        if won or batch.notified_at is None:
            publish(BatchCompleted(batch_id=batch.batch_id, status=batch.status))
    store.mark_level_advanced(batch_id, level)


def export_batch(state: store.BatchState, settings: Settings) -> None:
    """The merged export of every chain's final annotations, made before the batch is announced.

    It runs again on a retry and overwrites the same objects; a failure is recorded on the batch
    and does not change the batch's outcome (the jobs' own outputs stand).
    """
    kinds: dict[str, export.AnnotationKind] = {}
    jobs = []
    try:
        for job in state.jobs:
            uri = job.label_category_uri
            if uri and uri not in kinds:
                kinds[uri] = export.annotation_kind(manifests.read_json(uri))
            jobs.append(
                export.ExportJob(
                    job_name=job.job_name,
                    level=int(job.level),
                    label_attribute_name=job.label_attribute_name,
                    output_manifest_uri=job.output_manifest_uri if job.status is JobStatus.COMPLETED else None,
                    chain_from=job.chain_from,
                    kind=kinds.get(uri or "", export.AnnotationKind.BOX),
                )
            )
        prefix = f"s3://{settings.processing_bucket}/batches/{state.batch.batch_id}/export"
        result = export.export_batch(jobs, prefix, batch_id=state.batch.batch_id)
    except Exception as error:  # noqa: BLE001 - recorded on the batch, the labels themselves are safe
        logger.exception("merged export failed", extra={"batch_id": state.batch.batch_id})
        store.record_export(state.batch.batch_id, None, f"{type(error).__name__}: {error}")
        return
    store.record_export(state.batch.batch_id, result.model_dump(mode="json"))
