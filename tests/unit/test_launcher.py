"""The job launcher: idempotent creation, back-pressure, failures, and what it asks SageMaker for.

The tests share one provisioning of the template on moto (each uses its own batch id) and a fresh
fake labeling service; the last ones drive a simulated Ground Truth (SageMaker's protocol,
``max_concurrent_jobs``) over HTTP. The handler and whole-flow cases are in test_launcher_flow.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from services.common import backoff, launcher, store
from services.common.errors import LabelingServiceError
from services.common.events import (
    EventDetail,
    LabelingJobFinished,
    LabelingJobLaunched,
    LevelStarted,
)
from services.common.labeling import (
    BATCH_TAG,
    JOB_TAG,
    LabelingJobDescription,
    SageMakerLabelingService,
    _translate,
)
from services.common.launcher import CAP_REACHED, LaunchDeferred
from services.common.modalities import all_modalities
from services.common.request import BatchRequest, parse_request
from services.common.settings import Settings, get_settings
from services.common.statuses import BatchStatus, JobStatus, LabelingJobStatus
from tests.conftest import ACCOUNT, REGION, reference_request

FIRST_TEAM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/default-first"
SECOND_TEAM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/default-second"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEYWORD = re.compile(r"[A-Za-z0-9]+( [A-Za-z0-9]+)*")


class Published(list):
    """A publish function that keeps what it was given."""

    def __call__(self, *details: EventDetail) -> None:
        self.extend(details)

    def of(self, kind: type[EventDetail]) -> list[Any]:
        return [d for d in self if isinstance(d, kind)]


def sagemaker_error(code: str, message: str = "refused") -> LabelingServiceError:
    """What ``SageMakerLabelingService`` raises for a ClientError with this code."""
    error = ClientError({"Error": {"Code": code, "Message": message}}, "CreateLabelingJob")
    return _translate(error, "any")


def create_batch(batch_id: str, **changes: Any) -> BatchRequest:
    body = reference_request(batch_id)
    body.update(changes)
    request = parse_request(body)
    store.create_batch(request)
    return request


def job(batch_id: str, name: str) -> store.JobItem:
    return store.get_job(batch_id, name)


def settings_with(**changes: Any) -> Settings:
    return get_settings().model_copy(update=changes)


def foreign_job(
    name: str, status: LabelingJobStatus = LabelingJobStatus.IN_PROGRESS, **tags: str
) -> LabelingJobDescription:
    return LabelingJobDescription(
        name=name,
        arn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{name.lower()}",
        status=status,
        tags=tags,
    )


def complete_level_one(batch_id: str) -> None:
    for name in ("vehicle", "lane"):
        item = job(batch_id, name)
        store.record_job_end(
            item,
            JobStatus.COMPLETED,
            output_manifest_uri=f"s3://{get_settings().processing_bucket}/out/{name}/output.manifest",
        )


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, str]]:
    """template.yaml on moto's in-process mock, once for the module, with the reference dataset uploaded."""
    from moto import mock_aws

    from smgt.local.provision import provision
    from smgt.local.synthetic import upload_reference_dataset

    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_PROFILE"):
            mp.delenv(key, raising=False)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            environment = provision(None)  # type: ignore[arg-type]
            env = environment.shared_environment
            s3 = boto3.client("s3", region_name=REGION)
            upload_reference_dataset(s3, env["INPUT_BUCKET"], prefix="reference", frames=3)
            yield env


