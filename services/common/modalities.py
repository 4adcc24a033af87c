"""The Ground Truth task type registry: what each ``jobModality`` means to ``CreateLabelingJob``.

A modality is one built-in Ground Truth task type (video frame or 3D point cloud) in one role:
the first-pass labeling job, an adjustment (audit) job chained from it, or a verification job
(an adjustment job whose labels are all locked). Everything the launcher needs to build a valid
request is here: the worker UI ARN, the pre-annotation (PRE) and consolidation (ACS) Lambda
ARNs per region, the ``LabelAttributeName`` rules, the time limits, and how to prepare the label
category configuration file.

Sources (AWS documentation, checked against each other):

- ``HumanTaskConfig.PreHumanTaskLambdaArn`` and ``AnnotationConsolidationConfig.
  AnnotationConsolidationLambdaArn`` (SageMaker API Reference): the PRE-/ACS- function lists,
  12 regions each, one Ground Truth account per region serving both PRE and ACS functions.
- ``UiConfig.HumanTaskUiArn`` (SageMaker API Reference): ``arn:aws:sagemaker:<region>:
  394669845002:human-task-ui/<TaskType>``, the same account in every region; the adjustment
  job of a task type uses the same UI as the task type.
- ``CreateLabelingJob.LabelAttributeName`` (SageMaker API Reference): pattern, ``-metadata``
  and ``-ref`` rules, and "an adjustment or verification job must use a different
  LabelAttributeName than the original job".
- "Labeling category configuration file with label category and frame attributes reference"
  (Developer Guide, sms-label-cat-config-attributes): ``labels[].editsAllowed``
  (``"none"``/``"any"``), ``auditLabelAttributeName``, ``annotationType`` (video frame only).
- Video frame / 3D point cloud task pages (Developer Guide): one worker per data object,
  private or vendor work teams only, task time limit up to 7 days.

Adding a modality is one row in ``_BASE_TASKS`` (a new task type; its audit and verification
variants follow) or one entry in ``_SPECS`` for an odd one; no new code.
"""

from __future__ import annotations

import copy
import re
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

__all__ = [
    "GROUND_TRUTH_LAMBDA_ACCOUNTS",
    "HUMAN_TASK_UI_ACCOUNT",
    "SUPPORTED_REGIONS",
    "JobRole",
    "Modality",
    "ModalitySpec",
    "TaskFamily",
    "UnknownModality",
    "UnsupportedRegion",
    "all_modalities",
    "get_modality",
]


class Modality(StrEnum):
    """The names users type in ``jobModality``: a base task type, ``<Base>Audit`` or ``<Base>Verification``."""

    VideoObjectTracking = "VideoObjectTracking"
    VideoObjectTrackingAudit = "VideoObjectTrackingAudit"
    VideoObjectTrackingVerification = "VideoObjectTrackingVerification"
    VideoObjectDetection = "VideoObjectDetection"
    VideoObjectDetectionAudit = "VideoObjectDetectionAudit"
    VideoObjectDetectionVerification = "VideoObjectDetectionVerification"
    PointCloudObjectDetection = "PointCloudObjectDetection"
    PointCloudObjectDetectionAudit = "PointCloudObjectDetectionAudit"
    PointCloudObjectDetectionVerification = "PointCloudObjectDetectionVerification"
    PointCloudObjectTracking = "PointCloudObjectTracking"
    PointCloudObjectTrackingAudit = "PointCloudObjectTrackingAudit"
    PointCloudObjectTrackingVerification = "PointCloudObjectTrackingVerification"
    PointCloudSemanticSegmentation = "PointCloudSemanticSegmentation"
    PointCloudSemanticSegmentationAudit = "PointCloudSemanticSegmentationAudit"
    PointCloudSemanticSegmentationVerification = "PointCloudSemanticSegmentationVerification"


class TaskFamily(StrEnum):
    """Ground Truth groups its task types in families that share input formats and limits."""

    VIDEO_FRAME = "video-frame"
    POINT_CLOUD = "point-cloud"


class JobRole(StrEnum):
    """What a job does with its input: label from scratch, adjust a parent's labels, or only verify them."""

    LABEL = "label"
    ADJUST = "adjust"
    VERIFY = "verify"


