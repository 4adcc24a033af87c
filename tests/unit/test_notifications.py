"""The end-of-batch message always fits in one SNS message and always says where the whole detail is."""

from __future__ import annotations

import json
from typing import Any

from services.common import notifications
from services.common.manifests import read_json
from services.common.settings import get_settings
from tests.conftest import MockedStack


def _notification(jobs: int, reason_size: int) -> notifications.BatchNotification:
    job = {"jobName": "j", "jobOutputS3Uri": "s3://b/k", "jobOutputS3Url": "https://b/k?" + "x" * 900, "note": "y" * reason_size}
    info = {"batchId": "big-1", "status": "COMPLETE", "levels": [{"level": 1, "status": "COMPLETE", "jobLevels": [job] * jobs}]}
    return notifications.BatchNotification(batch_id="big-1", message="done", batch_info=info, status="SUCCESS")


def test_small_notification_is_sent_as_is(stack: MockedStack) -> None:
    small = _notification(jobs=3, reason_size=10)
    assert notifications.fit_to_sns(small, get_settings()) == small


def test_presigned_urls_are_dropped_first_when_the_message_is_too_big(stack: MockedStack) -> None:
    fitted = notifications.fit_to_sns(_notification(jobs=300, reason_size=10), get_settings())
    job = fitted.batch_info["levels"][0]["jobLevels"][0]
    assert "jobOutputS3Url" not in job and job["jobOutputS3Uri"] == "s3://b/k"
    assert fitted.batch_info_s3_uri is None
    assert len(fitted.to_json().encode()) < notifications.SNS_MAX_BYTES


def test_a_detail_too_big_even_without_urls_goes_to_s3_and_the_message_points_to_it(stack: MockedStack) -> None:
    big = _notification(jobs=300, reason_size=2000)
    fitted = notifications.fit_to_sns(big, get_settings())
    assert fitted.batch_info_s3_uri is not None
    assert read_json(fitted.batch_info_s3_uri) == big.batch_info
    assert fitted.batch_info["levels"] == [{"level": 1, "status": "COMPLETE", "numJobs": 300}]
    wire: dict[str, Any] = json.loads(fitted.to_json())
    assert wire["batchInfoS3Uri"] == fitted.batch_info_s3_uri
    assert len(fitted.to_json().encode()) < notifications.SNS_MAX_BYTES
