"""The simulated Ground Truth, driven through a real boto3 SageMaker client against moto."""

from __future__ import annotations

import copy
import itertools
import json
import time
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from smgt.local.groundtruth import EVENT_DETAIL_TYPE, Behaviour, SimulatedGroundTruth
from smgt.local.synthetic import (
    adjustment_label_categories,
    upload_reference_dataset,
    vehicle_label_categories,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "smgt-test-input-bucket"
WORK_SECONDS = 0.2


class Stack:
    """The moto endpoint, the simulator, clients, the dataset and the collected events."""

    def __init__(self, aws: str, gt: SimulatedGroundTruth, dataset: Any, queue_url: str) -> None:
        self.aws = aws
        self.gt = gt
        self.dataset = dataset
        self.queue_url = queue_url
        self.s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
        self.sqs = boto3.client("sqs", endpoint_url=aws, region_name=REGION)
        self.sm = boto3.client("sagemaker", endpoint_url=gt.url, region_name=REGION)
        self.events: list[dict[str, Any]] = []

    def read_json(self, uri: str) -> Any:
        bucket, key = uri[len("s3://") :].split("/", 1)
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def read_lines(self, uri: str) -> list[dict[str, Any]]:
        bucket, key = uri[len("s3://") :].split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def put_json(self, key: str, body: Any, lines: bool = False) -> str:
        data = "".join(json.dumps(x) + "\n" for x in body) if lines else json.dumps(body)
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data.encode())
        return f"s3://{BUCKET}/{key}"

    def drain_events(self) -> list[dict[str, Any]]:
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return self.events
            for message in messages:
                self.events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def statuses_for(self, arn: str) -> list[str]:
        return [e["detail"]["LabelingJobStatus"] for e in self.drain_events() if e["resources"] == [arn]]


@pytest.fixture(scope="module")
def stack():
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_SAGEMAKER", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        host, port = moto.get_host_and_port()
        aws = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=aws, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        dataset = upload_reference_dataset(s3, BUCKET, prefix="reference", sequences=2, frames=6)
        sqs = boto3.client("sqs", endpoint_url=aws, region_name=REGION)
        queue_url = sqs.create_queue(QueueName="gt-state-changes")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = boto3.client("events", endpoint_url=aws, region_name=REGION)
        events.put_rule(
            Name="gt-state",
            EventPattern=json.dumps(
                {
                    "source": ["aws.sagemaker"],
                    "detail-type": ["SageMaker Ground Truth Labeling Job State Change"],
                }
            ),
        )
        events.put_targets(Rule="gt-state", Targets=[{"Id": "queue", "Arn": queue_arn}])
        gt = SimulatedGroundTruth(aws, region=REGION, account_id=ACCOUNT, work_seconds=WORK_SECONDS)
        gt.start(port=0)
        try:
            yield Stack(aws, gt, dataset, queue_url)
        finally:
            gt.stop()
            moto.stop()


@pytest.fixture(autouse=True)
def _reset_behaviours(stack):
    stack.gt.clear_behaviours()
    yield
    stack.gt.clear_behaviours()


def tracking_request(
    stack: Stack,
    name: str,
    attr: str = "vehicle-ref",
    categories: str | None = None,
    manifest: str | None = None,
    task: str = "VideoObjectTracking",
) -> dict[str, Any]:
    ui = "VideoObjectTracking" if "Tracking" in task else "VideoObjectDetection"
    return {
        "LabelingJobName": name,
        "LabelAttributeName": attr,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": manifest or stack.dataset.manifest_uri}}
        },
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/GroundTruthRole",
        "LabelCategoryConfigS3Uri": categories or stack.dataset.vehicle_categories_uri,
        "HumanTaskConfig": {
            "WorkteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/labelers",
            "UiConfig": {"HumanTaskUiArn": f"arn:aws:sagemaker:{REGION}:394669845002:human-task-ui/{ui}"},
            "PreHumanTaskLambdaArn": f"arn:aws:lambda:{REGION}:432418664414:function:PRE-{task}",
            "TaskKeywords": ["Video Frame", "Tracking"],
            "TaskTitle": "Track vehicles",
            "TaskDescription": "Draw boxes around vehicles and track them",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 3600,
            "TaskAvailabilityLifetimeInSeconds": 864000,
            "MaxConcurrentTaskCount": 100,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": f"arn:aws:lambda:{REGION}:432418664414:function:ACS-{task}"
            },
        },
        "Tags": [{"Key": "batch", "Value": "b-1"}],
    }