@pytest.fixture(autouse=True)
def stack(world: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The functions' environment for this test; the table bound."""
    from services.common.clients import reset_clients
    from services.common.runtime import prepare

    for key, value in world.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_clients()
    prepare()
    return world


# --- idempotency -------------------------------------------------------------------------------


def test_retried_launch_adopts_the_job_created_before_a_crash(
    labeling_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_batch("adopt-0001")
    record_launched = store.record_launched
    crashes = iter([True])

    def crash_once(*args: Any, **kwargs: Any) -> None:
        if next(crashes, False):
            raise RuntimeError("the function timed out after CreateLabelingJob returned")
        record_launched(*args, **kwargs)

    monkeypatch.setattr(store, "record_launched", crash_once)
    published = Published()
    event = LevelStarted(batch_id="adopt-0001", level=1)
    # When the first attempt dies after SageMaker created the first job
    with pytest.raises(RuntimeError):
        launcher.launch_level(event, labeling_service, get_settings(), published)
    first = labeling_service.create_calls[0]
    first_job = first.removeprefix("adopt-0001-")
    assert job("adopt-0001", first_job).status is JobStatus.LAUNCHING
    # Then the retry meets ResourceInUse, finds its own batch tag and adopts the job
    launcher.launch_level(event, labeling_service, get_settings(), published)
    assert labeling_service.create_calls.count(first) == 2
    assert len(labeling_service.jobs) == 2
    adopted = job("adopt-0001", first_job)
    assert adopted.status is JobStatus.IN_PROGRESS
    assert adopted.labeling_job_arn == labeling_service.jobs[first].arn
    assert sorted(e.job_name for e in published.of(LabelingJobLaunched)) == ["lane", "vehicle"]
    assert published.of(LabelingJobFinished) == []


@pytest.mark.parametrize("owner", [{BATCH_TAG: "someone-else"}, {}], ids=["other-batch", "untagged"])
def test_a_foreign_job_with_the_same_name_fails_the_job_with_a_clear_reason(
    labeling_service: Any, owner: dict[str, str]
) -> None:
    batch_id = f"clash-{len(owner)}"
    create_batch(batch_id)
    labeling_service.jobs[f"{batch_id}-vehicle"] = foreign_job(f"{batch_id}-vehicle", **owner)
    published = Published()
    launcher.launch_level(
        LevelStarted(batch_id=batch_id, level=1), labeling_service, get_settings(), published
    )
    vehicle = job(batch_id, "vehicle")
    assert vehicle.status is JobStatus.FAILED
    assert (
        f"a labeling job named {batch_id}-vehicle already exists outside this batch" in vehicle.failure_reason
    )
    assert ("someone-else" in vehicle.failure_reason) == bool(owner)
    assert vehicle.labeling_job_arn is None  # never adopted
    [finished] = published.of(LabelingJobFinished)
    assert (finished.job_name, finished.status) == ("vehicle", JobStatus.FAILED)
    assert job(batch_id, "lane").status is JobStatus.IN_PROGRESS


# --- throttling, quota and refusals ----------------------------------------------------------------


@pytest.mark.parametrize("code", ["ResourceLimitExceeded", "ThrottlingException"])
def test_throttling_and_quota_defer_the_launch_without_touching_the_batch(
    labeling_service: Any, code: str
) -> None:
    batch_id = f"busy-{code[:8].lower()}"
    create_batch(batch_id)
    labeling_service.create_errors.append(sagemaker_error(code, "try later"))
    published = Published()
    event = LevelStarted(batch_id=batch_id, level=1)
    with pytest.raises(LaunchDeferred, match=code):
        launcher.launch_level(event, labeling_service, get_settings(), published)
    refused = labeling_service.create_calls[0].removeprefix(f"{batch_id}-")
    assert job(batch_id, refused).status in (JobStatus.PENDING, JobStatus.LAUNCHING)
    assert job(batch_id, refused).failure_reason is None
    assert store.get_batch(batch_id).status is BatchStatus.IN_PROGRESS
    assert published.of(LabelingJobFinished) == []
    assert len(published.of(LabelingJobLaunched)) == 1  # the other job of the level went ahead
    # Later the same message succeeds and launches only what is missing
    launcher.launch_level(event, labeling_service, get_settings(), published)
    assert {job(batch_id, n).status for n in ("vehicle", "lane")} == {JobStatus.IN_PROGRESS}
    assert len(labeling_service.jobs) == 2
    assert len(published.of(LabelingJobLaunched)) == 2


# --- the concurrency cap ---------------------------------------------------------------------------


def test_the_cap_defers_launches_until_jobs_end(labeling_service: Any) -> None:
    create_batch("capped-0001")
    labeling_service.jobs["other-a"] = foreign_job("other-a", LabelingJobStatus.INITIALIZING)
    labeling_service.jobs["other-b"] = foreign_job("other-b", LabelingJobStatus.STOPPING)
    settings = settings_with(max_concurrent_labeling_jobs=3)
    published = Published()
    event = LevelStarted(batch_id="capped-0001", level=1)
    # Two jobs already hold slots: one of the level's two jobs fits, the other waits unsent
    with pytest.raises(LaunchDeferred, match=CAP_REACHED):
        launcher.launch_level(event, labeling_service, settings, published)
    assert len(labeling_service.create_calls) == 1
    statuses = sorted(job("capped-0001", n).status.value for n in ("vehicle", "lane"))
    assert statuses == ["IN_PROGRESS", "PENDING"]
    assert store.get_batch("capped-0001").status is BatchStatus.IN_PROGRESS
    # Still full: nothing is sent
    with pytest.raises(LaunchDeferred):
        launcher.launch_level(event, labeling_service, settings, published)
    assert len(labeling_service.create_calls) == 1
    # A job ends, a slot frees, the retry launches the rest
    labeling_service.jobs["other-b"] = foreign_job("other-b", LabelingJobStatus.STOPPED)
    launcher.launch_level(event, labeling_service, settings, published)
    assert {job("capped-0001", n).status for n in ("vehicle", "lane")} == {JobStatus.IN_PROGRESS}
    assert published.of(LabelingJobFinished) == []


def test_a_cap_of_zero_means_no_cap_of_our_own(labeling_service: Any) -> None:
    create_batch("nocap-0001")
    for i in range(30):
        labeling_service.jobs[f"other-{i}"] = foreign_job(f"other-{i}")
    settings = settings_with(max_concurrent_labeling_jobs=0)
    launcher.launch_level(
        LevelStarted(batch_id="nocap-0001", level=1), labeling_service, settings, Published()
    )
    assert {job("nocap-0001", n).status for n in ("vehicle", "lane")} == {JobStatus.IN_PROGRESS}


def test_at_the_cap_a_job_created_before_a_crash_is_adopted_not_deferred(labeling_service: Any) -> None:
    create_batch("recover-0001")
    vehicle = job("recover-0001", "vehicle")
    assert store.begin_launch(vehicle)  # the crashed attempt got this far, and SageMaker created the job
    labeling_service.jobs["recover-0001-vehicle"] = foreign_job(
        "recover-0001-vehicle", **{BATCH_TAG: "recover-0001", JOB_TAG: "vehicle"}
    )
    published = Published()
    with pytest.raises(LaunchDeferred, match=CAP_REACHED):  # lane must wait for a slot
        launcher.launch_level(
            LevelStarted(batch_id="recover-0001", level=1),
            labeling_service,
            settings_with(max_concurrent_labeling_jobs=1),
            published,
        )
    assert labeling_service.create_calls == []
    assert job("recover-0001", "vehicle").status is JobStatus.IN_PROGRESS
    assert job("recover-0001", "lane").status is JobStatus.PENDING
    assert [e.job_name for e in published.of(LabelingJobLaunched)] == ["vehicle"]


def test_backoff_doubles_per_receive_up_to_the_cap() -> None:
    no_jitter = [backoff.retry_delay_seconds(n, 30, 900, jitter=0) for n in range(1, 8)]
    assert no_jitter == [30, 60, 120, 240, 480, 900, 900]
    assert backoff.retry_delay_seconds(0, 30, 900, jitter=0) == 30
    assert backoff.retry_delay_seconds(10_000, 30, 10**9, jitter=0) == backoff.SQS_MAX_VISIBILITY_SECONDS
    assert backoff.retry_delay_seconds(3, 30, 900, jitter=0.1, rand=lambda: 1.0) == 108
    assert 1 <= backoff.retry_delay_seconds(1, 1, 1, jitter=0.5, rand=lambda: 1.0)


def test_queue_url_from_arn() -> None:
    assert backoff.queue_url_from_arn(f"arn:aws:sqs:{REGION}:{ACCOUNT}:smgt-launcher") == (
        f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/smgt-launcher"
    )
    with pytest.raises(ValueError):
        backoff.queue_url_from_arn("arn:aws:sns:us-east-1:123456789012:topic")


# --- what is asked of SageMaker ----------------------------------------------------------------------


def test_default_titles_descriptions_and_keywords_differ_per_job_and_fit_sagemaker(
    labeling_service: Any,
) -> None:
    from smgt.local.groundtruth import model_errors

    body = reference_request("defaults-0001")
    for item in body["labelingJobs"]:
        for key in ("taskTitle", "taskDescription", "taskKeywords"):
            item.pop(key, None)
    store.create_batch(parse_request(body))
    launcher.launch_level(
        LevelStarted(batch_id="defaults-0001", level=1), labeling_service, get_settings(), Published()
    )
    complete_level_one("defaults-0001")
    launcher.launch_level(
        LevelStarted(batch_id="defaults-0001", level=2), labeling_service, get_settings(), Published()
    )

    specs = list(labeling_service.specs.values())
    assert len(specs) == 4
    for field in ("task_title", "task_description"):
        assert len({getattr(s, field) for s in specs}) == 4, field
    assert len({tuple(s.task_keywords) for s in specs}) == 4
    shape = _create_labeling_job_shape()
    for spec in specs:
        assert model_errors(shape, SageMakerLabelingService.create_request(spec), "") == []
        assert spec.name in spec.task_title
    audit = labeling_service.specs["defaults-0001-vehicle-audit"]
    assert "vehicle" in audit.task_description and "correct" in audit.task_description


@pytest.mark.parametrize("modality", all_modalities(), ids=lambda m: m.modality.value)
def test_defaults_stay_within_limits_for_the_longest_names(modality: Any) -> None:
    name = "a-" * 31 + "b"  # 63 characters: the longest labeling job name SageMaker accepts
    title = launcher.default_task_title(modality, name)
    description = launcher.default_task_description(modality, "b" * 40, "c-" * 30 + "d", "e" * 63)
    keywords = launcher.default_task_keywords(modality, "f--g-" * 12 + "h")
    assert 1 <= len(title) <= 128 and name in title
    assert 1 <= len(description) <= 255
    assert 1 <= len(keywords) <= 5
    assert all(1 <= len(k) <= 30 and KEYWORD.fullmatch(k) for k in keywords), keywords


def test_tags_carry_the_batch_id_and_the_job_name(labeling_service: Any) -> None:
    create_batch("tags-0001")
    launcher.launch_level(
        LevelStarted(batch_id="tags-0001", level=1), labeling_service, get_settings(), Published()
    )
    for key, spec in labeling_service.specs.items():
        assert spec.tags == {BATCH_TAG: "tags-0001", JOB_TAG: key.removeprefix("tags-0001-")}
        assert {"Key": BATCH_TAG, "Value": "tags-0001"} in SageMakerLabelingService.create_request(spec)[
            "Tags"
        ]


def test_workteam_defaults_per_level_when_the_request_names_none(labeling_service: Any) -> None:
    request = create_batch("teams-0001")
    settings = settings_with(first_level_workteam_arn=FIRST_TEAM, second_level_workteam_arn=SECOND_TEAM)

    def launch(name: str, own_team: bool = False) -> None:
        state = store.load_batch_state("teams-0001")
        job_request = request.job(name)
        if not own_team:
            job_request = job_request.model_copy(update={"workteam_arn": None})
        launcher.launch_job(state, job_request, state.job(name), labeling_service, settings, Published())

    launch("vehicle")
    launch("lane", own_team=True)
    assert labeling_service.specs["teams-0001-vehicle"].workteam_arn == FIRST_TEAM
    assert labeling_service.specs["teams-0001-lane"].workteam_arn == request.job("lane").workteam_arn
    complete_level_one("teams-0001")
    launch("vehicle-audit")
    assert labeling_service.specs["teams-0001-vehicle-audit"].workteam_arn == SECOND_TEAM
    assert (
        SageMakerLabelingService.create_request(labeling_service.specs["teams-0001-vehicle-audit"])[
            "HumanTaskConfig"
        ]["WorkteamArn"]
        == SECOND_TEAM
    )


def test_no_workteam_anywhere_fails_the_job_with_the_setting_to_fix(labeling_service: Any) -> None:
    request = create_batch("noteam-0001")
    complete_level_one("noteam-0001")
    state = store.load_batch_state("noteam-0001")
    published = Published()
    job_request = request.job("lane-audit").model_copy(update={"workteam_arn": None})
    launcher.launch_job(
        state, job_request, state.job("lane-audit"), labeling_service, get_settings(), published
    )
    failed = job("noteam-0001", "lane-audit")
    assert failed.status is JobStatus.FAILED
    assert "SECOND_LEVEL_WORKTEAM_ARN" in failed.failure_reason and "workteamArn" in failed.failure_reason
    assert labeling_service.create_calls == []
    assert [e.status for e in published.of(LabelingJobFinished)] == [JobStatus.FAILED]


def test_kms_key_and_output_prefix_reach_the_request(labeling_service: Any) -> None:
    from services.common.manifests import exists

    create_batch("kms-0001")
    settings = settings_with(output_kms_key_id=KMS_KEY, output_s3_prefix="labeling/out")
    launcher.launch_level(LevelStarted(batch_id="kms-0001", level=1), labeling_service, settings, Published())
    complete_level_one("kms-0001")
    launcher.launch_level(LevelStarted(batch_id="kms-0001", level=2), labeling_service, settings, Published())
    bucket = settings.processing_bucket
    for spec in labeling_service.specs.values():
        output = SageMakerLabelingService.create_request(spec)["OutputConfig"]
        assert output == {"S3OutputPath": f"s3://{bucket}/labeling/out/kms-0001/output", "KmsKeyId": KMS_KEY}
    audit = labeling_service.specs["kms-0001-vehicle-audit"]
    assert (
        audit.label_category_uri == f"s3://{bucket}/labeling/out/kms-0001/vehicle-audit/label-categories.json"
    )
    assert exists(audit.label_category_uri)


def test_without_a_kms_key_the_request_has_none_and_outputs_go_under_batches(labeling_service: Any) -> None:
    create_batch("plain-0001")
    launcher.launch_level(
        LevelStarted(batch_id="plain-0001", level=1), labeling_service, get_settings(), Published()
    )
    output = SageMakerLabelingService.create_request(labeling_service.specs["plain-0001-vehicle"])[
        "OutputConfig"
    ]
    assert output == {"S3OutputPath": f"s3://{get_settings().processing_bucket}/batches/plain-0001/output"}


def test_launch_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "TABLE_NAME": "t",
        "EVENT_BUS_NAME": "b",
        "PROCESSING_BUCKET": "p",
        "FIRST_LEVEL_WORKTEAM_ARN": FIRST_TEAM,
        "SECOND_LEVEL_WORKTEAM_ARN": "",
        "OUTPUT_KMS_KEY_ID": " alias/labels ",
        "OUTPUT_S3_PREFIX": "/runs/",
        "MAX_CONCURRENT_LABELING_JOBS": "7",
    }.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # type: ignore[call-arg]
    assert settings.workteam_for_level(1) == FIRST_TEAM
    assert settings.workteam_for_level(2) is None and settings.workteam_for_level(3) is None
    assert settings.output_kms_key_id == "alias/labels"
    assert settings.processing_uri("b-1", "output") == "s3://p/runs/b-1/output"
    assert settings.max_concurrent_labeling_jobs == 7
    monkeypatch.setenv("OUTPUT_S3_PREFIX", "")
    assert Settings().processing_uri("b-1", "output") == "s3://p/b-1/output"  # type: ignore[call-arg]
    monkeypatch.setenv("FIRST_LEVEL_WORKTEAM_ARN", "first-level")
    with pytest.raises(ValueError, match="work team ARN"):
        Settings()  # type: ignore[call-arg]


def _create_labeling_job_shape() -> Any:
    import botocore.session

    return (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("CreateLabelingJob")
        .input_shape
    )


# --- on the simulated Ground Truth -------------------------------------------------------------------




@pytest.mark.parametrize("own_cap", [0, 1], ids=["service-limit", "own-cap"])
def test_on_a_ground_truth_capped_at_one_job_the_second_waits_for_the_first(
    moto_server_url: str, own_cap: int
) -> None:
    """``own_cap=0``: SageMaker's ResourceLimitExceeded defers; ``1``: our count defers before asking."""
    from smgt.local.groundtruth import SimulatedGroundTruth
    from smgt.local.synthetic import upload_reference_dataset

    settings = settings_with(max_concurrent_labeling_jobs=own_cap)
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}
    s3 = boto3.client("s3", endpoint_url=moto_server_url, **keys)
    for bucket in (settings.input_bucket, settings.processing_bucket):
        if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.create_bucket(Bucket=bucket)
    upload_reference_dataset(s3, settings.input_bucket, prefix="reference", frames=3)
    batch_id = f"gt-cap-{own_cap}"
    create_batch(batch_id)
    event = LevelStarted(batch_id=batch_id, level=1)

    with SimulatedGroundTruth(
        moto_server_url, region=REGION, account_id=ACCOUNT, work_seconds=0.3, max_concurrent_jobs=1
    ) as gt:
        service = SageMakerLabelingService(boto3.client("sagemaker", endpoint_url=gt.url, **keys))
        published = Published()
        expected = "ResourceLimitExceeded" if own_cap == 0 else CAP_REACHED
        with pytest.raises(LaunchDeferred, match=expected):
            launcher.launch_level(event, service, settings, published)
        [first] = published.of(LabelingJobLaunched)
        second = "lane" if first.job_name == "vehicle" else "vehicle"
        waiting = job(batch_id, second)
        assert waiting.status is (JobStatus.LAUNCHING if own_cap == 0 else JobStatus.PENDING)
        assert [j.name for j in service.list_jobs()] == [first.labeling_job_name]
        assert store.get_batch(batch_id).status is BatchStatus.IN_PROGRESS

        deadline = time.monotonic() + 10
        while not service.describe_job(first.labeling_job_name).status.is_terminal:
            assert time.monotonic() < deadline, "the first job never ended"
            time.sleep(0.05)
        assert service.describe_job(first.labeling_job_name).status is LabelingJobStatus.COMPLETED

        launcher.launch_level(event, service, settings, published)
        launched = job(batch_id, second)
        assert launched.status is JobStatus.IN_PROGRESS
        assert launched.labeling_job_arn == service.describe_job(f"{batch_id}-{second}").arn
        assert len(published.of(LabelingJobLaunched)) == 2
        assert published.of(LabelingJobFinished) == []