# Account hosting the Ground Truth PRE-* and ACS-* Lambda functions, per region. The API Reference
# lists the same account for both function families in a region, for every task type used here.
GROUND_TRUTH_LAMBDA_ACCOUNTS: Final[dict[str, str]] = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}

# Account owning the built-in worker UIs; the docs give one account and say to substitute the region.
HUMAN_TASK_UI_ACCOUNT: Final = "394669845002"

SUPPORTED_REGIONS: Final[tuple[str, ...]] = tuple(GROUND_TRUTH_LAMBDA_ACCOUNTS)

# Task time limit for video frame and 3D point cloud jobs: the task type pages of the Developer
# Guide say "up to 7 days (604800 seconds)"; the HumanTaskConfig API Reference now says 30 days.
# We keep the stricter figure so no request depends on the newer, less consistently documented one.
_SEVEN_DAYS: Final = 7 * 24 * 3600
# TaskAvailabilityLifetimeInSeconds for private and vendor work teams (the only ones these task
# types accept): 30 days (API Reference, HumanTaskConfig).
_THIRTY_DAYS: Final = 30 * 24 * 3600

_LABEL_ATTRIBUTE_PATTERN: Final = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$")
_LABEL_ATTRIBUTE_MAX_LENGTH: Final = 127
_METADATA_SUFFIX: Final = "-metadata"
_REF_SUFFIX: Final = "-ref"


class UnknownModality(ValueError):
    """A ``jobModality`` the registry does not know; the message lists the known ones."""

    def __init__(self, name: object) -> None:
        self.name = name
        allowed = ", ".join(m.value for m in Modality)
        super().__init__(f"unknown job modality {name!r}; expected one of: {allowed}")


class UnsupportedRegion(ValueError):
    """A region where AWS documents no Ground Truth Lambdas; the message lists the supported ones."""

    def __init__(self, region: object) -> None:
        self.region = region
        allowed = ", ".join(SUPPORTED_REGIONS)
        super().__init__(
            f"region {region!r} has no documented Ground Truth Lambda functions; supported regions: {allowed}"
        )


def _account_for(region: str) -> str:
    try:
        return GROUND_TRUTH_LAMBDA_ACCOUNTS[region]
    except (KeyError, TypeError):
        raise UnsupportedRegion(region) from None


