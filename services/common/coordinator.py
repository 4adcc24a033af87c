"""Level barriers: count ended jobs once, end each level once, start the next level or end the batch.

No step trusts that it runs once. Each state change is a conditional write in ``store``; events
are emitted after the write and emitted again by a retry that finds the write done but the step
not yet marked complete, so a crash between the two loses nothing. Consumers of those events
are idempotent in turn.
"""

from __future__ import annotations

from services.common import bus, store
from services.common.batches import Publish, end_batch_with_failure
from services.common.events import BatchCompleted, BatchCreated, LabelingJobFinished, LevelStarted
from services.common.labeling import LabelingService
from services.common.observability import logger
from services.common.statuses import BatchStatus, FailurePolicy, LevelStatus


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
        reason = f"labeling job {event.job_name} ended {event.status.value}"
        if event.failure_reason:
            reason += f": {event.failure_reason}"
        end_batch_with_failure(event.batch_id, BatchStatus.FAILED, reason, service, publish, ended_by=f"job:{job.job_name}")
        return
    level = store.get_level(event.batch_id, event.level)
    if int(level.jobs_ended) < int(level.jobs_total):
        return
    if store.claim_level_end(event.batch_id, event.level):
        logger.info("level ended", extra={"batch_id": event.batch_id, "level": event.level})
    level = store.get_level(event.batch_id, event.level)
    if level.status is LevelStatus.ENDED and not level.advanced:
        advance(event.batch_id, event.level, publish)


def advance(batch_id: str, level: int, publish: Publish = bus.publish) -> None:
    """After ``level`` ended: start the next level, or end the batch after the last one."""
    batch = store.get_batch(batch_id)
    if batch.status.is_terminal and batch.status not in (BatchStatus.COMPLETE, BatchStatus.COMPLETED_WITH_ERRORS):
        store.mark_level_advanced(batch_id, level)
        return
    if level < int(batch.num_levels):
        _start_level(batch.batch_id, level + 1, publish)
    else:
        state = store.load_batch_state(batch_id)
        had_errors = any(int(lv.jobs_failed) for lv in state.levels)
        status = BatchStatus.COMPLETED_WITH_ERRORS if had_errors else BatchStatus.COMPLETE
        won = store.end_batch(batch_id, status)
        batch = store.get_batch(batch_id)
        if won or batch.notified_at is None:
            publish(BatchCompleted(batch_id=batch.batch_id, status=batch.status))
    store.mark_level_advanced(batch_id, level)

