"""The Ground Truth task type registry: ARNs per region, label attribute rules, label category files."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from services.common.modalities import (
    SUPPORTED_REGIONS,
    JobRole,
    Modality,
    TaskFamily,
    UnknownModality,
    UnsupportedRegion,
    all_modalities,
    get_modality,
)

ALL_NAMES = [m.value for m in Modality]

BASES = [
    "VideoObjectTracking",
    "VideoObjectDetection",
    "PointCloudObjectDetection",
    "PointCloudObjectTracking",
    "PointCloudSemanticSegmentation",
]


def _label_config() -> dict:
    return {
        "documentVersion": "2020-03-01",
        "labels": [
            {
                "label": "Car",
                "categoryAttributes": [{"name": "occluded", "type": "string", "enum": ["y", "n"]}],
            },
            {"label": "Pedestrian", "editsAllowed": "any"},
        ],
        "annotationType": "Polyline",
        "instructions": {"shortInstruction": "Trace lanes", "fullInstruction": "<p>Trace every lane</p>"},
    }


# -- registry completeness ---------------------------------------------------------------------------


def test_there_are_twelve_supported_regions():
    assert len(SUPPORTED_REGIONS) == 12
    assert set(SUPPORTED_REGIONS) == {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "ca-central-1",
        "eu-west-1",
        "eu-west-2",
        "eu-central-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
    }


def test_every_base_has_a_label_an_audit_and_a_verification_modality():
    names = set(ALL_NAMES)
    for base in BASES:
        assert {base, f"{base}Audit", f"{base}Verification"} <= names
    assert len(all_modalities()) == 3 * len(BASES) == len(Modality)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("region", SUPPORTED_REGIONS)
def test_every_modality_resolves_in_every_supported_region(name, region):
    spec = get_modality(name)
    ui, pre, acs = spec.ui_arn(region), spec.pre_lambda_arn(region), spec.acs_lambda_arn(region)
    assert ui.startswith(f"arn:aws:sagemaker:{region}:394669845002:human-task-ui/")
    assert pre.startswith(f"arn:aws:lambda:{region}:") and ":function:PRE-" in pre
    assert acs.startswith(f"arn:aws:lambda:{region}:") and ":function:ACS-" in acs
    # PRE and ACS functions live in the same Ground Truth account of a region.
    assert pre.split(":")[4] == acs.split(":")[4]


@pytest.mark.parametrize("spec", all_modalities(), ids=lambda s: s.modality.value)
def test_roles_bases_and_chaining_follow_the_name(spec):
    name = spec.modality.value
    if name.endswith("Verification"):
        assert spec.role is JobRole.VERIFY and spec.base.value == name.removesuffix("Verification")
    elif name.endswith("Audit"):
        assert spec.role is JobRole.ADJUST and spec.base.value == name.removesuffix("Audit")
    else:
        assert spec.role is JobRole.LABEL and spec.base is spec.modality
    assert spec.is_chained == (spec.role is not JobRole.LABEL)
    assert spec.one_worker_per_object
    assert spec.family is (TaskFamily.VIDEO_FRAME if name.startswith("Video") else TaskFamily.POINT_CLOUD)


@pytest.mark.parametrize("spec", all_modalities(), ids=lambda s: s.modality.value)
def test_audit_and_verification_use_the_base_ui_and_the_adjustment_lambdas(spec):
    base = get_modality(spec.base)
    assert spec.ui_arn("us-west-2") == base.ui_arn("us-west-2")
    if spec.is_chained:
        assert spec.task_type == f"Adjustment{base.task_type}"
        assert spec.pre_lambda_arn("eu-west-1").endswith(f":function:PRE-Adjustment{base.task_type}")


def test_time_limits_are_the_documented_video_and_point_cloud_maxima():
    for spec in all_modalities():
        assert spec.max_task_time_limit_seconds == 604_800  # 7 days
        assert spec.max_task_availability_lifetime_seconds == 2_592_000  # 30 days


def test_specs_are_immutable():
    spec = get_modality("VideoObjectTracking")
    with pytest.raises(ValidationError):
        spec.task_type = "BoundingBox"  # type: ignore[misc]


# -- golden ARNs, copied from the AWS docs ------------------------------------------------------------

GOLDEN = [
    # (modality, region, ui, pre, acs)
    (
        "VideoObjectTracking",
        "us-east-1",
        "arn:aws:sagemaker:us-east-1:394669845002:human-task-ui/VideoObjectTracking",
        "arn:aws:lambda:us-east-1:432418664414:function:PRE-VideoObjectTracking",
        "arn:aws:lambda:us-east-1:432418664414:function:ACS-VideoObjectTracking",
    ),
    (
        "VideoObjectTrackingAudit",
        "eu-central-1",
        "arn:aws:sagemaker:eu-central-1:394669845002:human-task-ui/VideoObjectTracking",
        "arn:aws:lambda:eu-central-1:203001061592:function:PRE-AdjustmentVideoObjectTracking",
        "arn:aws:lambda:eu-central-1:203001061592:function:ACS-AdjustmentVideoObjectTracking",
    ),
    (
        "VideoObjectDetectionVerification",
        "ca-central-1",
        "arn:aws:sagemaker:ca-central-1:394669845002:human-task-ui/VideoObjectDetection",
        "arn:aws:lambda:ca-central-1:918755190332:function:PRE-AdjustmentVideoObjectDetection",
        "arn:aws:lambda:ca-central-1:918755190332:function:ACS-AdjustmentVideoObjectDetection",
    ),
    (
        "PointCloudObjectDetection",
        "us-west-2",
        "arn:aws:sagemaker:us-west-2:394669845002:human-task-ui/PointCloudObjectDetection",
        "arn:aws:lambda:us-west-2:081040173940:function:PRE-3DPointCloudObjectDetection",
        "arn:aws:lambda:us-west-2:081040173940:function:ACS-3DPointCloudObjectDetection",
    ),
    (
        "PointCloudObjectTrackingAudit",
        "ap-northeast-1",
        "arn:aws:sagemaker:ap-northeast-1:394669845002:human-task-ui/PointCloudObjectTracking",
        "arn:aws:lambda:ap-northeast-1:477331159723:function:PRE-Adjustment3DPointCloudObjectTracking",
        "arn:aws:lambda:ap-northeast-1:477331159723:function:ACS-Adjustment3DPointCloudObjectTracking",
    ),
    (
        "PointCloudSemanticSegmentationAudit",
        "ap-southeast-2",
        "arn:aws:sagemaker:ap-southeast-2:394669845002:human-task-ui/PointCloudSemanticSegmentation",
        "arn:aws:lambda:ap-southeast-2:454466003867:function:PRE-Adjustment3DPointCloudSemanticSegmentation",
        "arn:aws:lambda:ap-southeast-2:454466003867:function:ACS-Adjustment3DPointCloudSemanticSegmentation",
    ),
    (
        "PointCloudSemanticSegmentation",
        "ap-south-1",
        "arn:aws:sagemaker:ap-south-1:394669845002:human-task-ui/PointCloudSemanticSegmentation",
        "arn:aws:lambda:ap-south-1:565803892007:function:PRE-3DPointCloudSemanticSegmentation",
        "arn:aws:lambda:ap-south-1:565803892007:function:ACS-3DPointCloudSemanticSegmentation",
    ),
    (
        "VideoObjectDetection",
        "eu-west-2",
        "arn:aws:sagemaker:eu-west-2:394669845002:human-task-ui/VideoObjectDetection",
        "arn:aws:lambda:eu-west-2:487402164563:function:PRE-VideoObjectDetection",
        "arn:aws:lambda:eu-west-2:487402164563:function:ACS-VideoObjectDetection",
    ),
    (
        "PointCloudObjectDetectionVerification",
        "ap-northeast-2",
        "arn:aws:sagemaker:ap-northeast-2:394669845002:human-task-ui/PointCloudObjectDetection",
        "arn:aws:lambda:ap-northeast-2:845288260483:function:PRE-Adjustment3DPointCloudObjectDetection",
        "arn:aws:lambda:ap-northeast-2:845288260483:function:ACS-Adjustment3DPointCloudObjectDetection",
    ),
    (
        "VideoObjectTracking",
        "ap-southeast-1",
        "arn:aws:sagemaker:ap-southeast-1:394669845002:human-task-ui/VideoObjectTracking",
        "arn:aws:lambda:ap-southeast-1:377565633583:function:PRE-VideoObjectTracking",
        "arn:aws:lambda:ap-southeast-1:377565633583:function:ACS-VideoObjectTracking",
    ),
    (
        "VideoObjectTracking",
        "us-east-2",
        "arn:aws:sagemaker:us-east-2:394669845002:human-task-ui/VideoObjectTracking",
        "arn:aws:lambda:us-east-2:266458841044:function:PRE-VideoObjectTracking",
        "arn:aws:lambda:us-east-2:266458841044:function:ACS-VideoObjectTracking",
    ),
    (
        "VideoObjectTrackingAudit",
        "eu-west-1",
        "arn:aws:sagemaker:eu-west-1:394669845002:human-task-ui/VideoObjectTracking",
        "arn:aws:lambda:eu-west-1:568282634449:function:PRE-AdjustmentVideoObjectTracking",
        "arn:aws:lambda:eu-west-1:568282634449:function:ACS-AdjustmentVideoObjectTracking",
    ),
]


@pytest.mark.parametrize(
    ("name", "region", "ui", "pre", "acs"), GOLDEN, ids=lambda v: v if "arn" not in v else ""
)
def test_golden_arns_match_the_aws_documentation(name, region, ui, pre, acs):
    spec = get_modality(name)
    assert spec.ui_arn(region) == ui
    assert spec.pre_lambda_arn(region) == pre
    assert spec.acs_lambda_arn(region) == acs


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["BoundingBox", "videoobjecttracking", "VideoObjectTrackingAdjust", "", "Audit"]
)
def test_unknown_modality_raises_naming_the_value_and_the_allowed_ones(name):
    with pytest.raises(UnknownModality) as info:
        get_modality(name)
    message = str(info.value)
    assert repr(name) in message
    assert "VideoObjectTrackingAudit" in message and "PointCloudSemanticSegmentationVerification" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("region", ["us-west-1", "sa-east-1", "cn-north-1", "US-EAST-1", ""])
@pytest.mark.parametrize("method", ["ui_arn", "pre_lambda_arn", "acs_lambda_arn"])
def test_unsupported_region_raises_naming_the_region_and_the_supported_ones(region, method):
    spec = get_modality("VideoObjectTracking")
    with pytest.raises(UnsupportedRegion) as info:
        getattr(spec, method)(region)
    message = str(info.value)
    assert repr(region) in message
    assert "us-east-1" in message and "ap-southeast-2" in message
    assert isinstance(info.value, ValueError)


# -- label attribute names ---------------------------------------------------------------------------

REF_REQUIRED = [n for n in ALL_NAMES if not n.startswith("PointCloudObjectDetection")]


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n.startswith("Video")])
def test_video_frame_jobs_and_their_audits_require_the_ref_suffix(name):
    spec = get_modality(name)
    assert spec.label_attribute_suffix == "-ref"
    assert spec.validate_label_attribute_name("vehicle-ref") == []
    problems = spec.validate_label_attribute_name("vehicle")
    assert len(problems) == 1 and "-ref" in problems[0] and "'vehicle'" in problems[0]


@pytest.mark.parametrize("name", REF_REQUIRED)
def test_ref_suffix_is_required_where_aws_lists_the_task_type(name):
    assert get_modality(name).label_attribute_suffix == "-ref"


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n.startswith("PointCloudObjectDetection")])
def test_point_cloud_object_detection_refuses_the_ref_suffix(name):
    spec = get_modality(name)
    assert spec.label_attribute_suffix is None
    assert spec.validate_label_attribute_name("cuboids") == []
    assert any("must not end with '-ref'" in p for p in spec.validate_label_attribute_name("cuboids-ref"))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_metadata_suffix_is_always_refused(name):
    problems = get_modality(name).validate_label_attribute_name("labels-metadata")
    assert any("-metadata" in p for p in problems)


@pytest.mark.parametrize(
    "bad",
    ["-lead-ref", "trail-", "under_score-ref", "space s-ref", "dot.ted-ref", "", "a" * 124 + "-ref"],
)
def test_names_outside_the_sagemaker_pattern_are_refused(bad):
    problems = get_modality("VideoObjectTracking").validate_label_attribute_name(bad)
    assert problems and any("pattern" in p or "maximum is 127" in p for p in problems)


def test_names_longer_than_127_characters_are_refused_even_when_the_pattern_matches():
    name = "a" * 124 + "-ref"  # 128 characters; the pattern counts "-r" as one step
    problems = get_modality("VideoObjectTracking").validate_label_attribute_name(name)
    assert problems == [f"label attribute name {name!r} is 128 characters long; the maximum is 127"]


@pytest.mark.parametrize("good", ["a-ref", "A1--b2-ref", "x" * 123 + "-ref"])
def test_names_inside_the_pattern_are_accepted(good):
    assert get_modality("VideoObjectTracking").validate_label_attribute_name(good) == []


def test_audit_label_attribute_name_must_differ_from_the_parent():
    audit = get_modality("VideoObjectTrackingAudit")
    problems = audit.validate_label_attribute_name("vehicle-ref", parent_label_attribute_name="vehicle-ref")
    assert len(problems) == 1 and "parent" in problems[0]
    assert (
        audit.validate_label_attribute_name("vehicle-audit-ref", parent_label_attribute_name="vehicle-ref")
        == []
    )


def test_default_label_attribute_name_adds_the_suffix_only_when_required():
    assert get_modality("VideoObjectTracking").default_label_attribute_name("vehicle") == "vehicle-ref"
    assert (
        get_modality("VideoObjectTrackingAudit").default_label_attribute_name("vehicle-audit")
        == "vehicle-audit-ref"
    )
    assert get_modality("VideoObjectTracking").default_label_attribute_name("lane-ref") == "lane-ref"
    assert get_modality("PointCloudObjectDetection").default_label_attribute_name("cuboids") == "cuboids"


@pytest.mark.parametrize("spec", all_modalities(), ids=lambda s: s.modality.value)
def test_default_label_attribute_name_passes_validation(spec):
    job_name = "a" * 63  # the longest LabelingJobName
    assert spec.validate_label_attribute_name(spec.default_label_attribute_name(job_name)) == []


# -- label category configuration --------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n.endswith("Audit")])
def test_audit_config_gets_the_parent_label_attribute_name_and_keeps_the_annotation_type(name):
    config = _label_config()
    prepared = get_modality(name).prepare_label_category_config(config, "vehicle-ref")
    assert prepared["auditLabelAttributeName"] == "vehicle-ref"
    assert prepared["annotationType"] == "Polyline"
    assert prepared["labels"] == config["labels"]  # adjustment leaves editsAllowed as the user set it
    assert prepared["instructions"] == config["instructions"]


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n.endswith("Verification")])
def test_verification_config_locks_every_label_and_names_the_parent(name):
    prepared = get_modality(name).prepare_label_category_config(_label_config(), "vehicle-ref")
    assert prepared["auditLabelAttributeName"] == "vehicle-ref"
    assert [entry["editsAllowed"] for entry in prepared["labels"]] == ["none", "none"]
    assert [entry["label"] for entry in prepared["labels"]] == ["Car", "Pedestrian"]
    assert prepared["labels"][0]["categoryAttributes"] == _label_config()["labels"][0]["categoryAttributes"]
    assert prepared["annotationType"] == "Polyline"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_prepare_label_category_config_never_mutates_its_input(name):
    config = _label_config()
    config["auditLabelAttributeName"] = "stale-ref"
    snapshot = copy.deepcopy(config)
    prepared = get_modality(name).prepare_label_category_config(config, "vehicle-ref")
    assert config == snapshot
    prepared["labels"][0]["label"] = "changed"
    prepared["labels"][0]["categoryAttributes"].append({"name": "new", "type": "string"})
    assert config == snapshot


@pytest.mark.parametrize("name", BASES)
def test_first_pass_config_carries_no_audit_label_attribute_name(name):
    config = _label_config()
    config["auditLabelAttributeName"] = "stale-ref"
    prepared = get_modality(name).prepare_label_category_config(config, None)
    assert "auditLabelAttributeName" not in prepared
    assert "editsAllowed" not in prepared["labels"][0]
    # A first-pass job chained from another job's output still gets no audit key.
    assert "auditLabelAttributeName" not in get_modality(name).prepare_label_category_config(
        _label_config(), "x-ref"
    )


@pytest.mark.parametrize("name", [n for n in ALL_NAMES if n.endswith(("Audit", "Verification"))])
@pytest.mark.parametrize("parent", [None, ""])
def test_chained_config_without_a_parent_label_attribute_name_is_refused(name, parent):
    with pytest.raises(ValueError, match=name):
        get_modality(name).prepare_label_category_config(_label_config(), parent)


@pytest.mark.parametrize("bad", [{}, {"labels": []}, {"labels": ["Car"]}, {"labels": [{"name": "Car"}]}])
def test_config_without_labels_is_refused(bad):
    with pytest.raises(ValueError, match="labels"):
        get_modality("VideoObjectTrackingAudit").prepare_label_category_config(bad, "vehicle-ref")
