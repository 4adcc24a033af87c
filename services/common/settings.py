"""Typed configuration, read once from the environment.

Only this module reads ``os.environ``; everything else receives a ``Settings`` so tests can pass
their own without patching the process.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_WORKTEAM_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:workteam/.+")
_KMS_KEY = re.compile(r"[a-zA-Z0-9:/_-]{1,2048}")
_S3_PREFIX = re.compile(r"[a-zA-Z0-9!_.*'()/-]{1,512}")


class Settings(BaseSettings):
    """What every function of the workflow needs to find its resources."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    table_name: str = Field(alias="TABLE_NAME")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    input_bucket: str = Field(default="", alias="INPUT_BUCKET")
    processing_bucket: str = Field(default="", alias="PROCESSING_BUCKET")
    status_topic_arn: str = Field(default="", alias="STATUS_TOPIC_ARN")
    labeling_job_role_arn: str = Field(default="", alias="LABELING_JOB_ROLE_ARN")
    job_completion_timeout_seconds: int = Field(default=864000, ge=60, alias="JOB_COMPLETION_TIMEOUT")
    region: str = Field(default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    presigned_url_expiry_seconds: int = Field(default=3600, ge=1, le=604800, alias="PRESIGNED_URL_EXPIRY")
    sweep_recheck_seconds: int = Field(default=0, ge=0, alias="SWEEP_RECHECK_SECONDS")
    """The sweep re-describes in-flight jobs not checked for this long (0: every sweep, so a lost
    state-change event delays a batch by one sweep period at most)."""
    extra_allowed_buckets: str = Field(default="", alias="ALLOWED_BUCKETS")

    # -- launching labeling jobs ------------------------------------------------------------------
    first_level_workteam_arn: str = Field(default="", alias="FIRST_LEVEL_WORKTEAM_ARN")
    """Work team of level-1 jobs whose request names none ("" = the request must name one)."""
    second_level_workteam_arn: str = Field(default="", alias="SECOND_LEVEL_WORKTEAM_ARN")
    """Work team of the jobs of level 2 and above whose request names none."""
    output_kms_key_id: str = Field(default="", alias="OUTPUT_KMS_KEY_ID")
    """``OutputConfig.KmsKeyId`` of every labeling job ("" = the bucket's default encryption)."""
    output_s3_prefix: str = Field(default="batches", alias="OUTPUT_S3_PREFIX")
    """Key prefix, in the processing bucket, of every batch's outputs and prepared files."""
    max_concurrent_labeling_jobs: int = Field(default=20, ge=0, alias="MAX_CONCURRENT_LABELING_JOBS")
    """Labeling jobs allowed in flight in the account before launches wait (0 = no cap of our own)."""
    launch_retry_base_seconds: int = Field(default=30, ge=1, le=43200, alias="LAUNCH_RETRY_BASE_SECONDS")
    """First delay before a deferred Level Started message comes back; doubles per receive."""
    launch_retry_max_seconds: int = Field(default=900, ge=1, le=43200, alias="LAUNCH_RETRY_MAX_SECONDS")
    """Longest delay between two attempts of a deferred launch (SQS allows up to 12 hours)."""
    custom_processor_modules_raw: str = Field(default="", alias="CUSTOM_PROCESSOR_MODULES")
    """Comma-separated module prefixes a request's custom processor may be imported from ("" = any)."""

    @property
    def custom_processor_modules(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.custom_processor_modules_raw.split(",") if m.strip())

    @field_validator("first_level_workteam_arn", "second_level_workteam_arn", "output_kms_key_id")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("first_level_workteam_arn", "second_level_workteam_arn")
    @classmethod
    def _workteam_arn(cls, value: str) -> str:
        if value and not _WORKTEAM_ARN.fullmatch(value):
            raise ValueError(f"{value!r} is not a SageMaker work team ARN (arn:aws:sagemaker:<region>:<account>:workteam/...)")
        return value

    @field_validator("output_kms_key_id")
    @classmethod
    def _kms_key(cls, value: str) -> str:
        # CreateLabelingJob's OutputConfig.KmsKeyId pattern: a key id, key ARN, alias name or alias ARN.
        if value and not _KMS_KEY.fullmatch(value):
            raise ValueError(f"{value!r} is not a KMS key id, key ARN or alias (pattern [a-zA-Z0-9:/_-]*)")
        return value

    @field_validator("output_s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if value and not _S3_PREFIX.fullmatch(value):
            raise ValueError(f"{value!r} is not a plain S3 key prefix (letters, digits, '!-_.*()/' only)")
        return value

    def workteam_for_level(self, level: int) -> str | None:
        """The configured default work team of a level: the first-level team for level 1, else the second."""
        return (self.first_level_workteam_arn if level <= 1 else self.second_level_workteam_arn) or None

    def processing_uri(self, *parts: str) -> str:
        """``s3://<processing bucket>/<OUTPUT_S3_PREFIX>/<parts...>``."""
        keys = [self.output_s3_prefix, *(p.strip("/") for p in parts)]
        return f"s3://{self.processing_bucket}/" + "/".join(k for k in keys if k)

    @property
    def allowed_buckets(self) -> frozenset[str]:
        """Buckets a request may read from: the deployment's own and any configured extra ones."""
        extra = {b.strip() for b in self.extra_allowed_buckets.split(",") if b.strip()}
        own = {b for b in (self.input_bucket, self.processing_bucket) if b}
        return frozenset(own | extra)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
