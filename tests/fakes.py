"""Test doubles that honour the domain's protocols (moto has no CreateLabelingJob)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from services.common.errors import LabelingServiceError
from services.common.labeling import (
    JobAlreadyExists,
    LabelCounts,
    LabelingJobDescription,
    LabelingJobSpec,
    LabelingJobSummary,
)
from services.common.statuses import LabelingJobStatus

ACCOUNT = "123456789012"


class FakeLabelingService:
    """An in-memory labeling service: jobs start InProgress and end when a test says so."""

    def __init__(self) -> None:
        self.specs: dict[str, LabelingJobSpec] = {}
        self.jobs: dict[str, LabelingJobDescription] = {}
        self.create_calls: list[str] = []
        self.stop_calls: list[str] = []
        self.create_errors: list[LabelingServiceError] = []
        self._lock = threading.Lock()

    def create_job(self, spec: LabelingJobSpec) -> str:
        with self._lock:
            self.create_calls.append(spec.name)
            if self.create_errors:
                raise self.create_errors.pop(0)
            key = spec.name.lower()
            if key in self.jobs:
                raise JobAlreadyExists(spec.name, f"Job name {spec.name} is already in use")
            arn = f"arn:aws:sagemaker:{spec.region}:{ACCOUNT}:labeling-job/{key}"
            self.specs[key] = spec
            self.jobs[key] = LabelingJobDescription(
                name=spec.name,
                arn=arn,
                status=LabelingJobStatus.IN_PROGRESS,
                tags=dict(spec.tags),
                created_at=datetime.now(UTC),
            )
            return arn

    def describe_job(self, name: str) -> LabelingJobDescription:
        try:
            return self.jobs[name.lower()]
        except KeyError:
            raise LabelingServiceError("ResourceNotFound", f"Could not find labeling job {name}", False) from None

    def stop_job(self, name: str) -> None:
        self.stop_calls.append(name)
        job = self.jobs[name.lower()]
        if not job.status.is_terminal:
            self.jobs[name.lower()] = job.model_copy(update={"status": LabelingJobStatus.STOPPED})

    def list_jobs(self, status: LabelingJobStatus | None = None) -> Iterator[LabelingJobSummary]:
        for job in self.jobs.values():
            if status is None or job.status is status:
                yield LabelingJobSummary(name=job.name, arn=job.arn, status=job.status)

    # --- test controls -----------------------------------------------------------------------
    def complete(self, name: str, output_uri: str | None = None, labeled: int = 1) -> LabelingJobDescription:
        key = name.lower()
        spec = self.specs[key]
        uri = output_uri or f"{spec.output_path}/{spec.name}/manifests/output/output.manifest"
        self.jobs[key] = self.jobs[key].model_copy(
            update={
                "status": LabelingJobStatus.COMPLETED,
                "output_manifest_uri": uri,
                "counters": LabelCounts(total_labeled=labeled, human_labeled=labeled),
            }
        )
        return self.jobs[key]

    def fail(self, name: str, reason: str = "ClientError: workers could not load the data") -> LabelingJobDescription:
        key = name.lower()
        self.jobs[key] = self.jobs[key].model_copy(update={"status": LabelingJobStatus.FAILED, "failure_reason": reason})
        return self.jobs[key]
