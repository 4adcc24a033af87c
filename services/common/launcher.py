"""Starting the labeling jobs of a level: resolve each job's input, build its request, create it once.

Back-pressure: before creating a job the launcher counts the account's labeling jobs still in
flight (``MAX_CONCURRENT_LABELING_JOBS``); at the cap, or when the service answers with
throttling or ``ResourceLimitExceeded``, the job stays PENDING/LAUNCHING and the whole
``Level Started`` message is deferred (``LaunchDeferred``): the handler reports the record failed
and SQS delivers it again later. Jobs already launched are skipped by the retry, so a level fills
up as slots free. A refusal that retrying cannot fix (``ValidationException``...) fails the job
with SageMaker's message; the batch then follows its failure policy.
"""

from __future__ import annotations

import re
from datetime import timedelta

from services.common import bus, manifests, processors, store
from services.common.batches import Publish
from services.common.errors import LabelingServiceError
from services.common.events import LabelingJobFinished, LabelingJobLaunched, LevelStarted
from services.common.labeling import (
    BATCH_TAG,
    JOB_TAG,
    JobAlreadyExists,
    LabelingJobDescription,
    LabelingJobSpec,
    LabelingService,
    count_active_jobs,
)
from services.common.modalities import JobRole, ModalitySpec, TaskFamily, get_modality
from services.common.observability import logger
from services.common.request import LabelingJobRequest
from services.common.settings import Settings
from services.common.statuses import JobStatus

CAP_REACHED = "ConcurrentLabelingJobCap"
"""Code of the retryable error raised when the account is at ``MAX_CONCURRENT_LABELING_JOBS``."""

# CreateLabelingJob limits (botocore's service model, HumanTaskConfig).
MAX_TITLE = 128
MAX_DESCRIPTION = 255
MAX_KEYWORDS = 5
MAX_KEYWORD = 30


class LaunchDeferred(Exception):
    """At least one job could not be created yet (throttling, quota): the message must come back later."""


class LaunchCapacity:
    """Free slots under ``MAX_CONCURRENT_LABELING_JOBS``: counted once per message, spent per create.

    The count is account-wide (``ListLabelingJobs`` by status), since SageMaker's own quota is.
    It is a soft cap: launchers running at the same time may each see the last free slot; the
    service's ``ResourceLimitExceeded`` stays the hard limit and is retried the same way.
    """

    def __init__(self, service: LabelingService, limit: int):
        self._service = service
        self.limit = limit
        self.in_flight: int | None = None
        self._free: int | None = None

    def acquire(self) -> bool:
        if self.limit <= 0:
            return True
        if self._free is None:
            self.in_flight = count_active_jobs(self._service)
            self._free = self.limit - self.in_flight
        if self._free <= 0:
            return False
        self._free -= 1
        return True

    def release(self) -> None:
        """Give back a slot taken for a create that did not start a new job."""
        if self._free is not None:
            self._free += 1


def launch_level(event: LevelStarted, service: LabelingService, settings: Settings, publish: Publish = bus.publish) -> None:
    state = store.load_batch_state(event.batch_id)
    if state.batch.status.is_terminal:
        logger.info("batch already ended; nothing to launch", extra={"batch_id": event.batch_id})
        return
    request = state.batch.parsed_request
    capacity = LaunchCapacity(service, settings.max_concurrent_labeling_jobs)
    deferred: list[str] = []
    for job in state.jobs_of_level(event.level):
        try:
            launch_job(state, request.job(job.job_name), job, service, settings, publish, capacity=capacity)
        except LabelingServiceError as error:
            if not error.retryable:
                raise
            logger.warning("launch deferred", extra={"job": job.job_name, "code": error.code, "reason": error.message})
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


def resolve_workteam(job_request: LabelingJobRequest, level: int, settings: Settings) -> str | None:
    """The job's own work team, else the deployment's default for its level (first level, or the rest)."""
    return job_request.workteam_arn or settings.workteam_for_level(level)