def wait_for(stack: Stack, name: str, statuses: set[str], timeout: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = stack.sm.describe_labeling_job(LabelingJobName=name)
        if job["LabelingJobStatus"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {job['LabelingJobStatus']}, wanted {statuses}")
        time.sleep(0.05)


def wait_events(stack: Stack, arn: str, wanted: list[str], timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = stack.statuses_for(arn)
        if all(s in seen for s in wanted) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def completed_vehicle_job(stack):
    stack.sm.create_labeling_job(**tracking_request(stack, "Vehicle-Track-1"))
    return wait_for(stack, "Vehicle-Track-1", {"Completed", "Failed"})


# ---------------------------------------------------------------------------------------------
# Happy path and output formats
# ---------------------------------------------------------------------------------------------


def test_tracking_job_completes_with_real_describe_shape(stack, completed_vehicle_job):
    job = completed_vehicle_job
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["LabelingJobArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/vehicle-track-1"
    assert job["LabelingJobName"] == "Vehicle-Track-1"
    assert job["LabelCounters"] == {
        "TotalLabeled": 2,
        "HumanLabeled": 2,
        "MachineLabeled": 0,
        "FailedNonRetryableError": 0,
        "Unlabeled": 0,
    }
    assert job["LabelingJobOutput"] == {
        "OutputDatasetS3Uri": f"s3://{BUCKET}/output/Vehicle-Track-1/manifests/output/output.manifest"
    }
    assert job["Tags"] == [{"Key": "batch", "Value": "b-1"}]
    assert job["LabelAttributeName"] == "vehicle-ref"
    assert job["LabelCategoryConfigS3Uri"] == stack.dataset.vehicle_categories_uri
    assert job["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 1
    assert job["JobReferenceCode"]
    assert job["CreationTime"] <= job["LastModifiedTime"]
    assert "FailureReason" not in job


def test_output_manifest_and_seqlabel_have_the_real_shapes(stack, completed_vehicle_job):
    lines = stack.read_lines(completed_vehicle_job["LabelingJobOutput"]["OutputDatasetS3Uri"])
    assert [line["source-ref"] for line in lines] == stack.dataset.sequence_uris
    labels = [lab["label"] for lab in vehicle_label_categories()["labels"]]
    for index, line in enumerate(lines):
        assert line["vehicle-ref"] == (
            f"s3://{BUCKET}/output/Vehicle-Track-1/annotations/"
            f"consolidated-annotation/output/{index}/SeqLabel.json"
        )
        meta = line["vehicle-ref-metadata"]
        assert meta["job-name"] == "labeling-job/Vehicle-Track-1"
        assert meta["type"] == "groundtruth/video-object-tracking"
        assert meta["human-annotated"] == "yes"
        assert "creation-date" in meta and "adjustment-status" not in meta
        assert meta["class-map"] and all(labels[int(k)] == v for k, v in meta["class-map"].items())
        seq_label = stack.read_json(line["vehicle-ref"])
        sequence = stack.read_json(line["source-ref"])
        frames = seq_label["tracking-annotations"]
        assert [f["frame"] for f in frames] == [f["frame"] for f in sequence["frames"]]
        assert [f["frame-no"] for f in frames] == [f["frame-no"] for f in sequence["frames"]]
        tracks: dict[str, list[dict[str, Any]]] = {}
        for frame in frames:
            assert set(frame["frame-attributes"]) <= {"weather"}
            for box in frame["annotations"]:
                assert {
                    "height",
                    "width",
                    "top",
                    "left",
                    "class-id",
                    "label-category-attributes",
                    "object-id",
                    "object-name",
                } <= set(box)
                assert box["class-id"] in meta["class-map"]
                assert box["object-name"].split(":")[0] == meta["class-map"][box["class-id"]]
                assert 0 <= box["left"] and box["left"] + box["width"] <= 320
                assert 0 <= box["top"] and box["top"] + box["height"] <= 180
                tracks.setdefault(box["object-id"], []).append(box)
        assert len(tracks) >= 2
        for boxes in tracks.values():  # smooth motion, stable size and class
            assert len({(b["width"], b["height"], b["class-id"], b["object-name"]) for b in boxes}) == 1
            for a, b in itertools.pairwise(boxes):
                assert abs(a["left"] - b["left"]) <= 16 and abs(a["top"] - b["top"]) <= 4
    responses = stack.s3.list_objects_v2(
        Bucket=BUCKET, Prefix="output/Vehicle-Track-1/annotations/worker-response/iteration-1/0/"
    )["Contents"]
    answer = stack.read_json(f"s3://{BUCKET}/{responses[0]['Key']}")["answers"][0]
    assert {"acceptanceTime", "submissionTime", "workerId", "answerContent", "timeSpentInSeconds"} <= set(
        answer
    )


def test_output_is_deterministic_per_job_name(stack, completed_vehicle_job):
    first = stack.read_json(
        f"s3://{BUCKET}/output/Vehicle-Track-1/annotations/consolidated-annotation/output/0/SeqLabel.json"
    )
    stack.sm.create_labeling_job(**tracking_request(stack, "Vehicle-Track-1-Again"))
    wait_for(stack, "Vehicle-Track-1-Again", {"Completed"})
    other = stack.read_json(
        f"s3://{BUCKET}/output/Vehicle-Track-1-Again/annotations/consolidated-annotation/output/0/SeqLabel.json"
    )
    assert other != first  # a different seed
    from smgt.local.groundtruth import generate_video_annotations

    sequence = stack.read_json(stack.dataset.sequence_uris[0])
    again, _ = generate_video_annotations(
        "Vehicle-Track-1", 0, vehicle_label_categories(), sequence["frames"], 320, 180, tracking=True
    )
    assert again == first  # same job name and data object: the same annotations


def test_polyline_lane_job_writes_polylines(stack):
    request = tracking_request(
        stack, "lane-track-1", attr="lane-ref", categories=stack.dataset.lane_categories_uri
    )
    stack.sm.create_labeling_job(**request)
    job = wait_for(stack, "lane-track-1", {"Completed", "Failed"})
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    line = stack.read_lines(job["LabelingJobOutput"]["OutputDatasetS3Uri"])[0]
    seq_label = stack.read_json(line["lane-ref"])
    frame = seq_label["tracking-annotations"][0]
    assert "annotations" not in frame and frame["polylines"]
    for polyline in frame["polylines"]:
        assert len(polyline["vertices"]) >= 2
        assert all(
            set(v) == {"x", "y"} and 0 <= v["x"] < 320 and 0 <= v["y"] < 180 for v in polyline["vertices"]
        )
        assert {"class-id", "object-id", "object-name", "label-category-attributes"} <= set(polyline)


def test_adjustment_job_chained_from_parent_output(stack, completed_vehicle_job):
    parent_manifest = completed_vehicle_job["LabelingJobOutput"]["OutputDatasetS3Uri"]
    categories = stack.put_json(
        "audit/vehicle-audit.json", adjustment_label_categories(vehicle_label_categories(), "vehicle-ref")
    )
    request = tracking_request(
        stack,
        "vehicle-audit-1",
        attr="vehicle-audit-ref",
        categories=categories,
        manifest=parent_manifest,
        task="AdjustmentVideoObjectTracking",
    )
    stack.sm.create_labeling_job(**request)
    job = wait_for(stack, "vehicle-audit-1", {"Completed", "Failed"})
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    parent_lines = stack.read_lines(parent_manifest)
    lines = stack.read_lines(job["LabelingJobOutput"]["OutputDatasetS3Uri"])
    assert len(lines) == len(parent_lines)
    for parent_line, line in zip(parent_lines, lines):
        # the parent's label stays intact, the adjusted one is added
        assert line["vehicle-ref"] == parent_line["vehicle-ref"]
        assert line["vehicle-ref-metadata"] == parent_line["vehicle-ref-metadata"]
        meta = line["vehicle-audit-ref-metadata"]
        assert meta["adjustment-status"] == "adjusted"
        assert meta["type"] == "groundtruth/video-object-tracking"
        assert meta["job-name"] == "labeling-job/vehicle-audit-1"
        assert meta["class-map"] == parent_line["vehicle-ref-metadata"]["class-map"]
        parent = stack.read_json(parent_line["vehicle-ref"])
        adjusted = stack.read_json(line["vehicle-audit-ref"])
        assert "/vehicle-audit-1/annotations/consolidated-annotation/output/" in line["vehicle-audit-ref"]
        assert adjusted != parent
        ids = lambda s: {a["object-id"] for f in s["tracking-annotations"] for a in f["annotations"]}
        assert ids(adjusted) == ids(parent)
        for pf, af in zip(parent["tracking-annotations"], adjusted["tracking-annotations"]):
            for pa, aa in zip(pf["annotations"], af["annotations"]):
                assert abs(pa["left"] - aa["left"]) <= 3 and abs(pa["top"] - aa["top"]) <= 3


def test_adjustment_without_parent_attribute_fails_the_job(stack):
    categories = stack.put_json(
        "audit/orphan.json", adjustment_label_categories(vehicle_label_categories(), "no-such-ref")
    )
    request = tracking_request(
        stack,
        "orphan-audit",
        attr="orphan-audit-ref",
        categories=categories,
        task="AdjustmentVideoObjectTracking",
    )
    stack.sm.create_labeling_job(**request)
    job = wait_for(stack, "orphan-audit", {"Completed", "Failed"})
    assert job["LabelingJobStatus"] == "Failed"
    assert "no-such-ref" in job["FailureReason"]


# ---------------------------------------------------------------------------------------------
# Validation, answered with the service's own error codes
# ---------------------------------------------------------------------------------------------


def _bad(stack: Stack, name: str, mutate) -> str:
    request = tracking_request(stack, name)
    mutate(request)
    with pytest.raises(ClientError) as excinfo:
        stack.sm.create_labeling_job(**request)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error_code(excinfo) + ": " + excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "name, mutate, expected",
    [
        ("bad_name", lambda r: None, "regular expression pattern"),
        ("-leading-dash", lambda r: None, "regular expression pattern"),
        ("x" * 64, lambda r: None, "length less than or equal to 63"),
        ("no-ref", lambda r: r.update(LabelAttributeName="vehicle"), "-ref"),
        ("meta", lambda r: r.update(LabelAttributeName="vehicle-metadata"), "-metadata"),
        (
            "two-workers",
            lambda r: r["HumanTaskConfig"].update(NumberOfHumanWorkersPerDataObject=2),
            "must be 1",
        ),
        (
            "no-manifest",
            lambda r: r["InputConfig"]["DataSource"]["S3DataSource"].update(
                ManifestS3Uri=f"s3://{BUCKET}/missing/input.manifest"
            ),
            "input manifest",
        ),
        (
            "no-categories",
            lambda r: r.update(LabelCategoryConfigS3Uri=f"s3://{BUCKET}/missing/cats.json"),
            "label category",
        ),
        (
            "bad-uri",
            lambda r: r["OutputConfig"].update(S3OutputPath="https:/nope"),
            "outputConfig.s3OutputPath",
        ),
        (
            "too-many-tasks",
            lambda r: r["HumanTaskConfig"].update(MaxConcurrentTaskCount=5001),
            "less than or equal to 5000",
        ),
        (
            "task-time",
            lambda r: r["HumanTaskConfig"].update(TaskTimeLimitInSeconds=2_592_001),
            "TaskTimeLimitInSeconds",
        ),
        (
            "public-crowd",
            lambda r: r["HumanTaskConfig"].update(
                WorkteamArn=f"arn:aws:sagemaker:{REGION}:394669845002:workteam/public-crowd/default"
            ),
            "private or vendor",
        ),
        (
            "adjust-no-audit",
            lambda r: r["HumanTaskConfig"].update(
                PreHumanTaskLambdaArn=f"arn:aws:lambda:{REGION}:432418664414:function:PRE-AdjustmentVideoObjectTracking"
            ),
            "auditLabelAttributeName",
        ),
        (
            "ui-only-no-ref",
            lambda r: (
                r["HumanTaskConfig"].pop("PreHumanTaskLambdaArn"),
                r.update(LabelAttributeName="vehicle"),
            ),
            "-ref",
        ),
    ],
)
def test_create_validation_errors(stack, name, mutate, expected):
    message = _bad(stack, name, mutate)
    assert message.startswith("ValidationException: "), message
    assert expected in message
    with pytest.raises(ClientError) as excinfo:
        stack.sm.describe_labeling_job(LabelingJobName=name[:63] if "_" not in name else "bad-name")
    assert error_code(excinfo) in ("ResourceNotFound", "ValidationException")


def test_adjustment_must_use_a_different_label_attribute_name(stack):
    categories = stack.put_json(
        "audit/same.json", adjustment_label_categories(vehicle_label_categories(), "vehicle-ref")
    )

    def mutate(r):
        r.update(LabelCategoryConfigS3Uri=categories)
        r["HumanTaskConfig"]["PreHumanTaskLambdaArn"] = (
            f"arn:aws:lambda:{REGION}:432418664414:function:PRE-AdjustmentVideoObjectTracking"
        )

    assert "different LabelAttributeName" in _bad(stack, "same-attr", mutate)


def test_duplicate_name_is_resource_in_use_case_insensitively(stack, completed_vehicle_job):
    with pytest.raises(ClientError) as excinfo:
        stack.sm.create_labeling_job(**tracking_request(stack, "vehicle-track-1"))
    assert error_code(excinfo) == "ResourceInUse"
    assert (
        stack.sm.describe_labeling_job(LabelingJobName="VEHICLE-TRACK-1")["LabelingJobName"]
        == "Vehicle-Track-1"
    )


def test_unknown_job_is_resource_not_found(stack):
    for call in (stack.sm.describe_labeling_job, stack.sm.stop_labeling_job):
        with pytest.raises(ClientError) as excinfo:
            call(LabelingJobName="never-created")
        assert error_code(excinfo) == "ResourceNotFound"


def test_stopping_a_finished_job_is_a_validation_error(stack, completed_vehicle_job):
    with pytest.raises(ClientError) as excinfo:
        stack.sm.stop_labeling_job(LabelingJobName="Vehicle-Track-1")
    assert error_code(excinfo) == "ValidationException"


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


def test_fail_mode(stack):
    stack.gt.set_behaviour("doomed-*", Behaviour.FAIL, failure_reason="ClientError: the workers gave up")
    stack.sm.create_labeling_job(**tracking_request(stack, "Doomed-1"))
    job = wait_for(stack, "Doomed-1", {"Completed", "Failed"})
    assert job["LabelingJobStatus"] == "Failed"
    assert job["FailureReason"] == "ClientError: the workers gave up"
    assert "LabelingJobOutput" not in job


def test_stall_then_stop(stack):
    stack.gt.set_behaviour("stuck-*", Behaviour.STALL)
    stack.sm.create_labeling_job(**tracking_request(stack, "stuck-1"))
    wait_for(stack, "stuck-1", {"InProgress"})
    time.sleep(WORK_SECONDS * 3)
    assert stack.sm.describe_labeling_job(LabelingJobName="stuck-1")["LabelingJobStatus"] == "InProgress"
    stack.sm.stop_labeling_job(LabelingJobName="stuck-1")
    job = wait_for(stack, "stuck-1", {"Stopped"})
    assert job["LabelCounters"]["Unlabeled"] == 2 and job["LabelCounters"]["TotalLabeled"] == 0
    seen = wait_events(stack, job["LabelingJobArn"], ["InProgress", "Stopping", "Stopped"])
    assert seen[-2:] == ["Stopping", "Stopped"]


def test_slow_mode_set_over_http(stack):
    body = json.dumps({"pattern": "SLOW-*", "mode": "slow", "delay_seconds": 1.0}).encode()
    req = urllib.request.Request(
        f"{stack.gt.url}/_simulator/behaviour",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as response:
        assert json.load(response)["rules"][0]["mode"] == "slow"
    started = time.monotonic()
    stack.sm.create_labeling_job(**tracking_request(stack, "slow-1"))
    wait_for(stack, "slow-1", {"InProgress"})
    time.sleep(WORK_SECONDS * 2)
    assert stack.sm.describe_labeling_job(LabelingJobName="slow-1")["LabelingJobStatus"] == "InProgress"
    wait_for(stack, "slow-1", {"Completed"})
    assert time.monotonic() - started >= 1.0


def test_control_api_health_and_bad_requests(stack):
    with urllib.request.urlopen(f"{stack.gt.url}/_simulator/health") as response:
        assert json.load(response)["status"] == "ok"
    req = urllib.request.Request(
        f"{stack.gt.url}/_simulator/behaviour", data=b'{"pattern": "x", "mode": "explode"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(req)
    assert excinfo.value.code == 400


def test_resource_limit_exceeded_when_capped(stack):
    capped = SimulatedGroundTruth(
        stack.aws, region=REGION, account_id=ACCOUNT, work_seconds=WORK_SECONDS, max_concurrent_jobs=1
    )
    capped.start(port=0)
    try:
        capped.set_behaviour("*", Behaviour.STALL)
        sm = boto3.client("sagemaker", endpoint_url=capped.url, region_name=REGION)
        sm.create_labeling_job(**tracking_request(stack, "capped-1"))
        with pytest.raises(ClientError) as excinfo:
            sm.create_labeling_job(**tracking_request(stack, "capped-2"))
        assert error_code(excinfo) == "ResourceLimitExceeded"
        sm.stop_labeling_job(LabelingJobName="capped-1")
        deadline = time.monotonic() + 5
        while sm.describe_labeling_job(LabelingJobName="capped-1")["LabelingJobStatus"] != "Stopped":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sm.create_labeling_job(**tracking_request(stack, "capped-2"))
        sm.stop_labeling_job(LabelingJobName="capped-2")
    finally:
        capped.stop()


# ---------------------------------------------------------------------------------------------
# Events and listing
# ---------------------------------------------------------------------------------------------


def test_state_change_events_reach_a_default_bus_rule(stack, completed_vehicle_job):
    arn = completed_vehicle_job["LabelingJobArn"]
    seen = wait_events(stack, arn, ["InProgress", "Completed"])
    assert seen == ["InProgress", "Completed"]
    event = [e for e in stack.events if e["resources"] == [arn]][-1]
    assert event["source"] == "aws.sagemaker"
    assert event["detail-type"] == EVENT_DETAIL_TYPE
    assert event["detail"] == {"LabelingJobStatus": "Completed"}
    assert event["region"] == REGION


def test_emit_resends_the_last_event(stack, completed_vehicle_job):
    arn = completed_vehicle_job["LabelingJobArn"]
    before = wait_events(stack, arn, ["Completed"]).count("Completed")
    req = urllib.request.Request(
        f"{stack.gt.url}/_simulator/emit",
        method="POST",
        data=json.dumps({"LabelingJobName": "vehicle-track-1"}).encode(),
    )
    with urllib.request.urlopen(req) as response:
        assert json.loads(json.load(response)["emitted"]["Detail"]) == {"LabelingJobStatus": "Completed"}
    deadline = time.monotonic() + 5
    while stack.statuses_for(arn).count("Completed") < before + 1:
        assert time.monotonic() < deadline, "duplicate event did not arrive"
        time.sleep(0.05)


def test_list_labeling_jobs(stack, completed_vehicle_job):
    summaries = stack.sm.list_labeling_jobs(
        NameContains="VEHICLE-TRACK", StatusEquals="Completed", SortBy="Name", SortOrder="Ascending"
    )["LabelingJobSummaryList"]
    names = [s["LabelingJobName"] for s in summaries]
    assert "Vehicle-Track-1" in names and names == sorted(names, key=str.lower)
    summary = summaries[names.index("Vehicle-Track-1")]
    assert summary["LabelingJobOutput"]["OutputDatasetS3Uri"].endswith("/manifests/output/output.manifest")
    assert summary["WorkteamArn"].endswith("workteam/private-crowd/labelers")
    page = stack.sm.list_labeling_jobs(MaxResults=1)
    assert len(page["LabelingJobSummaryList"]) == 1 and "NextToken" in page
    rest = stack.sm.list_labeling_jobs(MaxResults=100, NextToken=page["NextToken"])["LabelingJobSummaryList"]
    assert page["LabelingJobSummaryList"][0]["LabelingJobName"] not in [s["LabelingJobName"] for s in rest]


def test_endpoint_from_environment(stack, monkeypatch, completed_vehicle_job):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", stack.gt.url)
    client = boto3.session.Session().client("sagemaker", region_name=REGION)
    assert client.describe_labeling_job(LabelingJobName="Vehicle-Track-1")["LabelingJobStatus"] == "Completed"


def test_request_copy_is_not_shared(stack, completed_vehicle_job):
    described = stack.sm.describe_labeling_job(LabelingJobName="Vehicle-Track-1")
    mutated = copy.deepcopy(described)
    mutated["HumanTaskConfig"]["TaskTitle"] = "changed"
    assert (
        stack.sm.describe_labeling_job(LabelingJobName="Vehicle-Track-1")["HumanTaskConfig"]["TaskTitle"]
        == "Track vehicles"
    )
