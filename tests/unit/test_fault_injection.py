"""A crash between two side effects, then SQS's redelivery of the same message: no double effect, nothing lost.

Each test injects one crash (``InjectedCrash``) before or after a named step, in the middle of a
handler; the world puts the message back as SQS does after the visibility timeout and goes on
delivering in order. The batch must still reach its end state with every transition done once:
each labeling job created once (a retry adopts it through ``ResourceInUse`` and the batch tag),
each level started and ended once, the batch ended and announced once.
"""

from __future__ import annotations

from collections import Counter

import pytest

from services.common.events import LabelingJobLaunched, LevelStarted
from services.common.labeling import BATCH_TAG
from services.common.statuses import BatchStatus, JobStatus, LevelStatus
from tests.workflow_world import BATCH_ID, World, batch_request, mocked_stack

TWO_LEVELS = [[None], [0]]
"""l1j0 -> l2j0."""
WIDE = [[None, None], [0, 1]]
"""l1j0 -> l2j0, l1j1 -> l2j1."""


def _name(job: str) -> str:
    return f"{BATCH_ID}-{job}"


def _check_complete(world: World, plan: list[list[int | None]]) -> None:
    state = world.state()
    levels = len(plan)
    assert world.dlq == [] and world.pending == [] and world.running() == []
    assert state.batch.status is BatchStatus.COMPLETE
    assert all(job.status is JobStatus.COMPLETED and job.counted for job in state.jobs)
    assert all(level.status is LevelStatus.ENDED and level.advanced for level in state.levels)
    assert sorted(world.created) == sorted(_name(job.job_name) for job in state.jobs), (
        "a job was created twice"
    )
    assert all(job.labeling_job_arn == world.fake.jobs[job.labeling_job_name].arn for job in state.jobs)
    assert world.results["start_level"] == world.results["claim_level_end"] == Counter(range(1, levels + 1))
    assert world.results["count_job_end"] == Counter(job.job_name for job in state.jobs)
    assert sum(world.results["end_batch"].values()) == 1
    assert world.notified == 1
    messages = world.env.sns_messages()
    assert [m["batchInfo"]["status"] for m in messages] == ["COMPLETE"]


def _check_failed(world: World, failed_job: str) -> None:
    """FAIL_BATCH on ``WIDE`` with ``failed_job`` of level 1 failing: level 2 never starts."""
    state = world.state()
    assert world.dlq == [] and world.pending == [] and world.running() == []
    assert state.batch.status is BatchStatus.FAILED
    assert state.batch.failure_reason.startswith(f"labeling job {failed_job} ended FAILED")
    assert state.job(failed_job).status is JobStatus.FAILED
    assert world.results["start_level"] == world.results["claim_level_end"] == Counter({1: 1})
    assert state.level(2).status is LevelStatus.PENDING
    assert not any(isinstance(e, LevelStarted) and e.level == 2 for e in world.published)
    assert sorted(world.created) == [_name("l1j0"), _name("l1j1")]
    assert sum(world.results["end_batch"].values()) == 1
    assert world.notified == 1
    messages = world.env.sns_messages()
    assert [m["batchInfo"]["status"] for m in messages] == ["FAILED"]


# --- a crash at a named step of the happy path ------------------------------------------------------

STEPS = [
    "create_job",  # after: SageMaker has the job, the launcher never got the ARN
    "record_launched",
    "count_job_end",
    "claim_level_end",
    "mark_level_advanced",
    "start_level",
    "end_batch",
    "record_job_end",
]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("point", STEPS)
def test_a_crash_at_any_step_is_redelivered_without_double_effect(point: str, when: str) -> None:
    with mocked_stack() as env, World(env) as world:
        fault = world.inject(point, when)
        world.create(batch_request(env, TWO_LEVELS))
        world.settle()
        assert fault.fired
        _check_complete(world, TWO_LEVELS)


def test_a_job_created_before_a_crash_is_adopted_through_resource_in_use_and_its_tag() -> None:
    with mocked_stack() as env, World(env) as world:
        world.inject("record_launched", "before")
        world.create(batch_request(env, TWO_LEVELS))
        world.drain()
        # the retry asked once more and was told the name is taken: that job carries our batch tag
        assert world.fake.create_calls == [_name("l1j0"), _name("l1j0")]
        assert world.created == [_name("l1j0")]
        assert world.fake.specs[_name("l1j0")].tags[BATCH_TAG] == BATCH_ID
        job = world.state().job("l1j0")
        assert (
            job.status is JobStatus.IN_PROGRESS and job.labeling_job_arn == world.fake.jobs[_name("l1j0")].arn
        )
        world.settle()
        _check_complete(world, TWO_LEVELS)