class ModalitySpec(BaseModel):
    """One modality: the AWS task type behind it and the rules a ``CreateLabelingJob`` must follow."""

    model_config = ConfigDict(frozen=True)

    modality: Modality
    task_type: str
    """AWS task type name as in the Lambda names, e.g. ``VideoObjectTracking``,
    ``Adjustment3DPointCloudObjectTracking`` (verification jobs are adjustment jobs to AWS)."""
    human_task_ui_name: str
    """Last part of the ``HumanTaskUiArn``; the adjustment job reuses its task type's UI."""
    family: TaskFamily
    role: JobRole
    base: Modality
    """The first-pass modality (itself for LABEL); its UI and labels are what an audit reviews."""
    label_attribute_suffix: str | None
    """``-ref`` where AWS requires it; ``None`` means the name must *not* end with ``-ref``."""
    one_worker_per_object: bool
    """``NumberOfHumanWorkersPerDataObject`` must be 1 (no consolidation across workers)."""
    max_task_time_limit_seconds: int
    max_task_availability_lifetime_seconds: int

    # -- ARNs ---------------------------------------------------------------------------------------

    def ui_arn(self, region: str) -> str:
        """``HumanTaskUiArn`` for this task type in ``region``."""
        _account_for(region)  # same region set as the Lambdas: refuse what we cannot run end to end
        return f"arn:aws:sagemaker:{region}:{HUMAN_TASK_UI_ACCOUNT}:human-task-ui/{self.human_task_ui_name}"

    def pre_lambda_arn(self, region: str) -> str:
        """``PreHumanTaskLambdaArn``: the Ground Truth pre-annotation function for this task type."""
        return f"arn:aws:lambda:{region}:{_account_for(region)}:function:PRE-{self.task_type}"

    def acs_lambda_arn(self, region: str) -> str:
        """``AnnotationConsolidationLambdaArn``: the Ground Truth consolidation function for this task type."""
        return f"arn:aws:lambda:{region}:{_account_for(region)}:function:ACS-{self.task_type}"

    # -- chaining -----------------------------------------------------------------------------------

    @property
    def is_chained(self) -> bool:
        """Adjustment and verification jobs review a parent job's output, so they need one."""
        return self.role in (JobRole.ADJUST, JobRole.VERIFY)

    # -- label attribute name -----------------------------------------------------------------------

    def validate_label_attribute_name(
        self, name: str, parent_label_attribute_name: str | None = None
    ) -> list[str]:
        """Every rule ``name`` breaks, in words a user can act on; ``[]`` when SageMaker will accept it.

        ``parent_label_attribute_name``, when given, is checked too: an adjustment or verification
        job must not reuse its parent's name (the output manifest would overwrite the parent's labels).
        """
        problems: list[str] = []
        if not _LABEL_ATTRIBUTE_PATTERN.fullmatch(name):
            problems.append(
                f"label attribute name {name!r} must be letters and digits, with hyphens only between "
                "them (pattern ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$)"
            )
        if len(name) > _LABEL_ATTRIBUTE_MAX_LENGTH:
            # The pattern lets hyphens run past 127 characters; the API's length limit does not.
            problems.append(
                f"label attribute name {name!r} is {len(name)} characters long; the maximum is "
                f"{_LABEL_ATTRIBUTE_MAX_LENGTH}"
            )
        if name.endswith(_METADATA_SUFFIX):
            problems.append(f"label attribute name {name!r} must not end with {_METADATA_SUFFIX!r}")
        if self.label_attribute_suffix is not None:
            if not name.endswith(self.label_attribute_suffix):
                problems.append(
                    f"label attribute name {name!r} must end with {self.label_attribute_suffix!r} "
                    f"for {self.modality.value} jobs"
                )
        elif name.endswith(_REF_SUFFIX):
            problems.append(
                f"label attribute name {name!r} must not end with {_REF_SUFFIX!r} for {self.modality.value} jobs"
            )
        if (
            parent_label_attribute_name is not None
            and self.is_chained
            and name == parent_label_attribute_name
        ):
            problems.append(
                f"label attribute name {name!r} must differ from the parent job's "
                f"({parent_label_attribute_name!r}) for {self.modality.value} jobs"
            )
        return problems

    def default_label_attribute_name(self, job_name: str) -> str:
        """The job name, with the required suffix added when AWS requires one and it is not there yet.

        Job names are unique within a batch, so a chained job's default never equals its parent's.
        """
        suffix = self.label_attribute_suffix
        if suffix is None or job_name.endswith(suffix):
            return job_name
        return f"{job_name}{suffix}"

    # -- label category configuration ---------------------------------------------------------------

    def prepare_label_category_config(
        self, config: dict[str, Any], parent_label_attribute_name: str | None
    ) -> dict[str, Any]:
        """A copy of ``config`` ready to upload as ``LabelCategoryConfigS3Uri`` for this modality.

        - ADJUST and VERIFY: ``auditLabelAttributeName`` is set to the parent's label attribute
          name (Ground Truth reads the annotations to review from that key of the input manifest).
          ``annotationType`` and every other key are kept: an adjustment must use the same tool as
          the job that drew the annotations.
        - VERIFY: every ``labels[]`` entry gets ``editsAllowed: "none"``, which is what makes an
          adjustment job a verification job for video frame and 3D point cloud task types.
        - LABEL: ``auditLabelAttributeName`` is removed if present, since the docs reserve it for
          audit jobs; a LABEL job that chains from another only takes that job's output as input.

        The input is never modified.
        """
        if not isinstance(config, dict):
            raise TypeError(f"label category config must be a JSON object, got {type(config).__name__}")
        labels = config.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(entry, dict) and isinstance(entry.get("label"), str) for entry in labels)
        ):
            raise ValueError(
                'label category config needs "labels": a non-empty list of {"label": "<name>"} objects'
            )

        prepared = copy.deepcopy(config)
        if not self.is_chained:
            prepared.pop("auditLabelAttributeName", None)
            return prepared

        if not parent_label_attribute_name:
            raise ValueError(
                f"{self.modality.value} jobs review a parent job: its label attribute name is required "
                "for auditLabelAttributeName"
            )
        prepared["auditLabelAttributeName"] = parent_label_attribute_name
        if self.role is JobRole.VERIFY:
            for entry in prepared["labels"]:
                entry["editsAllowed"] = "none"
        return prepared


# -- the table ---------------------------------------------------------------------------------------


