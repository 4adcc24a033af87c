"""Exactly-once coordination under at-least-once, reordered, duplicated and concurrent delivery.

The real domain (coordinator, launcher, listener, notifier) runs on a freshly provisioned moto
stack per example; a hypothesis-chosen scheduler plays SQS (which pending message next, how many
copies of it) and SageMaker (which running job ends next, how many state-change events it sends).
Whatever the order, the outcome must be the one the batch's plan and failure policy dictate, and
every transition must have happened once.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from services.common import coordinator, notifications, store
from services.common.events import BatchCompleted, LevelStarted
from services.common.statuses import BatchStatus, JobStatus, LevelStatus
from tests.workflow_world import BATCH_ID, World, batch_request, job_name, mocked_stack

Plan = list[list[int | None]]
"""``plan[l][i]``: the index in level l-1 that job i of level l chains from (None on level 1)."""

SETTINGS = settings(
    deadline=None,
    # Shrinking replays whole batches (about a second each): a counterexample is reported as found,
    # with every scheduler draw labelled; re-enable the phase locally to minimise one.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
MAX_JOBS_IN_EXAMPLE = int(os.environ.get("SMGT_PROPERTY_MAX_JOBS", "12"))
"""Keeps the generated batches small by default: moto answers each DynamoDB call in about 10 ms.
For the full range (5 levels of up to 50 jobs) run with SMGT_PROPERTY_MAX_JOBS=250
SMGT_PROPERTY_MAX_JOBS_PER_LEVEL=50 (and SMGT_PROPERTY_EXAMPLES for more examples)."""
MAX_JOBS_PER_LEVEL = int(os.environ.get("SMGT_PROPERTY_MAX_JOBS_PER_LEVEL", "8"))
EXAMPLES = int(os.environ.get("SMGT_PROPERTY_EXAMPLES", "8"))


@st.composite
def plans(draw: st.DrawFn, max_levels: int = 5, max_jobs_per_level: int = MAX_JOBS_PER_LEVEL) -> Plan:
    levels = draw(st.integers(1, max_levels))
    plan: Plan = []
    used = 0
    for level in range(levels):
        room = MAX_JOBS_IN_EXAMPLE - used - (levels - level - 1)
        size = draw(st.integers(1, max(1, min(max_jobs_per_level, room))))
        used += size
        plan.append(
            [None] * size if level == 0 else [draw(st.integers(0, len(plan[-1]) - 1)) for _ in range(size)]
        )
    return plan


def _names(plan: Plan) -> list[tuple[int, str, str | None]]:
    """(level, job name, parent job name) of every job."""
    return [
        (level, job_name(level, i), None if parent is None else job_name(level - 1, parent))
        for level, jobs in enumerate(plan, start=1)
        for i, parent in enumerate(jobs)
    ]


def _labeling(name: str) -> str:
    return f"{BATCH_ID}-{name}"


def run_scheduled(world: World, data: st.DataObject, failing: frozenset[str], duplicates: int = 12) -> None:
    """Deliver in a hypothesis-chosen order until nothing is pending and nothing runs."""
    for _ in range(3000):
        running = world.running()
        options = len(world.pending) + len(running)
        if options == 0 and not world.wake(idle=True):
            return
        if options == 0:
            continue
        choice = data.draw(st.integers(0, options - 1), label="next")
        if choice < len(world.pending):
            copies = 0
            if duplicates and world.pending[choice].receives == 0:
                copies = data.draw(st.integers(0, 1), label="copies")
                duplicates -= copies
            world.deliver(choice, copies)
        else:
            name = running[choice - len(world.pending)]
            world.finish(
                name,
                ok=name.removeprefix(f"{BATCH_ID}-") not in failing,
                announcements=data.draw(st.integers(1, 2), label="announcements"),
            )
    raise AssertionError(f"no quiescence; pending: {world.pending[:5]}")


def expected_statuses(
    plan: Plan, policy: str, failing: frozenset[str]
) -> tuple[dict[str, set[JobStatus]], int | None]:
    """Allowed final status of each job, and the level whose failure fails the batch (FAIL_BATCH)."""
    jobs = _names(plan)
    allowed: dict[str, set[JobStatus]] = {}
    if policy == "FAIL_BATCH":
        failed_level = min((level for level, name, _ in jobs if name in failing), default=None)
        for level, name, _ in jobs:
            if failed_level is None or level < failed_level:
                allowed[name] = {JobStatus.COMPLETED}
            elif level == failed_level:  # stopped when another job of its level failed first
                allowed[name] = {
                    JobStatus.FAILED if name in failing else JobStatus.COMPLETED,
                    JobStatus.STOPPED,
                }
            else:
                allowed[name] = {JobStatus.PENDING}
        return allowed, failed_level
    for _, name, parent in jobs:
        if parent is not None and allowed[parent] != {JobStatus.COMPLETED}:
            allowed[name] = {JobStatus.SKIPPED}
        else:
            allowed[name] = {JobStatus.FAILED if name in failing else JobStatus.COMPLETED}
    return allowed, None


def check_outcome(world: World, plan: Plan, policy: str, failing: frozenset[str]) -> None:
    allowed, failed_level = expected_statuses(plan, policy, failing)
    state = world.state()
    statuses = {job.job_name: job.status for job in state.jobs}
    for name, status in statuses.items():
        assert status in allowed[name], f"{name} is {status}, expected one of {allowed[name]}"

    # nothing lost, nothing left running on the labeling service
    assert world.dlq == [] and world.pending == []
    assert world.running() == []

    # each labeling job created at most once; every job that should run ran, and only those
    ran = {
        _labeling(n)
        for n, s in statuses.items()
        if s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED)
    }
    assert sorted(world.fake.create_calls) == sorted(set(world.fake.create_calls)), (
        "CreateLabelingJob called twice"
    )
    assert set(world.fake.create_calls) == ran
    if not failing:
        assert sorted(world.fake.create_calls) == sorted(_labeling(n) for _, n, _ in _names(plan))

    # each level started once and ended once; none after a FAIL_BATCH failure
    last = failed_level or len(plan)
    started = world.results["start_level"]
    assert started == Counter(range(1, last + 1)), started
    assert world.results["claim_level_end"] == Counter(range(1, last + 1))
    assert {e.level for e in world.published if isinstance(e, LevelStarted)} == set(range(1, last + 1))
    assert int(state.batch.current_level) == last
    for level in state.levels:
        number = int(level.level)
        jobs = state.jobs_of_level(number)
        if number > last:
            assert level.status is LevelStatus.PENDING and int(level.jobs_ended) == 0
            assert not any(job.counted for job in jobs)
            continue
        assert level.status is LevelStatus.ENDED and level.advanced
        assert int(level.jobs_ended) == int(level.jobs_total) == len(jobs)
        assert int(level.jobs_failed) == sum(not job.status.is_success for job in jobs)
        assert all(job.counted for job in jobs)
    assert world.results["count_job_end"] == Counter(
        {job.job_name: 1 for job in state.jobs if int(job.level) <= last}
    )

    # the batch ends once, in the state the plan dictates, and is announced once
    if failed_level is not None:
        expected = BatchStatus.FAILED
    elif any(s is JobStatus.FAILED for s in statuses.values()):
        expected = BatchStatus.COMPLETED_WITH_ERRORS
    else:
        expected = BatchStatus.COMPLETE
    assert state.batch.status is expected
    assert sum(world.results["end_batch"].values()) == 1
    assert world.notified == 1
    messages = world.env.sns_messages()
    assert len(messages) == 1
    assert messages[0]["batchInfo"]["status"] == expected.value
    assert messages[0]["status"] == ("SUCCESS" if expected is BatchStatus.COMPLETE else "FAILED")


def _scenario(plan: Plan, policy: str, failing: frozenset[str], data: st.DataObject) -> None:
    note(f"plan={plan} policy={policy} failing={sorted(failing)}")
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, plan, policy))
        if data.draw(st.booleans(), label="client retries the create"):
            world.create(batch_request(env, plan, policy))
        run_scheduled(world, data, failing)
        check_outcome(world, plan, policy, failing)


@st.composite
def scenarios(draw: st.DrawFn, policy: str) -> tuple[Plan, frozenset[str]]:
    plan = draw(plans())
    names = [name for _, name, _ in _names(plan)]
    failing = draw(
        st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(names), min_size=1, max_size=3))
    )
    return plan, failing


@settings(SETTINGS, max_examples=EXAMPLES)
@given(scenario=scenarios("FAIL_BATCH"), data=st.data())
def test_fail_batch_policy_is_exactly_once_in_any_delivery_order(
    scenario: tuple[Plan, frozenset[str]], data: Any
) -> None:
    plan, failing = scenario
    _scenario(plan, "FAIL_BATCH", failing, data)


@settings(SETTINGS, max_examples=EXAMPLES)
@given(scenario=scenarios("CONTINUE"), data=st.data())
def test_continue_policy_is_exactly_once_in_any_delivery_order(
    scenario: tuple[Plan, frozenset[str]], data: Any
) -> None:
    plan, failing = scenario
    _scenario(plan, "CONTINUE", failing, data)


def test_a_job_chained_from_a_skipped_job_is_skipped_too() -> None:
    """CONTINUE, a -> b -> c: a fails, b is skipped, c must be skipped rather than wait for b's output."""
    plan: Plan = [[None], [0], [0]]
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, plan, "CONTINUE"))
        world.settle(failing=frozenset({_labeling("l1j0")}))
        check_outcome(world, plan, "CONTINUE", frozenset({"l1j0"}))
        assert world.state().job("l3j0").failure_reason == "parent job l2j0 ended SKIPPED"


