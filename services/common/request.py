"""The batch request (the body of ``POST /batch/create`` and the detail of ``Batch Requested``).

Validation happens in two passes so that every problem is reported at once: the pydantic model
checks each field on its own, then ``check_request`` checks what only the whole batch can tell
(levels, chaining, names against each other and against the deployment's buckets).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.common.errors import InvalidRequest, Problem
from services.common.modalities import JobRole, Modality, ModalitySpec, UnknownModality, get_modality
from services.common.processors import ProcessorSpec
from services.common.statuses import FailurePolicy

# Patterns are written once for three engines: Python's re (here), pydantic-core's Rust regex (Field
# pattern) and ECMA-262 (the published JSON Schema): no named groups, [0-9] rather than \d (Unicode
# digits elsewhere), and names are checked with fullmatch (re's $ also matches before a final newline).
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
NAME_RULE = "must match ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ (letters, digits and inner hyphens, 1-63 characters)"
MAX_LABELING_JOB_NAME = 63
S3_URI_PATTERN = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")
"""Group 1 is the bucket, group 2 the key."""
S3_URI_MAX_LENGTH = len("s3://") + 63 + len("/") + 1024
WORKTEAM_ARN_PATTERN = re.compile(r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:[0-9]{12}:workteam/[a-zA-Z0-9\-_/]+$")
WORKTEAM_ARN_MAX_LENGTH = 256
SNS_ARN_PATTERN = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]+:[0-9]{12}:[A-Za-z0-9_\-]{1,256}(\.fifo)?$")
KEYWORD_PATTERN = r"^[A-Za-z0-9]+( [A-Za-z0-9]+)*$"
"""SageMaker's TaskKeywords pattern: letters and digits, words separated by one space."""
MAX_JOBS_PER_BATCH = 500
"""Bounded so the stored request stays far below DynamoDB's 400 KB item size."""
MAX_REQUEST_JSON_LENGTH = 300_000
"""The request is stored as JSON (ASCII-escaped) on the batch item; DynamoDB items hold at most 400 KB."""



def _in_allowed_bucket(value: str, info: ValidationInfo) -> str:
    """Buckets are known only at run time: they come in the validation context."""
    allowed = (info.context or {}).get("allowed_buckets") or frozenset()
    match = S3_URI_PATTERN.match(value)
    if allowed and match and match[1] not in allowed:
        raise ValueError(f"bucket {match[1]!r} is not one this deployment reads; allowed: {sorted(allowed)}")
    return value


S3Uri = Annotated[
    str,
    Field(pattern=S3_URI_PATTERN.pattern, max_length=S3_URI_MAX_LENGTH, description="s3://bucket/key"),
    AfterValidator(_in_allowed_bucket),
]


