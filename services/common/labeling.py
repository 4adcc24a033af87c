"""The one seam to the labeling service.

The coordinator, the API and the table speak of labeling jobs only through ``LabelingService``:
create, describe, stop, list. ``SageMakerLabelingService`` is Ground Truth (or the simulated one,
which speaks the same wire protocol at another endpoint); a later backend, such as a self-hosted
annotation tool, is another implementation of the same protocol, chosen in ``get_labeling_service``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from services.common.clients import client
from services.common.errors import LabelingServiceError
from services.common.modalities import ModalitySpec
from services.common.statuses import LabelingJobStatus

BATCH_TAG = "smgt:batch-id"
JOB_TAG = "smgt:job-name"

RETRYABLE_CODES = frozenset(
    {
        # Throttling: botocore's standard retry mode already retried these a few times.
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        # Quota: the account has as many active labeling jobs as it may; one must end first.
        "ResourceLimitExceeded",
        # The service itself.
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
    }
)
"""Error codes after which the same call may succeed later: the launch waits, the job does not fail."""

ACTIVE_STATUSES = (LabelingJobStatus.INITIALIZING, LabelingJobStatus.IN_PROGRESS, LabelingJobStatus.STOPPING)
"""Statuses of a job that still holds one of the account's concurrent labeling job slots."""


class LabelingJobSpec(BaseModel):
    """Everything needed to start one labeling job, independent of the backend."""

    model_config = ConfigDict(frozen=True)

    name: str
    modality: ModalitySpec
    region: str
    label_attribute_name: str
    input_manifest_uri: str
    output_path: str
    label_category_uri: str
    role_arn: str
    workteam_arn: str
    task_title: str
    task_description: str
    task_keywords: list[str]
    task_time_limit_seconds: int
    task_availability_lifetime_seconds: int
    max_concurrent_task_count: int
    tags: dict[str, str] = Field(default_factory=dict)
    kms_key_id: str | None = None


class LabelCounts(BaseModel):
    total_labeled: int = 0
    human_labeled: int = 0
    machine_labeled: int = 0
    failed_non_retryable_error: int = 0
    unlabeled: int = 0


class LabelingJobDescription(BaseModel):
    name: str
    arn: str
    status: LabelingJobStatus
    output_manifest_uri: str | None = None
    failure_reason: str | None = None
    counters: LabelCounts = Field(default_factory=LabelCounts)
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None


class LabelingJobSummary(BaseModel):
    name: str
    arn: str
    status: LabelingJobStatus


class JobAlreadyExists(LabelingServiceError):
    """A job of that name exists; the caller decides whether it is its own (adopt) or not."""

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__("ResourceInUse", message, retryable=False)


class LabelingService(Protocol):
    def create_job(self, spec: LabelingJobSpec) -> str:
        """Start the job; return its ARN. Raises ``JobAlreadyExists`` or ``LabelingServiceError``."""
        ...

    def describe_job(self, name: str) -> LabelingJobDescription: ...

    def stop_job(self, name: str) -> None: ...

    def list_jobs(self, status: LabelingJobStatus | None = None) -> Iterator[LabelingJobSummary]: ...


