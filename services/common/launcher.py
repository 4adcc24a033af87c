"""Starting the labeling jobs of a level: resolve each job's input, build its request, create it once."""

from __future__ import annotations

from datetime import timedelta

from services.common import bus, manifests, store
from services.common.batches import Publish
from services.common.errors import LabelingServiceError
from services.common.events import LabelingJobFinished, LabelingJobLaunched, LevelStarted
from services.common.labeling import BATCH_TAG, JOB_TAG, JobAlreadyExists, LabelingJobSpec, LabelingService
from services.common.modalities import JobRole, ModalitySpec, get_modality
from services.common.observability import logger
from services.common.request import LabelingJobRequest
from services.common.settings import Settings
from services.common.statuses import JobStatus


class LaunchDeferred(Exception):
    """At least one job could not be created yet (throttling, quota): the message must come back later."""


def launch_level(event: LevelStarted, service: LabelingService, settings: Settings, publish: Publish = bus.publish) -> None:
    state = store.load_batch_state(event.batch_id)
    if state.batch.status.is_terminal:
        logger.info("batch already ended; nothing to launch", extra={"batch_id": event.batch_id})
        return
    request = state.batch.parsed_request
    deferred: list[str] = []
    for job in state.jobs_of_level(event.level):
        try:
            launch_job(state, request.job(job.job_name), job, service, settings, publish)
        except LabelingServiceError as error:
            if not error.retryable:
                raise
            logger.warning("launch deferred", extra={"job": job.job_name, "code": error.code})
            deferred.append(f"{job.job_name} ({error.code})")
    if deferred:
        raise LaunchDeferred(f"will retry: {', '.join(deferred)}")


def _finished(job: store.JobItem) -> LabelingJobFinished:
    return LabelingJobFinished(
        batch_id=job.batch_id,
        job_name=job.job_name,
        level=int(job.level),
        status=job.status,
        output_manifest_s3_uri=job.output_manifest_uri,
        failure_reason=job.failure_reason,
    )


def _end_without_launch(job: store.JobItem, status: JobStatus, reason: str, publish: Publish) -> None:
    store.record_job_end(job, status, failure_reason=reason)
    job.refresh(consistent_read=True)
    publish(_finished(job))


def launch_job(
    state: store.BatchState,
    job_request: LabelingJobRequest,
    job: store.JobItem,
    service: LabelingService,
    settings: Settings,
    publish: Publish = bus.publish,
) -> None:
    """Create one job at most once; a retry adopts a job it created before a crash."""
    if job.status.is_terminal:
        if not job.counted:
            publish(_finished(job))  # ended before a crash could announce it
        return
    if job.status is JobStatus.IN_PROGRESS:
        return
    parent = state.job(job.chain_from) if job.chain_from else None
    if parent is not None and not parent.status.is_success:
        _end_without_launch(job, JobStatus.SKIPPED, f"parent job {parent.job_name} ended {parent.status.value}", publish)
        return
    if parent is not None and not parent.output_manifest_uri:
        raise LabelingServiceError("ParentOutputMissing", f"{parent.job_name} has no output manifest yet", retryable=True)
    if not store.begin_launch(job):
        return

    modality = get_modality(job.modality)
    input_uri = job.input_manifest_uri if parent is None else parent.output_manifest_uri
    assert input_uri is not None
    category_uri = _label_category_for(state, job, job_request, modality, parent, settings)
    store.record_inputs(job, input_uri, category_uri)

    spec = LabelingJobSpec(
        name=job.labeling_job_name,
        modality=modality,
        region=settings.region,
        label_attribute_name=job.label_attribute_name,
        input_manifest_uri=input_uri,
        output_path=f"s3://{settings.processing_bucket}/batches/{state.batch.batch_id}/output",
        label_category_uri=category_uri,
        role_arn=settings.labeling_job_role_arn,
        workteam_arn=job_request.workteam_arn,
        task_title=job_request.task_title or _default_title(modality, job.job_name),
        task_description=job_request.task_description or _default_description(modality, parent),
        task_keywords=job_request.task_keywords or _default_keywords(modality),
        task_time_limit_seconds=job_request.task_time_limit_in_seconds,
        task_availability_lifetime_seconds=job_request.task_availability_lifetime_in_seconds,
        max_concurrent_task_count=job_request.max_concurrent_task_count,
        tags={BATCH_TAG: state.batch.batch_id, JOB_TAG: job.job_name},
    )
    try:
        arn = service.create_job(spec)
    except JobAlreadyExists:
        existing = service.describe_job(spec.name)
        if existing.tags.get(BATCH_TAG) != state.batch.batch_id:
            _end_without_launch(
                job, JobStatus.FAILED, f"a labeling job named {spec.name} already exists outside this batch", publish
            )
            return
        arn = existing.arn
        logger.info("adopted a job created by an earlier attempt", extra={"job": job.job_name, "arn": arn})
    except LabelingServiceError as error:
        if error.retryable:
            raise
        _end_without_launch(job, JobStatus.FAILED, f"{error.code}: {error.message}", publish)
        return

    deadline = store.utcnow() + timedelta(seconds=settings.job_completion_timeout_seconds)
    store.record_launched(job, arn, int(deadline.timestamp()))
    publish(
        LabelingJobLaunched(
            batch_id=state.batch.batch_id,
            job_name=job.job_name,
            level=int(job.level),
            labeling_job_name=spec.name,
            labeling_job_arn=arn,
        )
    )


def _label_category_for(
    state: store.BatchState,
    job: store.JobItem,
    job_request: LabelingJobRequest,
    modality: ModalitySpec,
    parent: store.JobItem | None,
    settings: Settings,
) -> str:
    """First-pass jobs use their file as given; chained jobs get a copy naming the parent's labels."""
    own = job_request.label_category_config_s3_uri
    if parent is None:
        assert own is not None
        return own
    source = own or parent.label_category_uri
    assert source is not None
    config = manifests.read_json(source)
    prepared = modality.prepare_label_category_config(config, parent.label_attribute_name)
    target = f"s3://{settings.processing_bucket}/batches/{state.batch.batch_id}/{job.job_name}/label-categories.json"
    manifests.write_json(target, prepared)
    return target


_ROLE_WORDS = {JobRole.LABEL: "Label", JobRole.ADJUST: "Review and adjust", JobRole.VERIFY: "Verify"}


def _default_title(modality: ModalitySpec, job_name: str) -> str:
    return f"{_ROLE_WORDS[modality.role]}: {modality.base.value} ({job_name})"[:128]


def _default_description(modality: ModalitySpec, parent: store.JobItem | None) -> str:
    if parent is None:
        return f"Draw and track every object of the listed categories ({modality.base.value})."[:255]
    return f"Check the labels of {parent.job_name} frame by frame and correct what is wrong."[:255]


def _default_keywords(modality: ModalitySpec) -> list[str]:
    family = "Video" if modality.family.value == "video-frame" else "Point cloud"
    return [family, modality.base.value[:30], _ROLE_WORDS[modality.role][:30]]