class _BaseTask(BaseModel):
    """One Ground Truth built-in task type; its LABEL, ADJUST and VERIFY modalities derive from it."""

    model_config = ConfigDict(frozen=True)

    modality: Modality
    lambda_task_name: str  # the suffix of PRE-/ACS- function names for the first-pass job
    human_task_ui_name: str
    family: TaskFamily
    label_attribute_suffix: str | None


# CreateLabelingJob.LabelAttributeName: "-ref" is required for video frame object detection and
# tracking, 3D point cloud semantic segmentation and 3D point cloud object tracking, and for their
# adjustment and verification jobs; task types not listed (3D point cloud object detection) must not
# end with "-ref".
_BASE_TASKS: Final[tuple[_BaseTask, ...]] = (
    _BaseTask(
        modality=Modality.VideoObjectTracking,
        lambda_task_name="VideoObjectTracking",
        human_task_ui_name="VideoObjectTracking",
        family=TaskFamily.VIDEO_FRAME,
        label_attribute_suffix=_REF_SUFFIX,
    ),
    _BaseTask(
        modality=Modality.VideoObjectDetection,
        lambda_task_name="VideoObjectDetection",
        human_task_ui_name="VideoObjectDetection",
        family=TaskFamily.VIDEO_FRAME,
        label_attribute_suffix=_REF_SUFFIX,
    ),
    _BaseTask(
        modality=Modality.PointCloudObjectDetection,
        lambda_task_name="3DPointCloudObjectDetection",
        human_task_ui_name="PointCloudObjectDetection",
        family=TaskFamily.POINT_CLOUD,
        label_attribute_suffix=None,
    ),
    _BaseTask(
        modality=Modality.PointCloudObjectTracking,
        lambda_task_name="3DPointCloudObjectTracking",
        human_task_ui_name="PointCloudObjectTracking",
        family=TaskFamily.POINT_CLOUD,
        label_attribute_suffix=_REF_SUFFIX,
    ),
    _BaseTask(
        modality=Modality.PointCloudSemanticSegmentation,
        lambda_task_name="3DPointCloudSemanticSegmentation",
        human_task_ui_name="PointCloudSemanticSegmentation",
        family=TaskFamily.POINT_CLOUD,
        label_attribute_suffix=_REF_SUFFIX,
    ),
)

# How a role is named and which Lambdas it uses. Verification is an adjustment job to AWS (same
# PRE-/ACS-Adjustment* functions); only the label category file differs.
_ROLE_VARIANTS: Final[tuple[tuple[JobRole, str, str], ...]] = (
    (JobRole.LABEL, "", ""),
    (JobRole.ADJUST, "Audit", "Adjustment"),
    (JobRole.VERIFY, "Verification", "Adjustment"),
)


def _expand(base: _BaseTask) -> dict[Modality, ModalitySpec]:
    specs: dict[Modality, ModalitySpec] = {}
    for role, name_suffix, lambda_prefix in _ROLE_VARIANTS:
        modality = Modality(f"{base.modality.value}{name_suffix}")
        specs[modality] = ModalitySpec(
            modality=modality,
            task_type=f"{lambda_prefix}{base.lambda_task_name}",
            human_task_ui_name=base.human_task_ui_name,
            family=base.family,
            role=role,
            base=base.modality,
            label_attribute_suffix=base.label_attribute_suffix,
            one_worker_per_object=True,
            max_task_time_limit_seconds=_SEVEN_DAYS,
            max_task_availability_lifetime_seconds=_THIRTY_DAYS,
        )
    return specs


_SPECS: Final[dict[Modality, ModalitySpec]] = {
    modality: spec for base in _BASE_TASKS for modality, spec in _expand(base).items()
}

# Every enum member must have a spec and vice versa: a missing row fails at import, not at launch.
if set(_SPECS) != set(Modality):  # pragma: no cover - a table edit gone wrong
    raise RuntimeError(f"modality table and enum disagree on: {sorted(set(Modality) ^ set(_SPECS))}")


def get_modality(name: str) -> ModalitySpec:
    """The spec for a ``jobModality`` value (exact, case-sensitive, as AWS task type names are)."""
    try:
        return _SPECS[Modality(name)]
    except (ValueError, TypeError):
        raise UnknownModality(name) from None


def all_modalities() -> list[ModalitySpec]:
    """Every registered modality, in declaration order (first-pass, audit, verification per task type)."""
    return list(_SPECS.values())
