"""Batch creation in parts: a batch larger than one transaction is written whole, once, even after a crash."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.common import store
from services.common.errors import BatchConflict
from services.common.request import parse_request
from services.common.statuses import BatchStatus, JobStatus
from tests.conftest import INPUT_BUCKET, MockedStack, reference_request


def _large_request(batch_id: str, jobs: int = 150) -> Any:
    body = reference_request(batch_id)
    template = body["labelingJobs"][0]
    body["labelingJobs"] = []
    for i in range(jobs):
        job = copy.deepcopy(template)
        job.update(jobName=f"j{i}", jobLevel=1 + i % 3, labelAttributeName=f"j{i}-ref")
        body["labelingJobs"].append(job)
    return parse_request(body, frozenset({INPUT_BUCKET}))


def test_a_crash_while_writing_parts_is_finished_by_the_retry_without_overwriting(stack: MockedStack) -> None:
    request = _large_request("parts-0001")
    pk = "BATCH#parts-0001"
    items = store._level_and_job_items(request, pk)
    # Given a first attempt that claimed the id and wrote some items before it crashed
    claimed = store.new_batch_item(request, BatchStatus.CREATING)
    claimed.save()
    for item in items[:70]:
        item.save()
    written = store.get_job("parts-0001", "j10")
    written.update(actions=[store.JobItem.job_status.set(JobStatus.LAUNCHING.value)])
    # When the create is retried
    batch, created = store.create_batch(request)
    # Then the batch is whole and open, and what was already there is untouched
    assert (created, batch.status) == (False, BatchStatus.IN_PROGRESS)
    state = store.load_batch_state("parts-0001")
    assert len(state.jobs) == 150 and [int(lv.jobs_total) for lv in state.levels] == [50, 50, 50]
    assert store.get_job("parts-0001", "j10").status is JobStatus.LAUNCHING


def test_a_large_batch_is_created_once_and_conflicts_are_refused(stack: MockedStack) -> None:
    request = _large_request("parts-0002")
    batch, created = store.create_batch(request)
    assert created and batch.status is BatchStatus.IN_PROGRESS
    assert store.create_batch(request)[1] is False
    with pytest.raises(BatchConflict):
        store.create_batch(_large_request("parts-0002", jobs=151))