def launch_job(
    state: store.BatchState,
    job_request: LabelingJobRequest,
    job: store.JobItem,
    service: LabelingService,
    settings: Settings,
    publish: Publish = bus.publish,
    capacity: LaunchCapacity | None = None,
) -> None:
    """Create one job at most once; a retry adopts a job it created before a crash."""
    if job.status.is_terminal:
        if not job.counted:
            publish(_finished(job))  # ended before a crash could announce it
        return
    if job.status is JobStatus.IN_PROGRESS:
        if not job.launch_announced and job.labeling_job_arn:
            _announce_launch(state, job, job.labeling_job_name, job.labeling_job_arn, publish)
        return
    parent = state.job(job.chain_from) if job.chain_from else None
    if parent is not None and parent.status.is_terminal and parent.status is not JobStatus.COMPLETED:
        # Failed, stopped or skipped: there is no output to audit, and the skip passes down the chain.
        _end_without_launch(job, JobStatus.SKIPPED, f"parent job {parent.job_name} ended {parent.status.value}", publish)
        return
    if parent is not None and not parent.output_manifest_uri:
        raise LabelingServiceError("ParentOutputMissing", f"{parent.job_name} has no output manifest yet", retryable=True)
    level = int(job.level)
    workteam = resolve_workteam(job_request, level, settings)
    if not workteam:
        variable = "FIRST_LEVEL_WORKTEAM_ARN" if level <= 1 else "SECOND_LEVEL_WORKTEAM_ARN"
        _end_without_launch(
            job,
            JobStatus.FAILED,
            f"no work team for job {job.job_name}: the request has no workteamArn and {variable} is not set",
            publish,
        )
        return

    capacity = capacity or LaunchCapacity(service, settings.max_concurrent_labeling_jobs)
    if not capacity.acquire():
        # An earlier attempt may have created this job before it crashed: that job holds a slot already.
        existing = _existing_job(service, job.labeling_job_name) if job.status is JobStatus.LAUNCHING else None
        if existing is None:
            raise LabelingServiceError(
                CAP_REACHED,
                f"{capacity.in_flight} labeling jobs are in flight in the account; "
                f"MAX_CONCURRENT_LABELING_JOBS is {capacity.limit}",
                retryable=True,
            )
        _adopt(state, job, existing, settings, publish, service)
        return
    if not store.begin_launch(job):
        capacity.release()
        return

    modality = get_modality(job.modality)
    input_uri = job.input_manifest_uri if parent is None else parent.output_manifest_uri
    assert input_uri is not None
    if parent is not None and job_request.input_config.processors:
        try:
            result = _run_processors(state, job, job_request, parent, input_uri, settings)
        except (processors.ProcessorImportError, processors.ProcessorDataError) as error:
            capacity.release()
            _end_without_launch(job, JobStatus.FAILED, f"processor: {error}", publish)
            return
        if result.empty:
            capacity.release()
            _end_without_launch(
                job,
                JobStatus.SKIPPED,
                f"the processors kept none of the {result.lines_in} data objects of {parent.job_name}",
                publish,
            )
            return
        input_uri = result.output_manifest_uri
    category_uri = _label_category_for(state, job, job_request, modality, parent, settings)
    store.record_inputs(job, input_uri, category_uri)

    spec = LabelingJobSpec(
        name=job.labeling_job_name,
        modality=modality,
        region=settings.region,
        label_attribute_name=job.label_attribute_name,
        input_manifest_uri=input_uri,
        output_path=settings.processing_uri(state.batch.batch_id, "output"),
        label_category_uri=category_uri,
        role_arn=settings.labeling_job_role_arn,
        workteam_arn=workteam,
        task_title=job_request.task_title or default_task_title(modality, job.labeling_job_name),
        task_description=job_request.task_description
        or default_task_description(
            modality, state.batch.batch_id, job.job_name, parent.job_name if parent is not None else None
        ),
        task_keywords=job_request.task_keywords or default_task_keywords(modality, job.job_name),
        task_time_limit_seconds=job_request.task_time_limit_in_seconds,
        task_availability_lifetime_seconds=job_request.task_availability_lifetime_in_seconds,
        max_concurrent_task_count=job_request.max_concurrent_task_count,
        tags={BATCH_TAG: state.batch.batch_id, JOB_TAG: job.job_name},
        kms_key_id=settings.output_kms_key_id or None,
    )
    try:
        arn = service.create_job(spec)
    except JobAlreadyExists:
        capacity.release()
        existing = _existing_job(service, spec.name)
        if existing is None:  # refused as a duplicate, yet not found: look again on the next attempt
            raise LabelingServiceError(
                "ResourceInUse", f"{spec.name} exists but cannot be described yet", retryable=True
            ) from None
        _adopt(state, job, existing, settings, publish, service)
        return
    except LabelingServiceError as error:
        capacity.release()
        if error.retryable:
            raise
        _end_without_launch(job, JobStatus.FAILED, f"{error.code}: {error.message}", publish)
        return
    _record_launched(state, job, spec.name, arn, settings, publish, service)


def _run_processors(
    state: store.BatchState,
    job: store.JobItem,
    job_request: LabelingJobRequest,
    parent: store.JobItem,
    input_uri: str,
    settings: Settings,
) -> processors.ProcessorResult:
    """Filter the parent's output for this job; the same inputs always give the same manifest."""
    batch_id = state.batch.batch_id
    context = processors.ProcessorContext(
        batch_id=batch_id,
        job_name=job.job_name,
        label_attribute_name=parent.label_attribute_name,
        work_prefix_uri=settings.processing_uri(batch_id, job.job_name, "processors"),
        parent_job_name=parent.job_name,
        allowed_custom_modules=settings.custom_processor_modules or None,
    )
    output = settings.processing_uri(batch_id, job.job_name, "input", "processed.manifest")
    result = processors.run_processors(input_uri, output, job_request.input_config.processors or [], context)
    store.record_processing(
        job,
        {"linesIn": result.lines_in, "linesOut": result.lines_out, "flagsByCheck": dict(result.flags_by_check)},
    )
    logger.info("processors ran", extra={"job": job.job_name, "lines_in": result.lines_in, "lines_out": result.lines_out})
    return result