def test_a_crash_after_advancing_a_level_announces_it_again_but_starts_it_once() -> None:
    with mocked_stack() as env, World(env) as world:
        world.inject("mark_level_advanced", "before")
        world.create(batch_request(env, TWO_LEVELS))
        world.settle()
        assert [e.level for e in world.published if isinstance(e, LevelStarted)] == [1, 2, 2]
        assert world.fake.create_calls.count(_name("l2j0")) == 1
        _check_complete(world, TWO_LEVELS)


# --- a crash around each announcement ---------------------------------------------------------------


@pytest.mark.parametrize("nth", range(1, 9))
def test_a_crash_when_publishing_loses_no_announcement(nth: int) -> None:
    """Publishes: Batch Created, Level Started 1, Launched, Finished, Level Started 2, Launched, Finished, Batch Completed."""
    with mocked_stack() as env, World(env) as world:
        fault = world.inject("publish", "before", nth)
        world.create(batch_request(env, TWO_LEVELS))
        world.settle()
        assert fault.fired
        _check_complete(world, TWO_LEVELS)


def test_a_crash_when_announcing_a_launch_announces_it_on_retry() -> None:
    with mocked_stack() as env, World(env) as world:
        world.inject("publish", "before", 3)  # the first Labeling Job Launched
        world.create(batch_request(env, TWO_LEVELS))
        world.settle()
        launched = [e.job_name for e in world.published if isinstance(e, LabelingJobLaunched)]
        assert sorted(launched) == ["l1j0", "l2j0"]


def test_a_crash_after_the_sns_publish_does_not_lose_the_notification() -> None:
    with mocked_stack() as env, World(env) as world:
        world.inject("mark_notified", "before")
        world.create(batch_request(env, TWO_LEVELS))
        world.settle()
        assert world.state().batch.status is BatchStatus.COMPLETE
        assert world.state().batch.notified_at is not None
        assert 1 <= len(env.sns_messages()) <= 2


# --- crashes on the failure path --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "when", "nth"),
    [
        ("end_batch", "after", 1),  # FAILED written; nothing stopped, nothing announced yet
        ("publish", "before", 6),  # Batch Failed itself (after Created, Started, 2 Launched, Finished)
        ("count_job_end", "after", 1),  # the failure counted, the batch not failed yet
        ("record_job_end", "after", 1),  # the listener recorded the failure, did not announce it
        ("claim_level_end", "after", 1),  # the stopped job ends the level
    ],
)
def test_a_crash_on_the_failure_path_still_fails_the_batch_once(point: str, when: str, nth: int) -> None:
    with mocked_stack() as env, World(env) as world:
        fault = world.inject(point, when, nth)
        world.create(batch_request(env, WIDE))
        world.drain()
        world.finish(_name("l1j0"), ok=False)
        world.settle()
        assert fault.fired
        _check_failed(world, "l1j0")
        assert world.state().job("l1j1").status is JobStatus.STOPPED


def test_the_level_s_last_success_does_not_start_the_next_level_while_a_counted_failure_is_redelivered() -> (
    None
):
    """FAIL_BATCH: the failed job is counted, then its handler crashes before failing the batch.

    The level's other job ends next (and its duplicate arrives): the level is complete, but it has
    a failure, so the next level must not start even though the batch is still IN_PROGRESS.
    """
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, WIDE))
        world.drain()
        world.finish(_name("l1j0"), ok=False)
        world.finish(_name("l1j1"))
        world.drain("listener")
        world.inject("count_job_end", "after", 1)  # l1j0's Finished is first in the coordinator's queue
        failed, succeeded = world.take("coordinator")
        world.pending += [failed, succeeded, succeeded]
        world.deliver(0)  # counts l1j0, crashes: goes back to the end of the queue
        world.deliver(0)  # l1j1: the level is complete
        world.deliver(0)  # l1j1 again
        assert world.results["start_level"][2] == 0
        assert world.fake.create_calls == [_name("l1j0"), _name("l1j1")]
        world.settle()
        _check_failed(world, "l1j0")
        assert world.state().job("l1j1").status is JobStatus.COMPLETED
        assert world.state().level(1).status is LevelStatus.ENDED