class SageMakerLabelingService:
    """Ground Truth through SageMaker's API."""

    def __init__(self, sagemaker_client: Any = None):
        self._client = sagemaker_client

    @property
    def _sm(self) -> Any:
        if self._client is None:
            self._client = client("sagemaker")
        return self._client

    @staticmethod
    def create_request(spec: LabelingJobSpec) -> dict[str, Any]:
        """The exact ``CreateLabelingJob`` request for a spec (golden-tested per modality and region)."""
        modality = spec.modality
        output_config: dict[str, Any] = {"S3OutputPath": spec.output_path}
        if spec.kms_key_id:
            output_config["KmsKeyId"] = spec.kms_key_id
        return {
            "LabelingJobName": spec.name,
            "LabelAttributeName": spec.label_attribute_name,
            "InputConfig": {
                "DataSource": {"S3DataSource": {"ManifestS3Uri": spec.input_manifest_uri}},
                "DataAttributes": {
                    "ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]
                },
            },
            "OutputConfig": output_config,
            "RoleArn": spec.role_arn,
            "LabelCategoryConfigS3Uri": spec.label_category_uri,
            "HumanTaskConfig": {
                "WorkteamArn": spec.workteam_arn,
                "UiConfig": {"HumanTaskUiArn": modality.ui_arn(spec.region)},
                "PreHumanTaskLambdaArn": modality.pre_lambda_arn(spec.region),
                "TaskKeywords": spec.task_keywords,
                "TaskTitle": spec.task_title,
                "TaskDescription": spec.task_description,
                "NumberOfHumanWorkersPerDataObject": 1,
                "TaskTimeLimitInSeconds": spec.task_time_limit_seconds,
                "TaskAvailabilityLifetimeInSeconds": spec.task_availability_lifetime_seconds,
                "MaxConcurrentTaskCount": spec.max_concurrent_task_count,
                "AnnotationConsolidationConfig": {
                    "AnnotationConsolidationLambdaArn": modality.acs_lambda_arn(spec.region)
                },
            },
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())],
        }

    def create_job(self, spec: LabelingJobSpec) -> str:
        try:
            return self._sm.create_labeling_job(**self.create_request(spec))["LabelingJobArn"]
        except ClientError as error:
            raise _translate(error, spec.name) from error

    def describe_job(self, name: str) -> LabelingJobDescription:
        try:
            raw = self._sm.describe_labeling_job(LabelingJobName=name)
        except ClientError as error:
            raise _translate(error, name) from error
        counters = raw.get("LabelCounters") or {}
        return LabelingJobDescription(
            name=raw["LabelingJobName"],
            arn=raw["LabelingJobArn"],
            status=LabelingJobStatus(raw["LabelingJobStatus"]),
            output_manifest_uri=(raw.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri"),
            failure_reason=raw.get("FailureReason"),
            counters=LabelCounts(
                total_labeled=counters.get("TotalLabeled", 0),
                human_labeled=counters.get("HumanLabeled", 0),
                machine_labeled=counters.get("MachineLabeled", 0),
                failed_non_retryable_error=counters.get("FailedNonRetryableError", 0),
                unlabeled=counters.get("Unlabeled", 0),
            ),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags") or []},
            created_at=raw.get("CreationTime"),
        )

    def stop_job(self, name: str) -> None:
        try:
            self._sm.stop_labeling_job(LabelingJobName=name)
        except ClientError as error:
            translated = _translate(error, name)
            # Stopping a job that already ended is not an error for us.
            if translated.code == "ValidationException" and "status" in translated.message.lower():
                return
            raise translated from error

    def list_jobs(self, status: LabelingJobStatus | None = None) -> Iterator[LabelingJobSummary]:
        kwargs: dict[str, Any] = {"StatusEquals": status.value} if status else {}
        for page in self._sm.get_paginator("list_labeling_jobs").paginate(**kwargs):
            for raw in page.get("LabelingJobSummaryList", []):
                yield LabelingJobSummary(
                    name=raw["LabelingJobName"],
                    arn=raw["LabelingJobArn"],
                    status=LabelingJobStatus(raw["LabelingJobStatus"]),
                )


def count_active_jobs(service: LabelingService) -> int:
    """Labeling jobs of the whole account (not only this workflow's) that are not finished yet."""
    return sum(1 for status in ACTIVE_STATUSES for _ in service.list_jobs(status=status))


def _translate(error: ClientError, name: str) -> LabelingServiceError:
    code = error.response.get("Error", {}).get("Code", "Unknown")
    message = error.response.get("Error", {}).get("Message", str(error))
    if code in ("ResourceInUse", "ResourceInUseException"):
        return JobAlreadyExists(name, message)
    return LabelingServiceError(code, message, retryable=code in RETRYABLE_CODES)


_override: LabelingService | None = None


@lru_cache(maxsize=1)
def _default_service() -> LabelingService:
    return SageMakerLabelingService()


def get_labeling_service() -> LabelingService:
    """The backend in use: SageMaker (its endpoint decides real or simulated) unless one was installed."""
    return _override or _default_service()


def use_labeling_service(service: LabelingService | None) -> None:
    """Install another backend for this process (a self-hosted tool, or a test double); None restores SageMaker."""
    global _override
    _override = service
    _default_service.cache_clear()