def _existing_job(service: LabelingService, name: str) -> LabelingJobDescription | None:
    try:
        return service.describe_job(name)
    except LabelingServiceError as error:
        if error.code in ("ResourceNotFound", "ResourceNotFoundException"):
            return None
        raise


def _adopt(
    state: store.BatchState,
    job: store.JobItem,
    existing: LabelingJobDescription,
    settings: Settings,
    publish: Publish,
    service: LabelingService,
) -> None:
    """A job of this name exists: ours (an earlier attempt created it) is adopted; anyone else's fails the job."""
    if existing.tags.get(BATCH_TAG) != state.batch.batch_id:
        owner = existing.tags.get(BATCH_TAG)
        whose = f"batch {owner}" if owner else "no batch of this workflow"
        _end_without_launch(
            job,
            JobStatus.FAILED,
            f"a labeling job named {existing.name} already exists outside this batch (it belongs to {whose}); "
            "SageMaker job names are unique per account and region: use another batchId or jobName",
            publish,
        )
        return
    logger.info("adopted a job created by an earlier attempt", extra={"job": job.job_name, "arn": existing.arn})
    _record_launched(state, job, existing.name, existing.arn, settings, publish, service)


def _record_launched(
    state: store.BatchState,
    job: store.JobItem,
    name: str,
    arn: str,
    settings: Settings,
    publish: Publish,
    service: LabelingService,
) -> None:
    deadline = store.utcnow() + timedelta(seconds=settings.job_completion_timeout_seconds)
    store.record_launched(job, arn, int(deadline.timestamp()))
    # The batch may have failed or been cancelled while this job was being created: its stop
    # could not see a job without an ARN, so stop it here rather than let it run for nothing.
    if store.get_batch(state.batch.batch_id).status.is_terminal:
        logger.info("batch ended during the launch; stopping the new job", extra={"job": job.job_name})
        service.stop_job(name)
    _announce_launch(state, job, name, arn, publish)


def _announce_launch(state: store.BatchState, job: store.JobItem, name: str, arn: str, publish: Publish) -> None:
    publish(
        LabelingJobLaunched(
            batch_id=state.batch.batch_id,
            job_name=job.job_name,
            level=int(job.level),
            labeling_job_name=name,
            labeling_job_arn=arn,
        )
    )
    store.mark_launch_announced(job)


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
    target = settings.processing_uri(state.batch.batch_id, job.job_name, "label-categories.json")
    manifests.write_json(target, prepared)
    return target


# --- what workers see when the request does not say ------------------------------------------------
# Every default names the job, so two jobs never look alike in the worker portal, and each stays
# within CreateLabelingJob's limits (title 128, description 255, 1-5 keywords of 1-30 characters
# matching ^[A-Za-z0-9]+( [A-Za-z0-9]+)*$).

_ROLE_WORDS = {JobRole.LABEL: "Label", JobRole.ADJUST: "Review and adjust", JobRole.VERIFY: "Verify"}


def _task_phrase(modality: ModalitySpec) -> str:
    """``PointCloudObjectTracking`` -> ``3D point cloud object tracking``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", modality.base.value).lower()
    return f"3D {words}" if modality.family is TaskFamily.POINT_CLOUD else words


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip()


def _keyword(text: str) -> str:
    """Letters and digits in words separated by one space, at most 30 characters ("" if nothing is left)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    return " ".join(words)[:MAX_KEYWORD].rstrip()


def default_task_title(modality: ModalitySpec, labeling_job_name: str) -> str:
    return _fit(f"{_ROLE_WORDS[modality.role]}: {_task_phrase(modality)} ({labeling_job_name})", MAX_TITLE)


def default_task_description(modality: ModalitySpec, batch_id: str, job_name: str, parent_job_name: str | None) -> str:
    base = modality.base.value
    if modality.role is JobRole.LABEL or parent_job_name is None:
        if "Segmentation" in base:
            action = "paint every point that belongs to one of the listed categories"
        elif "Tracking" in base:
            action = "draw every object of the listed categories and follow it from frame to frame"
        else:
            action = "draw every object of the listed categories in each frame"
    elif modality.role is JobRole.VERIFY:
        action = f"check the labels of job {parent_job_name} and flag what is wrong (labels cannot be edited)"
    else:
        action = f"check the labels of job {parent_job_name} frame by frame and correct what is wrong"
    return _fit(f"Batch {batch_id}, job {job_name}: {action}.", MAX_DESCRIPTION)


def default_task_keywords(modality: ModalitySpec, job_name: str) -> list[str]:
    family = "Video" if modality.family is TaskFamily.VIDEO_FRAME else "Point cloud"
    candidates = [family, _keyword(modality.base.value), _ROLE_WORDS[modality.role], _keyword(job_name)]
    keywords: list[str] = []
    for keyword in candidates:
        if keyword and keyword.lower() not in {k.lower() for k in keywords}:
            keywords.append(keyword)
    return keywords[:MAX_KEYWORDS]
