"""Typed configuration, read once from the environment.

Only this module reads ``os.environ``; everything else receives a ``Settings`` so tests can pass
their own without patching the process.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    sweep_recheck_seconds: int = Field(default=600, ge=0, alias="SWEEP_RECHECK_SECONDS")
    extra_allowed_buckets: str = Field(default="", alias="ALLOWED_BUCKETS")

    @property
    def allowed_buckets(self) -> frozenset[str]:
        """Buckets a request may read from: the deployment's own and any configured extra ones."""
        extra = {b.strip() for b in self.extra_allowed_buckets.split(",") if b.strip()}
        own = {b for b in (self.input_bucket, self.processing_bucket) if b}
        return frozenset(own | extra)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]