def test_largest_batch_runs_every_job_once() -> None:
    """5 levels of 50 jobs: 250 jobs, written in several transactions, each launched and counted once."""
    sizes = [50, 50, 50, 50, 50]
    plan: Plan = [[None] * sizes[0]] + [
        [i % before for i in range(size)] for before, size in itertools.pairwise(sizes)
    ]
    with mocked_stack() as env, World(env, notify=False) as world:
        world.create(batch_request(env, plan, "FAIL_BATCH"))
        world.settle()
        assert world.state().batch.status is BatchStatus.COMPLETE
        assert sorted(world.fake.create_calls) == sorted(_labeling(n) for _, n, _ in _names(plan))
        assert world.results["start_level"] == world.results["claim_level_end"] == Counter(range(1, 6))
        assert sum(world.results["count_job_end"].values()) == sum(sizes)
        assert len([e for e in world.published if isinstance(e, BatchCompleted)]) == 1


def test_largest_batch_notification_fits_in_one_sns_message() -> None:
    sizes = [50, 20, 10, 5, 5]
    plan: Plan = [[None] * sizes[0]] + [
        [i % before for i in range(size)] for before, size in itertools.pairwise(sizes)
    ]
    with mocked_stack() as env:
        body = batch_request(env, plan)
        from services.common import batches

        batches.create_batch(body, env.settings, publish=lambda *_: None)
        for job in store.load_batch_state(BATCH_ID).jobs:
            output = f"s3://{env.settings.processing_bucket}/batches/{BATCH_ID}/output/{job.labeling_job_name}/manifests/output/output.manifest"
            store.record_job_end(
                job, JobStatus.COMPLETED, output_manifest_uri=output, counters={"total_labeled": 3}
            )
        store.end_batch(BATCH_ID, BatchStatus.COMPLETE)
        assert notifications.notify_batch_end(BATCH_ID, env.settings)
        (message,) = env.sns_messages()
        # without presigned URLs the 90 jobs fit; every output manifest is still named
        outputs = [job["jobOutputS3Uri"] for level in message["batchInfo"]["levels"] for job in level["jobLevels"]]
        assert len(outputs) == sum(sizes)
        assert "jobOutputS3Url" not in message["batchInfo"]["levels"][0]["jobLevels"][0]


