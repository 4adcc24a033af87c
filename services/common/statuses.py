"""Status vocabularies of batches, levels and jobs, and how SageMaker's job states map onto them."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    CREATING = "CREATING"
    """Only while a batch too large for one transaction is being written."""
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETE = "COMPLETE"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in (BatchStatus.CREATING, BatchStatus.IN_PROGRESS)


class LevelStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    ENDED = "ENDED"


class JobStatus(StrEnum):
    PENDING = "PENDING"
    LAUNCHING = "LAUNCHING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_JOB_STATUSES

    @property
    def is_success(self) -> bool:
        """Only a completed job (or one skipped on purpose) lets its chained jobs go on."""
        return self in (JobStatus.COMPLETED, JobStatus.SKIPPED)


_TERMINAL_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SKIPPED})


class FailurePolicy(StrEnum):
    """What one failed job does to its batch."""

    FAIL_BATCH = "FAIL_BATCH"
    CONTINUE = "CONTINUE"


class LabelingJobStatus(StrEnum):
    """SageMaker's own status values of a labeling job (DescribeLabelingJob, state-change events)."""

    INITIALIZING = "Initializing"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def is_terminal(self) -> bool:
        return self in (LabelingJobStatus.COMPLETED, LabelingJobStatus.FAILED, LabelingJobStatus.STOPPED)

    def to_job_status(self) -> JobStatus:
        return _SAGEMAKER_TO_JOB[self]


_SAGEMAKER_TO_JOB = {
    LabelingJobStatus.INITIALIZING: JobStatus.IN_PROGRESS,
    LabelingJobStatus.IN_PROGRESS: JobStatus.IN_PROGRESS,
    LabelingJobStatus.STOPPING: JobStatus.IN_PROGRESS,
    LabelingJobStatus.COMPLETED: JobStatus.COMPLETED,
    LabelingJobStatus.FAILED: JobStatus.FAILED,
    LabelingJobStatus.STOPPED: JobStatus.STOPPED,
}
