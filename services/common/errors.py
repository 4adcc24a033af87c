"""Domain errors: each says what went wrong in terms a caller can act on; handlers map them to HTTP/events."""

from __future__ import annotations

from pydantic import BaseModel


class Problem(BaseModel, frozen=True):
    """One reason a request is refused: where (a field path such as ``labelingJobs[2].inputConfig``) and why."""

    field: str
    rule: str


class WorkflowError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidRequest(WorkflowError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.rule}" for p in problems))


class BatchNotFound(WorkflowError):
    def __init__(self, batch_id: str):
        self.batch_id = batch_id
        super().__init__(f"batch {batch_id!r} does not exist")


class BatchConflict(WorkflowError):
    """The batch id exists with a different request: creating it again would not be idempotent."""

    def __init__(self, batch_id: str):
        self.batch_id = batch_id
        super().__init__(f"batch {batch_id!r} already exists with a different request")


class JobNotFound(WorkflowError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"no labeling job of this workflow is named {key!r}")


class LabelingServiceError(WorkflowError):
    """The labeling service refused or failed a call; ``retryable`` says whether trying later may help."""

    def __init__(self, code: str, message: str, retryable: bool):
        self.code = code
        self.message = message
        self.retryable = retryable
        super().__init__(f"{code}: {message}")
