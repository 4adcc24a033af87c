"""Every event contract of the workflow, version 1.

Our events travel on the custom bus with source ``smgt.workflow``; the detail-type is the event's
name. SageMaker's own job-state event arrives on the default bus and is modelled here too, so a
reader finds every message the services exchange in one place.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.common.errors import Problem
from services.common.statuses import BatchStatus, JobStatus, LabelingJobStatus

EVENT_SOURCE = "smgt.workflow"
SAGEMAKER_SOURCE = "aws.sagemaker"
CONTRACT_VERSION = "1"


class DetailType(StrEnum):
    BATCH_REQUESTED = "Batch Requested"
    BATCH_REJECTED = "Batch Rejected"
    BATCH_CREATED = "Batch Created"
    LEVEL_STARTED = "Level Started"
    LABELING_JOB_LAUNCHED = "Labeling Job Launched"
    LABELING_JOB_FINISHED = "Labeling Job Finished"
    BATCH_COMPLETED = "Batch Completed"
    BATCH_FAILED = "Batch Failed"
    SAGEMAKER_JOB_STATE_CHANGE = "SageMaker Ground Truth Labeling Job State Change"


class EventDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)
    detail_type: ClassVar[DetailType]
    version: Literal["1"] = CONTRACT_VERSION

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class BatchRequested(EventDetail):
    """An external system asks for a batch: the detail is the same body as POST /batch/create.

    The body is kept unparsed here so that intake validates it exactly like the HTTP API does and
    can answer every problem with a ``Batch Rejected`` event.
    """

    detail_type: ClassVar[DetailType] = DetailType.BATCH_REQUESTED
    request: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _body_is_the_detail(cls, data: Any) -> Any:
        if isinstance(data, dict) and "request" not in data:
            body = {k: v for k, v in data.items() if k != "version"}
            return {"version": data.get("version", CONTRACT_VERSION), "request": body}
        return data

    def to_wire(self) -> dict[str, Any]:
        return {"version": self.version, **self.request}


class BatchRejected(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.BATCH_REJECTED
    batch_id: str | None = Field(default=None, alias="batchId")
    errors: list[Problem]


class BatchCreated(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.BATCH_CREATED
    batch_id: str = Field(alias="batchId")
    num_levels: int = Field(alias="numLevels", ge=1)


class LevelStarted(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.LEVEL_STARTED
    batch_id: str = Field(alias="batchId")
    level: int = Field(ge=1)


class LabelingJobLaunched(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.LABELING_JOB_LAUNCHED
    batch_id: str = Field(alias="batchId")
    job_name: str = Field(alias="jobName")
    level: int
    labeling_job_name: str = Field(alias="labelingJobName")
    labeling_job_arn: str = Field(alias="labelingJobArn")


class LabelingJobFinished(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.LABELING_JOB_FINISHED
    batch_id: str = Field(alias="batchId")
    job_name: str = Field(alias="jobName")
    level: int
    status: JobStatus
    output_manifest_s3_uri: str | None = Field(default=None, alias="outputManifestS3Uri")
    failure_reason: str | None = Field(default=None, alias="failureReason")


class BatchCompleted(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.BATCH_COMPLETED
    batch_id: str = Field(alias="batchId")
    status: BatchStatus


class BatchFailed(EventDetail):
    detail_type: ClassVar[DetailType] = DetailType.BATCH_FAILED
    batch_id: str = Field(alias="batchId")
    status: BatchStatus = BatchStatus.FAILED
    reason: str


class SageMakerJobStateDetail(BaseModel):
    """The detail of SageMaker's own event; only the status is documented in it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    labeling_job_status: LabelingJobStatus = Field(alias="LabelingJobStatus")


WorkflowDetail = (
    BatchRequested
    | BatchRejected
    | BatchCreated
    | LevelStarted
    | LabelingJobLaunched
    | LabelingJobFinished
    | BatchCompleted
    | BatchFailed
)

DETAIL_MODELS: dict[DetailType, type[EventDetail]] = {
    m.detail_type: m
    for m in (
        BatchRequested,
        BatchRejected,
        BatchCreated,
        LevelStarted,
        LabelingJobLaunched,
        LabelingJobFinished,
        BatchCompleted,
        BatchFailed,
    )
}


class EventEnvelope(BaseModel):
    """An EventBridge event as a rule delivers it to an SQS target."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    id: str = ""
    source: str
    detail_type: str = Field(alias="detail-type")
    time: datetime | None = None
    region: str | None = None
    account: str | None = None
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any]


class UnknownEvent(ValueError):
    """A message on a queue that no contract describes: it must go to the DLQ, not be dropped."""


class SageMakerJobStateChange(BaseModel):
    model_config = ConfigDict(frozen=True)
    labeling_job_arn: str
    status: LabelingJobStatus

    @property
    def labeling_job_name(self) -> str:
        return self.labeling_job_arn.rsplit("/", 1)[-1]


def parse_envelope(body: str | dict[str, Any]) -> EventEnvelope:
    try:
        if isinstance(body, str):
            return EventEnvelope.model_validate_json(body)
        return EventEnvelope.model_validate(body)
    except ValidationError as error:
        raise UnknownEvent(f"not an EventBridge event: {error}") from error


def parse_workflow_event(body: str | dict[str, Any]) -> WorkflowDetail:
    """Typed detail of one of our events, chosen by its detail-type."""
    envelope = parse_envelope(body)
    if envelope.source != EVENT_SOURCE:
        raise UnknownEvent(f"source {envelope.source!r} is not {EVENT_SOURCE!r}")
    try:
        model = DETAIL_MODELS[DetailType(envelope.detail_type)]
    except (ValueError, KeyError):
        raise UnknownEvent(f"unknown detail-type {envelope.detail_type!r}") from None
    return model.model_validate(envelope.detail)  # type: ignore[return-value]


def parse_sagemaker_state_change(body: str | dict[str, Any]) -> SageMakerJobStateChange:
    envelope = parse_envelope(body)
    if envelope.source != SAGEMAKER_SOURCE or envelope.detail_type != DetailType.SAGEMAKER_JOB_STATE_CHANGE:
        raise UnknownEvent(f"not a SageMaker labeling job state change: {envelope.source} / {envelope.detail_type}")
    if not envelope.resources:
        raise UnknownEvent("state change event without the job ARN in resources[0]")
    detail = SageMakerJobStateDetail.model_validate(envelope.detail)
    return SageMakerJobStateChange(labeling_job_arn=envelope.resources[0], status=detail.labeling_job_status)
