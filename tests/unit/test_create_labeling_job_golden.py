"""Golden ``CreateLabelingJob`` requests: every modality, in a few regions, pinned as JSON.

The expected requests live in tests/golden/create_labeling_job/<region>/<Modality>.json. They are
written once by tests/golden/generate_create_labeling_job.py (run by hand, then read and diffed by
a person); this module only compares, so any change to what the launcher sends SageMaker shows up
as a failing test and a reviewed golden diff.

The second half submits each golden request to the simulated Ground Truth (a SageMaker-protocol
server validating against botocore's model and the Ground Truth rules of the docs), with the input
manifest and label category files in S3, and expects it accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from services.common.labeling import BATCH_TAG, JOB_TAG, LabelingJobSpec, SageMakerLabelingService
from services.common.launcher import default_task_description, default_task_keywords, default_task_title
from services.common.modalities import JobRole, ModalitySpec, TaskFamily, all_modalities, get_modality

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "create_labeling_job"
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
ACCOUNT = "123456789012"
BATCH_ID = "golden-0001"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
_ROLE_SUFFIX = {JobRole.LABEL: "", JobRole.ADJUST: "-audit", JobRole.VERIFY: "-verify"}


def parent_job(modality: ModalitySpec) -> str:
    """The first-pass job a chained job reviews (one per task type, so names never collide)."""
    return modality.base.value.lower()


def job_name(modality: ModalitySpec) -> str:
    return parent_job(modality) + _ROLE_SUFFIX[modality.role]


def input_bucket(region: str) -> str:
    return f"smgt-{ACCOUNT}-{region}-input"


def processing_bucket(region: str) -> str:
    return f"smgt-{ACCOUNT}-{region}-processing"


def parent_label_attribute_name(modality: ModalitySpec) -> str:
    return get_modality(modality.base.value).default_label_attribute_name(parent_job(modality))


def parent_output_manifest(modality: ModalitySpec, region: str) -> str:
    parent = f"{BATCH_ID}-{parent_job(modality)}"
    return f"s3://{processing_bucket(region)}/batches/{BATCH_ID}/output/{parent}/manifests/output/output.manifest"


def golden_spec(modality: ModalitySpec, region: str) -> LabelingJobSpec:
    """The job the launcher would start for ``modality`` in ``region`` (first-pass, or chained from one)."""
    own = job_name(modality)
    name = f"{BATCH_ID}-{own}"
    chained = modality.is_chained
    team = "second-level" if chained else "first-level"
    return LabelingJobSpec(
        name=name,
        modality=modality,
        region=region,
        label_attribute_name=modality.default_label_attribute_name(own),
        input_manifest_uri=parent_output_manifest(modality, region)
        if chained
        else f"s3://{input_bucket(region)}/golden/manifests/input.manifest",
        output_path=f"s3://{processing_bucket(region)}/batches/{BATCH_ID}/output",
        label_category_uri=f"s3://{processing_bucket(region)}/batches/{BATCH_ID}/{own}/label-categories.json"
        if chained
        else f"s3://{input_bucket(region)}/golden/categories/{modality.base.value}.json",
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/smgt-LabelingJobRole",
        workteam_arn=f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/{team}",
        task_title=default_task_title(modality, name),
        task_description=default_task_description(
            modality, BATCH_ID, own, parent_job(modality) if chained else None
        ),
        task_keywords=default_task_keywords(modality, own),
        task_time_limit_seconds=3600,
        task_availability_lifetime_seconds=864000,
        max_concurrent_task_count=100,
        tags={BATCH_TAG: BATCH_ID, JOB_TAG: own},
        kms_key_id=f"arn:aws:kms:{region}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    )


def golden_path(modality: ModalitySpec, region: str) -> Path:
    return GOLDEN_DIR / region / f"{modality.modality.value}.json"


CASES = [(m, r) for r in REGIONS for m in all_modalities()]
IDS = [f"{r}-{m.modality.value}" for m, r in CASES]


@pytest.mark.parametrize(("modality", "region"), CASES, ids=IDS)
def test_request_matches_golden(modality: ModalitySpec, region: str) -> None:
    path = golden_path(modality, region)
    assert path.is_file(), (
        f"{path} is missing: run tests/golden/generate_create_labeling_job.py and review the diff"
    )
    expected = json.loads(path.read_text())
    assert SageMakerLabelingService.create_request(golden_spec(modality, region)) == expected


def test_every_golden_file_is_a_known_case() -> None:
    """No stale golden file for a modality or region the registry no longer has."""
    on_disk = {p.relative_to(GOLDEN_DIR).as_posix() for p in GOLDEN_DIR.rglob("*.json")}
    assert on_disk == {golden_path(m, r).relative_to(GOLDEN_DIR).as_posix() for m, r in CASES}


@pytest.mark.parametrize("region", REGIONS)
def test_golden_arns_are_the_documented_ones(region: str) -> None:
    """Spot checks against the AWS docs: UI account 394669845002, PRE/ACS accounts per region."""
    lambda_accounts = {
        "us-east-1": "432418664414",
        "eu-west-1": "568282634449",
        "ap-northeast-1": "477331159723",
    }
    tracking = json.loads(golden_path(get_modality("VideoObjectTracking"), region).read_text())
    htc = tracking["HumanTaskConfig"]
    assert (
        htc["UiConfig"]["HumanTaskUiArn"]
        == f"arn:aws:sagemaker:{region}:394669845002:human-task-ui/VideoObjectTracking"
    )
    assert (
        htc["PreHumanTaskLambdaArn"]
        == f"arn:aws:lambda:{region}:{lambda_accounts[region]}:function:PRE-VideoObjectTracking"
    )
    assert htc["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"].endswith(
        f"{lambda_accounts[region]}:function:ACS-VideoObjectTracking"
    )
    audit = json.loads(golden_path(get_modality("PointCloudObjectTrackingAudit"), region).read_text())
    htc = audit["HumanTaskConfig"]
    assert htc["UiConfig"]["HumanTaskUiArn"].endswith(":human-task-ui/PointCloudObjectTracking")
    assert htc["PreHumanTaskLambdaArn"].endswith(":function:PRE-Adjustment3DPointCloudObjectTracking")
    assert audit["LabelAttributeName"] == "pointcloudobjecttracking-audit-ref"
    assert htc["NumberOfHumanWorkersPerDataObject"] == 1
    assert audit["OutputConfig"]["KmsKeyId"].startswith(f"arn:aws:kms:{region}:")


# --- accepted by the simulated Ground Truth ---------------------------------------------------


def label_categories(modality: ModalitySpec) -> dict[str, Any]:
    """A label category file the task type accepts; chained jobs' copies name the parent's attribute."""
    config: dict[str, Any] = {
        "document-version": "2020-03-01",
        "labels": [{"label": "Car"}, {"label": "Pedestrian"}],
        "instructions": {"shortInstruction": "Label every object.", "fullInstruction": "Label every object."},
    }
    if modality.family is TaskFamily.VIDEO_FRAME:
        config["annotationType"] = "BoundingBox"
    return modality.prepare_label_category_config(config, parent_label_attribute_name(modality))


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_session_token": "testing",
    }




@pytest.fixture(scope="module")
def ground_truths(moto_server_url: str) -> Iterator[dict[str, Any]]:
    """One simulated Ground Truth per region, every case's S3 objects in place (uploaded once)."""
    from smgt.local.groundtruth import Behaviour, SimulatedGroundTruth
    from smgt.local.synthetic import upload_reference_dataset

    s3 = boto3.client("s3", endpoint_url=moto_server_url, region_name="us-east-1", **_keys())
    clients: dict[str, Any] = {}
    simulators = []
    try:
        for region in REGIONS:
            for bucket in (input_bucket(region), processing_bucket(region)):
                s3.create_bucket(Bucket=bucket)
            dataset = upload_reference_dataset(s3, input_bucket(region), prefix="golden", frames=2)
            manifest_key = dataset.manifest_uri.split("/", 3)[3]
            manifest = s3.get_object(Bucket=input_bucket(region), Key=manifest_key)["Body"].read()
            for modality in all_modalities():
                spec = golden_spec(modality, region)
                for uri, body in (
                    (spec.input_manifest_uri, manifest),
                    (spec.label_category_uri, json.dumps(label_categories(modality)).encode()),
                ):
                    bucket, key = uri[len("s3://") :].split("/", 1)
                    s3.put_object(Bucket=bucket, Key=key, Body=body)
            gt = SimulatedGroundTruth(moto_server_url, region=region, account_id=ACCOUNT, work_seconds=0.05)
            simulators.append(gt)
            gt.start(port=0)
            gt.set_behaviour("*", Behaviour.STALL)  # accepted is all we check: no simulated work
            clients[region] = boto3.client("sagemaker", endpoint_url=gt.url, region_name=region, **_keys())
        yield clients
    finally:
        for gt in simulators:
            gt.stop()


@pytest.mark.parametrize(("modality", "region"), CASES, ids=IDS)
def test_golden_request_is_accepted_by_the_simulated_ground_truth(
    ground_truths: dict[str, Any], modality: ModalitySpec, region: str
) -> None:
    sagemaker = ground_truths[region]
    golden = json.loads(golden_path(modality, region).read_text())
    arn = sagemaker.create_labeling_job(**golden)["LabelingJobArn"]
    assert arn == f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{golden['LabelingJobName']}"
    described = sagemaker.describe_labeling_job(LabelingJobName=golden["LabelingJobName"])
    assert described["HumanTaskConfig"] == golden["HumanTaskConfig"]
    assert described["OutputConfig"] == golden["OutputConfig"]
    assert {t["Key"]: t["Value"] for t in described["Tags"]}[BATCH_TAG] == BATCH_ID
