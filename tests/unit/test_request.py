"""Every validation rule of the batch request has an input that breaks it and names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.common.errors import InvalidRequest
from services.common.request import parse_request
from tests.conftest import INPUT_BUCKET, reference_request

ALLOWED = frozenset({INPUT_BUCKET})


def problems(body: Any) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body, ALLOWED)
    return {p.field: p.rule for p in caught.value.problems}


def test_reference_request_is_valid_and_keeps_its_jobs() -> None:
    request = parse_request(reference_request(), ALLOWED)
    assert [j.job_name for j in request.labeling_jobs] == ["vehicle", "lane", "vehicle-audit", "lane-audit"]
    assert request.levels == [1, 2]
    assert request.labeling_job_name("vehicle") == "reference-0001-vehicle"


def test_body_that_is_not_an_object_is_refused() -> None:
    assert problems([1, 2]) == {"(body)": "must be a JSON object"}


def test_unknown_fields_are_refused_not_ignored() -> None:
    body = reference_request()
    body["labelingJobs"][0]["jobLevl"] = 1
    body["priority"] = "high"
    found = problems(body)
    assert "unknown field" in found["labelingJobs[0].jobLevl"]
    assert "unknown field" in found["priority"]


@pytest.mark.parametrize("batch_id", ["-starts-with-hyphen", "has_underscore", "x" * 64, ""])
def test_batch_id_must_match_sagemaker_name_pattern(batch_id: str) -> None:
    body = reference_request()
    body["batchId"] = batch_id
    assert "batchId" in problems(body)


def test_job_name_with_batch_prefix_over_63_characters_is_refused() -> None:
    body = reference_request("b" * 40)
    body["labelingJobs"][0]["jobName"] = "v" * 30
    body["labelingJobs"][2]["inputConfig"]["chainFromJobName"] = "v" * 30
    found = problems(body)
    assert "63" in found["labelingJobs[0].jobName"]


def test_job_names_are_unique_case_insensitively() -> None:
    body = reference_request()
    body["labelingJobs"][1]["jobName"] = "VEHICLE"
    assert "duplicates labelingJobs[0].jobName" in problems(body)["labelingJobs[1].jobName"]


def test_unknown_modality_names_the_known_ones() -> None:
    body = reference_request()
    body["labelingJobs"][0]["jobModality"] = "VideoObjectTrackin"
    rule = problems(body)["labelingJobs[0].jobModality"]
    assert "VideoObjectTrackin" in rule and "VideoObjectTracking" in rule


def test_levels_must_start_at_one_without_gaps() -> None:
    body = reference_request()
    for job in body["labelingJobs"][2:]:
        job["jobLevel"] = 3
    assert "missing level(s) [2]" in problems(body)["labelingJobs"]


def test_job_level_below_one_is_refused() -> None:
    body = reference_request()
    body["labelingJobs"][0]["jobLevel"] = 0
    assert "labelingJobs[0].jobLevel" in problems(body)


def test_exactly_one_input_source_is_required() -> None:
    body = reference_request()
    body["labelingJobs"][2]["inputConfig"] = {
        "chainFromJobName": "vehicle",
        "inputManifestS3Uri": f"s3://{INPUT_BUCKET}/m.manifest",
    }
    body["labelingJobs"][3]["inputConfig"] = {}
    found = problems(body)
    assert "exactly one of" in found["labelingJobs[2].inputConfig"]
    assert "exactly one of" in found["labelingJobs[3].inputConfig"]


def test_chained_job_must_exist_in_the_batch() -> None:
    body = reference_request()
    body["labelingJobs"][2]["inputConfig"] = {"chainFromJobName": "truck"}
    assert "no job named 'truck'" in problems(body)["labelingJobs[2].inputConfig.chainFromJobName"]


def test_chained_job_must_be_at_a_lower_level() -> None:
    body = reference_request()
    body["labelingJobs"][3]["inputConfig"] = {"chainFromJobName": "vehicle-audit"}
    assert "lower level" in problems(body)["labelingJobs[3].inputConfig.chainFromJobName"]


def test_audit_must_chain_from_its_base_modality() -> None:
    body = reference_request()
    body["labelingJobs"][1]["jobModality"] = "VideoObjectDetection"
    assert "must chain from a VideoObjectTracking job" in problems(body)["labelingJobs[3].inputConfig.chainFromJobName"]


def test_audit_without_chain_is_refused() -> None:
    body = reference_request()
    body["labelingJobs"][0]["jobModality"] = "VideoObjectTrackingAudit"
    assert "chainFromJobName is required" in problems(body)["labelingJobs[0].inputConfig"]


def test_label_category_file_is_required_unless_chaining() -> None:
    body = reference_request()
    del body["labelingJobs"][0]["labelCategoryConfigS3Uri"]
    assert "required unless" in problems(body)["labelingJobs[0].labelCategoryConfigS3Uri"]


@pytest.mark.parametrize(
    ("name", "words"),
    [("vehicle", "-ref"), ("vehicle-ref-metadata", "-metadata"), ("-bad-ref", "pattern")],
)
def test_label_attribute_name_rules(name: str, words: str) -> None:
    body = reference_request()
    body["labelingJobs"][0]["labelAttributeName"] = name
    assert words in problems(body)["labelingJobs[0].labelAttributeName"]


def test_audit_label_attribute_name_must_differ_from_parent() -> None:
    body = reference_request()
    body["labelingJobs"][2]["labelAttributeName"] = "Vehicle-ref"
    assert "differ" in problems(body)["labelingJobs[2].labelAttributeName"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("taskTimeLimitInSeconds", 10),
        ("taskTimeLimitInSeconds", 700000),
        ("taskAvailabilityLifetimeInSeconds", 59),
        ("maxConcurrentTaskCount", 0),
        ("maxConcurrentTaskCount", 5001),
    ],
)
def test_numeric_ranges_are_enforced(field: str, value: int) -> None:
    body = reference_request()
    body["labelingJobs"][0][field] = value
    assert f"labelingJobs[0].{field}" in problems(body)


def test_s3_uris_must_be_well_formed_and_in_allowed_buckets() -> None:
    body = reference_request()
    body["labelingJobs"][0]["inputConfig"]["inputManifestS3Uri"] = "https://example.com/manifest"
    body["labelingJobs"][1]["inputConfig"]["inputManifestS3Uri"] = "s3://someone-elses-bucket/manifest"
    found = problems(body)
    assert "labelingJobs[0].inputConfig.inputManifestS3Uri" in found
    assert "not one this deployment reads" in found["labelingJobs[1].inputConfig.inputManifestS3Uri"]


def test_workteam_arn_form_is_checked() -> None:
    body = reference_request()
    body["labelingJobs"][0]["workteamArn"] = "first-level"
    assert "labelingJobs[0].workteamArn" in problems(body)


def test_every_problem_is_reported_at_once() -> None:
    body = copy.deepcopy(reference_request())
    body["labelingJobs"][0]["workteamArn"] = "nope"
    body["labelingJobs"][1]["maxConcurrentTaskCount"] = -1
    body["labelingJobs"][2]["jobModality"] = "Nope"
    found = problems(body)
    assert {"labelingJobs[0].workteamArn", "labelingJobs[1].maxConcurrentTaskCount", "labelingJobs[2].jobModality"} <= set(found)


def test_fingerprint_is_stable_and_changes_with_the_body() -> None:
    a = parse_request(reference_request(), ALLOWED)
    b = parse_request(reference_request(), ALLOWED)
    body = reference_request()
    body["labelingJobs"][0]["maxConcurrentTaskCount"] = 7
    c = parse_request(body, ALLOWED)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_chained_job_accepts_processors_in_order() -> None:
    body = reference_request()
    body["labelingJobs"][2]["inputConfig"]["processors"] = [{"type": "sample", "fraction": 0.1}, {"type": "quality"}]
    request = parse_request(body, ALLOWED)
    assert [p.type for p in request.labeling_jobs[2].input_config.processors] == ["sample", "quality"]


def test_processors_need_a_parent_job() -> None:
    body = reference_request()
    body["labelingJobs"][0]["inputConfig"]["processors"] = [{"type": "quality"}]
    assert "need chainFromJobName" in problems(body)["labelingJobs[0].inputConfig"]


def test_unknown_processor_type_is_refused_with_its_path() -> None:
    body = reference_request()
    body["labelingJobs"][2]["inputConfig"]["processors"] = [{"type": "magic"}]
    assert any(field.startswith("labelingJobs[2].inputConfig.processors[0]") for field in problems(body))


def test_workteam_may_come_from_the_deployments_default_for_the_level() -> None:
    body = reference_request()
    for job in body["labelingJobs"]:
        del job["workteamArn"]
    teams = ("arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/first", None)
    found = {p.field: p.rule for p in _problems_with(body, teams)}
    assert set(found) == {"labelingJobs[2].workteamArn", "labelingJobs[3].workteamArn"}
    assert "SECOND_LEVEL_WORKTEAM_ARN" in found["labelingJobs[2].workteamArn"]
    both = (teams[0], "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/second")
    assert parse_request(body, ALLOWED, both).labeling_jobs[0].workteam_arn is None


def test_task_keywords_follow_sagemakers_pattern() -> None:
    body = reference_request()
    body["labelingJobs"][0]["taskKeywords"] = ["Video-frame"]
    assert "labelingJobs[0].taskKeywords[0]" in problems(body)


def _problems_with(body: Any, teams: tuple[str | None, str | None]) -> list[Any]:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body, ALLOWED, teams)
    return caught.value.problems