class _Strict(BaseModel):
    """Unknown fields are refused: a typo must not silently change what runs."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        frozen=True,
        field_title_generator=lambda name, info: info.alias or name,
    )


class InputConfig(_Strict):
    """Where a job's data objects come from: exactly one of an input manifest or a lower-level job."""

    input_manifest_s3_uri: S3Uri | None = Field(default=None, alias="inputManifestS3Uri")
    chain_from_job_name: str | None = Field(default=None, alias="chainFromJobName", min_length=1)
    processors: list[ProcessorSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="filters run, in order, on the parent job's output before this chained job sees it",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InputConfig:
        if (self.input_manifest_s3_uri is None) == (self.chain_from_job_name is None):
            raise ValueError("exactly one of inputManifestS3Uri or chainFromJobName is required")
        if self.processors and self.chain_from_job_name is None:
            raise ValueError("processors filter a parent job's output: they need chainFromJobName")
        return self


class LabelingJobRequest(_Strict):
    """One labeling job of the batch; its labeling job is named ``<batchId>-<jobName>``."""

    job_name: str = Field(
        alias="jobName",
        json_schema_extra={"pattern": NAME_PATTERN.pattern},
        description="unique in the batch (case-insensitively); letters, digits and inner hyphens",
    )
    job_type: Literal["BATCH"] = Field(default="BATCH", alias="jobType")
    job_modality: str = Field(
        alias="jobModality",
        json_schema_extra={"enum": [m.value for m in Modality]},
        description="a Ground Truth task type, or its Audit / Verification variant",
    )
    job_level: int = Field(
        alias="jobLevel",
        ge=1,
        le=MAX_JOBS_PER_BATCH,
        description="levels run 1..N with no gaps; a level starts when the one below has ended",
    )
    input_config: InputConfig = Field(alias="inputConfig")
    label_category_config_s3_uri: S3Uri | None = Field(default=None, alias="labelCategoryConfigS3Uri")
    label_attribute_name: str | None = Field(default=None, alias="labelAttributeName")
    workteam_arn: str | None = Field(
        default=None,
        alias="workteamArn",
        pattern=WORKTEAM_ARN_PATTERN.pattern,
        max_length=WORKTEAM_ARN_MAX_LENGTH,
        description="optional when the deployment has a default work team for the job's level",
    )
    task_time_limit_in_seconds: int = Field(default=3600, alias="taskTimeLimitInSeconds", ge=30, le=604800)
    task_availability_lifetime_in_seconds: int = Field(
        default=864000, alias="taskAvailabilityLifetimeInSeconds", ge=60, le=2592000
    )
    max_concurrent_task_count: int = Field(default=100, alias="maxConcurrentTaskCount", ge=1, le=5000)
    task_title: str | None = Field(default=None, alias="taskTitle", min_length=1, max_length=128)
    task_description: str | None = Field(default=None, alias="taskDescription", min_length=1, max_length=255)
    task_keywords: list[Annotated[str, Field(min_length=1, max_length=30, pattern=KEYWORD_PATTERN)]] | None = Field(
        default=None, alias="taskKeywords", min_length=1, max_length=5
    )

    @field_validator("job_name")
    @classmethod
    def _name_pattern(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(NAME_RULE)
        return value

    @property
    def modality(self) -> ModalitySpec:
        return get_modality(self.job_modality)

    @property
    def resolved_label_attribute_name(self) -> str:
        return self.label_attribute_name or self.modality.default_label_attribute_name(self.job_name)


class BatchRequest(_Strict):
    """A multi-level labeling batch: the body of ``POST /batch/create``."""

    batch_id: str = Field(
        alias="batchId",
        json_schema_extra={"pattern": NAME_PATTERN.pattern},
        description="the batch's id, chosen by the caller; a retried create with the same body is idempotent",
    )
    labeling_jobs: list[LabelingJobRequest] = Field(alias="labelingJobs", min_length=1, max_length=MAX_JOBS_PER_BATCH)
    destination_sns_arn: str | None = Field(default=None, alias="destinationSnsArn", pattern=SNS_ARN_PATTERN.pattern)
    failure_policy: FailurePolicy = Field(default=FailurePolicy.FAIL_BATCH, alias="failurePolicy")

    @field_validator("batch_id")
    @classmethod
    def _batch_id_pattern(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(NAME_RULE)
        return value

    def labeling_job_name(self, job_name: str) -> str:
        """The name SageMaker sees: the batch id keeps names unique across batches."""
        return f"{self.batch_id}-{job_name}"

    def job(self, job_name: str) -> LabelingJobRequest:
        lowered = job_name.lower()
        return next(j for j in self.labeling_jobs if j.job_name.lower() == lowered)

    @property
    def levels(self) -> list[int]:
        return sorted({j.job_level for j in self.labeling_jobs})

    def jobs_of_level(self, level: int) -> list[LabelingJobRequest]:
        return [j for j in self.labeling_jobs if j.job_level == level]

    def fingerprint(self) -> str:
        """A stable digest of the request, to tell a retried create from a conflicting one."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_wire(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def field_path(loc: Iterable[str | int]) -> str:
    """``("labelingJobs", 2, "inputConfig")`` -> ``labelingJobs[2].inputConfig``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(body)"


def problems_from_validation_error(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = [p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field: not part of the request schema"
        problems.append(Problem(field=field_path(loc), rule=message))
    return problems


def parse_request(
    body: object,
    allowed_buckets: frozenset[str] = frozenset(),
    default_workteams: tuple[str | None, str | None] = (None, None),
) -> BatchRequest:
    """Parse and fully check a request; raise ``InvalidRequest`` listing every problem found.

    ``default_workteams`` are the deployment's teams for level 1 and for the levels above; a job
    without its own ``workteamArn`` needs the one of its level.
    """
    if not isinstance(body, dict):
        raise InvalidRequest([Problem(field="(body)", rule="must be a JSON object")])
    try:
        request = BatchRequest.model_validate(body, context={"allowed_buckets": allowed_buckets})
    except ValidationError as error:
        problems = problems_from_validation_error(error)
        problems.extend(_check_raw_modalities(body))
        raise InvalidRequest(_unique(problems)) from None
    problems = check_request(request)
    for i, job in enumerate(request.labeling_jobs):
        if job.workteam_arn is None and not default_workteams[0 if job.job_level <= 1 else 1]:
            variable = "FIRST_LEVEL_WORKTEAM_ARN" if job.job_level <= 1 else "SECOND_LEVEL_WORKTEAM_ARN"
            problems.append(
                Problem(
                    field=f"labelingJobs[{i}].workteamArn",
                    rule=f"required: this deployment has no default work team for level {job.job_level} ({variable})",
                )
            )
    if problems:
        raise InvalidRequest(problems)
    return request


def _check_raw_modalities(body: dict) -> list[Problem]:
    """Report unknown modalities even when another field already failed the first pass."""
    problems = []
    jobs = body.get("labelingJobs")
    if isinstance(jobs, list):
        for i, job in enumerate(jobs):
            if isinstance(job, dict) and isinstance(job.get("jobModality"), str):
                try:
                    get_modality(job["jobModality"])
                except UnknownModality as error:
                    problems.append(Problem(field=f"labelingJobs[{i}].jobModality", rule=str(error)))
    return problems


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def check_request(request: BatchRequest) -> list[Problem]:
    """Whole-batch rules: the ones no single field can check."""
    problems: list[Problem] = []
    by_name: dict[str, tuple[int, LabelingJobRequest]] = {}
    for i, job in enumerate(request.labeling_jobs):
        key = job.job_name.lower()
        if key in by_name:
            problems.append(
                Problem(
                    field=f"labelingJobs[{i}].jobName",
                    rule=f"duplicates labelingJobs[{by_name[key][0]}].jobName (names are compared case-insensitively)",
                )
            )
        else:
            by_name[key] = (i, job)
        full = request.labeling_job_name(job.job_name)
        if len(full) > MAX_LABELING_JOB_NAME:
            problems.append(
                Problem(
                    field=f"labelingJobs[{i}].jobName",
                    rule=f"batchId + '-' + jobName becomes the labeling job name {full!r}, "
                    f"{len(full)} characters; SageMaker allows {MAX_LABELING_JOB_NAME}",
                )
            )

    levels = request.levels
    expected = list(range(1, len(levels) + 1))
    if levels != expected:
        # bounded: jobLevel is at most MAX_JOBS_PER_BATCH
        missing = sorted(set(range(1, max(levels) + 1)) - set(levels))
        problems.append(
            Problem(field="labelingJobs", rule=f"jobLevel values must run 1..N with no gaps; missing level(s) {missing}")
        )
    size = len(json.dumps(request.to_wire()))
    if size > MAX_REQUEST_JSON_LENGTH:
        problems.append(
            Problem(field="(body)", rule=f"the request is {size} characters as stored; at most {MAX_REQUEST_JSON_LENGTH}")
        )

    for i, job in enumerate(request.labeling_jobs):
        problems.extend(_check_job(i, job, by_name))
    return problems


def _check_job(
    i: int,
    job: LabelingJobRequest,
    by_name: dict[str, tuple[int, LabelingJobRequest]],
) -> list[Problem]:
    at = f"labelingJobs[{i}]"
    problems: list[Problem] = []
    try:
        spec = job.modality
    except UnknownModality as error:
        return [Problem(field=f"{at}.jobModality", rule=str(error))]

    parent: LabelingJobRequest | None = None
    chain = job.input_config.chain_from_job_name
    if chain is not None:
        found = by_name.get(chain.lower())
        if found is None:
            problems.append(Problem(field=f"{at}.inputConfig.chainFromJobName", rule=f"no job named {chain!r} in this batch"))
        elif found[1].job_level >= job.job_level:
            problems.append(
                Problem(
                    field=f"{at}.inputConfig.chainFromJobName",
                    rule=f"{chain!r} is at level {found[1].job_level}; a job chains only from a lower level",
                )
            )
        else:
            parent = found[1]
    if spec.is_chained and chain is None:
        problems.append(
            Problem(field=f"{at}.inputConfig", rule=f"{spec.modality} audits another job: chainFromJobName is required")
        )
    if parent is not None and spec.is_chained:
        try:
            parent_base = parent.modality.base
        except UnknownModality:
            parent_base = None
        if parent_base is not None and parent_base != spec.base:
            problems.append(
                Problem(
                    field=f"{at}.inputConfig.chainFromJobName",
                    rule=f"{spec.modality} must chain from a {spec.base} job; {parent.job_name!r} is {parent.job_modality}",
                )
            )

    if job.label_category_config_s3_uri is None and chain is None:
        problems.append(Problem(field=f"{at}.labelCategoryConfigS3Uri", rule="required unless the job chains from another"))

    label_attribute = job.resolved_label_attribute_name
    for rule in spec.validate_label_attribute_name(label_attribute):
        problems.append(Problem(field=f"{at}.labelAttributeName", rule=rule))
    if parent is not None and spec.role is not JobRole.LABEL:
        try:
            parent_attribute = parent.resolved_label_attribute_name
        except UnknownModality:
            parent_attribute = None
        if parent_attribute is not None and parent_attribute.lower() == label_attribute.lower():
            problems.append(
                Problem(
                    field=f"{at}.labelAttributeName",
                    rule=f"must differ from the parent job's label attribute name {parent_attribute!r}",
                )
            )

    if job.task_time_limit_in_seconds > spec.max_task_time_limit_seconds:
        problems.append(
            Problem(
                field=f"{at}.taskTimeLimitInSeconds",
                rule=f"at most {spec.max_task_time_limit_seconds} for {spec.modality}",
            )
        )
    if job.task_availability_lifetime_in_seconds > spec.max_task_availability_lifetime_seconds:
        problems.append(
            Problem(
                field=f"{at}.taskAvailabilityLifetimeInSeconds",
                rule=f"at most {spec.max_task_availability_lifetime_seconds} for {spec.modality}",
            )
        )

    return problems