# --- concurrency ---------------------------------------------------------------------------------


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialize each AWS request, as DynamoDB makes each request atomic, and switch threads often.

    moto's in-process backend checks a condition and writes the item in separate Python statements
    with no lock, so two threads can both pass the same condition: that is moto, not DynamoDB. With
    one request at a time, the handlers still interleave freely between their requests.
    """
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    real = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return real(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def _all_at_once(calls: list[Any]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("policy", ["FAIL_BATCH", "CONTINUE"])
def test_concurrent_duplicates_of_a_level_s_last_job_end_it_once(atomic_requests: None, policy: str) -> None:
    """Six consumers get the level's last ``Labeling Job Finished`` at once (a success, or a failure)."""
    plan: Plan = [[None, None, None], [0, 2]]
    last_fails = policy == "FAIL_BATCH"
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, plan, policy))
        world.drain()
        world.finish(_labeling("l1j0"))
        world.finish(_labeling("l1j2"))
        world.drain()
        world.finish(_labeling("l1j1"), ok=not last_fails)
        world.drain("listener")
        [last] = world.take("coordinator")
        _all_at_once(
            [lambda: coordinator.on_job_finished(last.event, service=world.fake, publish=world.publish)] * 6
        )
        assert world.results["count_job_end"]["l1j1"] == 1
        assert world.results["claim_level_end"][1] == 1
        assert world.results["start_level"][2] == (0 if last_fails else 1)
        world.settle()
        check_outcome(world, plan, policy, frozenset({"l1j1"}) if last_fails else frozenset())


def test_concurrent_duplicates_of_the_last_level_s_ends_complete_the_batch_once(
    atomic_requests: None,
) -> None:
    plan: Plan = [[None], [0, 0]]
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, plan))
        world.drain()
        world.finish(_labeling("l1j0"))
        world.drain()
        for name in world.running():
            world.finish(name)
        world.drain("listener")
        events = [d.event for d in world.take("coordinator")] * 3
        _all_at_once(
            [
                lambda e=e: coordinator.on_job_finished(e, service=world.fake, publish=world.publish)
                for e in events
            ]
        )
        assert sum(world.results["end_batch"].values()) == 1
        assert world.results["claim_level_end"][2] == 1
        world.settle()
        check_outcome(world, plan, "FAIL_BATCH", frozenset())


def test_concurrent_deliveries_of_batch_completed_notify_once(atomic_requests: None) -> None:
    plan: Plan = [[None]]
    with mocked_stack() as env, World(env) as world:
        world.create(batch_request(env, plan))
        world.drain()
        world.finish(_labeling("l1j0"))
        world.drain("listener")
        world.drain("coordinator")
        assert len(world.take("notifier")) == 1  # delivered below, four times at once
        sent: list[bool] = []
        _all_at_once([lambda: sent.append(notifications.notify_batch_end(BATCH_ID, env.settings))] * 4)
        assert len(env.sns_messages()) == 1
        assert sent.count(True) == 1
