"""Processors between levels on the local stack: what the audit sees is what the processors kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from smgt.local.demo import reference_request
from smgt.local.synthetic import upload_reference_dataset
from tests.conftest import LocalStackSession

pytestmark = pytest.mark.integration


def drop_everything(lines: Iterator[dict[str, Any]], context: Any) -> Iterable[dict[str, Any]]:
    """A custom processor (named by import path in the request) that sends nothing on."""
    for _ in lines:
        pass
    return []


def _batch(session: LocalStackSession, prefix: str, processors: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    env = session.environment
    dataset = upload_reference_dataset(session.aws("s3"), env["INPUT_BUCKET"], prefix=prefix, sequences=3, frames=3)
    batch_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    request = reference_request(batch_id, dataset, session.stack.provisioned.account_id, session.stack.region)
    for job in request["labelingJobs"]:
        if job["jobName"] in processors:
            job["inputConfig"]["processors"] = processors[job["jobName"]]
    session.client.create(request)
    return session.client.watch(batch_id, interval=0.5, timeout=120)


def _jobs(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["jobName"]: job for level in detail["levels"] for job in level["jobLevels"]}


def _lines(session: LocalStackSession, uri: str) -> int:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = session.aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return len([line for line in body.splitlines() if line.strip()])


def test_sampled_audit_sees_only_the_sampled_sequences(local_stack: LocalStackSession) -> None:
    detail = _batch(local_stack, "sample", {"vehicle-audit": [{"type": "sample", "count": 1}]})
    assert detail["status"] == "COMPLETE"
    audit = _jobs(detail)["vehicle-audit"]
    assert audit["processing"]["linesIn"] == 3 and audit["processing"]["linesOut"] == 1
    assert audit["jobInputS3Uri"].endswith("/vehicle-audit/input/processed.manifest")
    assert _lines(local_stack, audit["jobInputS3Uri"]) == 1
    assert _lines(local_stack, _jobs(detail)["lane-audit"]["jobInputS3Uri"]) == 3


def test_a_processor_that_keeps_nothing_skips_the_job_and_the_batch_goes_on(local_stack: LocalStackSession) -> None:
    custom = {"type": "custom", "callable": f"{__name__}:drop_everything"}
    detail = _batch(local_stack, "empty", {"lane-audit": [custom]})
    assert detail["status"] == "COMPLETE"
    jobs = _jobs(detail)
    assert jobs["lane-audit"]["status"] == "SKIPPED"
    assert "kept none of the 3" in jobs["lane-audit"]["failureReason"]
    assert jobs["vehicle-audit"]["status"] == "COMPLETED"
    assert detail["secondLevel"]["numChildBatchesComplete"] == 2
