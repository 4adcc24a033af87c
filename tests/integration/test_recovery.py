"""Failure policy, timeouts and lost events on the local stack, using the simulated Ground Truth's modes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.job_listener import sweep
from smgt.local.demo import reference_request
from smgt.local.synthetic import upload_reference_dataset
from tests.conftest import FakeLambdaContext, LocalStackSession, load_event

pytestmark = pytest.mark.integration


def _create(session: LocalStackSession, prefix: str, **overrides: Any) -> str:
    env = session.environment
    dataset = upload_reference_dataset(session.aws("s3"), env["INPUT_BUCKET"], prefix=prefix, frames=3)
    batch_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    request = reference_request(batch_id, dataset, session.stack.provisioned.account_id, session.stack.region)
    request.update(overrides)
    session.client.create(request)
    return batch_id


def _jobs(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["jobName"]: job for level in detail["levels"] for job in level["jobLevels"]}


def _sweep_at(when: datetime) -> dict[str, Any]:
    """The scheduled sweep as EventBridge Scheduler would run it at ``when``."""
    event = load_event("job_sweep_scheduled.json")
    event["time"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return sweep.lambda_handler(event, FakeLambdaContext())


def _wait_job(session: LocalStackSession, batch_id: str, job: str, status: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _jobs(session.client.show(batch_id))[job]["status"] == status:
            return
        time.sleep(0.3)
    raise AssertionError(f"{job} never reached {status}: {json.dumps(_jobs(session.client.show(batch_id))[job])}")


def test_continue_policy_skips_the_failed_jobs_chain_and_completes_with_errors(local_stack: LocalStackSession) -> None:
    local_stack.ground_truth.set_behaviour("cont-*-vehicle", "fail", failure_reason="ClientError: no workers")
    batch_id = _create(local_stack, "cont", failurePolicy="CONTINUE")
    detail = local_stack.client.watch(batch_id, interval=0.5, timeout=120)
    assert detail["status"] == "COMPLETED_WITH_ERRORS"
    jobs = _jobs(detail)
    assert (jobs["vehicle"]["status"], jobs["vehicle-audit"]["status"]) == ("FAILED", "SKIPPED")
    assert (jobs["lane"]["status"], jobs["lane-audit"]["status"]) == ("COMPLETED", "COMPLETED")
    assert "vehicle" in jobs["vehicle-audit"]["failureReason"]


def test_stalled_job_past_its_deadline_is_stopped_and_fails_with_timeout(local_stack: LocalStackSession) -> None:
    local_stack.ground_truth.set_behaviour("stall-*-vehicle", "stall")
    batch_id = _create(local_stack, "stall")
    _wait_job(local_stack, batch_id, "vehicle", "IN_PROGRESS")
    timeout = int(local_stack.environment["JOB_COMPLETION_TIMEOUT"])
    report = _sweep_at(datetime.now(UTC) + timedelta(seconds=timeout + 60))
    assert report["timed_out"] >= 1
    detail = local_stack.client.watch(batch_id, interval=0.5, timeout=60)
    assert detail["status"] == "FAILED"
    assert _jobs(detail)["vehicle"]["failureReason"] == "timeout"
    assert "timeout" in detail["failureReason"]
    assert local_stack.ground_truth._find(f"{batch_id}-vehicle").status in ("Stopping", "Stopped")


def test_lost_state_change_event_is_recovered_by_the_next_sweep(local_stack: LocalStackSession) -> None:
    # Given a lane job whose state-change events never reach the bus
    local_stack.ground_truth.set_behaviour("lost-*-lane", "silent")
    batch_id = _create(local_stack, "lost")
    # When the scheduled sweep runs (every 2 s on this stack, every 5 minutes when deployed)
    detail = local_stack.client.watch(batch_id, interval=0.5, timeout=120)
    # Then the batch completes all the same: the sweep described the job and recorded its end
    assert detail["status"] == "COMPLETE"
    lane = _jobs(detail)["lane"]
    assert lane["status"] == "COMPLETED" and lane["sagemakerStatus"] == "Completed"
    simulated = local_stack.ground_truth._find(f"{batch_id}-lane")
    assert simulated.rule is not None and simulated.rule.mode.value == "silent"
    assert local_stack.stack.runner.stats["JobSweepFunction"].invocations > 0
