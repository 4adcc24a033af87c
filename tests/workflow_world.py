"""An in-memory delivery world for the coordination tests: the real domain on moto, messages in a list.

Every domain step takes ``publish=``; here it appends to ``World.pending`` instead of putting the
event on EventBridge, routed to the consumer the template's rules would pick. A test (or a
hypothesis scheduler) then decides which pending message is delivered next, how often, and when
a labeling job ends, which is exactly the freedom SQS and SageMaker have. Crashes are injected at
named points between side effects; a crashed delivery goes back to the queue, as SQS redelivers a
message whose handler failed once its visibility timeout passes.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from unittest import mock

import boto3

from services.common import batches, coordinator, launcher, listener, notifications, store
from services.common.events import (
    BatchCompleted,
    BatchCreated,
    BatchFailed,
    EventDetail,
    LabelingJobFinished,
    LabelingJobLaunched,
    LevelStarted,
    SageMakerJobStateChange,
)
from services.common.settings import Settings
from tests.conftest import REGION, _drain, _reset_process_caches
from tests.fakes import FakeLabelingService

BATCH_ID = "prop-0001"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/team"
MAX_RECEIVES = 5
"""As the template's redrive policy: a message failing this often goes to the DLQ."""


@dataclass
class Env:
    """One freshly provisioned stack: settings bound to it, a category file, an SNS inbox."""

    settings: Settings
    categories_uri: str
    manifest_uri: str
    inbox_url: str

    def sns_messages(self) -> list[dict[str, Any]]:
        return _drain(boto3.client("sqs", region_name=REGION), self.inbox_url)


@contextmanager
def mocked_stack() -> Iterator[Env]:
    """template.yaml on a fresh ``mock_aws`` (as the ``stack`` fixture does), cheap enough per example."""
    from moto import mock_aws

    from services.common.runtime import prepare
    from smgt.local.provision import provision
    from smgt.local.synthetic import vehicle_label_categories

    with mock_aws():
        provisioned = provision(None)  # type: ignore[arg-type]
        env = provisioned.shared_environment
        with mock.patch.dict(os.environ, env):
            _reset_process_caches()
            try:
                settings = prepare()
                s3 = boto3.client("s3", region_name=REGION)
                s3.put_object(
                    Bucket=settings.input_bucket,
                    Key="props/categories.json",
                    Body=json.dumps(vehicle_label_categories()).encode(),
                )
                sqs = boto3.client("sqs", region_name=REGION)
                inbox = sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"
                ]
                boto3.client("sns", region_name=REGION).subscribe(
                    TopicArn=settings.status_topic_arn,
                    Protocol="sqs",
                    Endpoint=arn,
                    Attributes={"RawMessageDelivery": "true"},
                )
                yield Env(
                    settings=settings,
                    categories_uri=f"s3://{settings.input_bucket}/props/categories.json",
                    manifest_uri=f"s3://{settings.input_bucket}/props/input.manifest",
                    inbox_url=inbox,
                )
            finally:
                _reset_process_caches()


def batch_request(
    env: Env, parents: list[list[int | None]], failure_policy: str = "FAIL_BATCH", batch_id: str = BATCH_ID
) -> dict[str, Any]:
    """A request body: ``parents[l][i]`` is the index in level l-1 that job i of level l chains from."""
    jobs: list[dict[str, Any]] = []
    for index, level in enumerate(parents, start=1):
        for i, parent in enumerate(level):
            name = job_name(index, i)
            job: dict[str, Any] = {
                "jobName": name,
                "jobLevel": index,
                "labelAttributeName": f"{name}-ref",
                "workteamArn": WORKTEAM,
            }
            if parent is None:
                job["jobModality"] = "VideoObjectTracking"
                job["inputConfig"] = {"inputManifestS3Uri": env.manifest_uri}
                job["labelCategoryConfigS3Uri"] = env.categories_uri
            else:
                job["jobModality"] = "VideoObjectTrackingAudit"
                job["inputConfig"] = {"chainFromJobName": job_name(index - 1, parent)}
            jobs.append(job)
    return {"batchId": batch_id, "labelingJobs": jobs, "failurePolicy": failure_policy}


def job_name(level: int, i: int) -> str:
    return f"l{level}j{i}"


class InjectedCrash(Exception):
    """A crash between two side effects (a Lambda timeout, an out-of-memory kill)."""


@dataclass
class Fault:
    point: str
    when: str = "after"  # "before" or "after" the real call
    nth: int = 1  # crash at the nth call of that point
    calls: int = 0
    fired: bool = False


@dataclass
class Delivery:
    queue: str  # "coordinator" | "launcher" | "listener" | "notifier"
    event: Any
    receives: int = 0
    idle: int = 0  # deferred launches retried while nothing ended in between
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # kept across redeliveries, as SQS does


_ROUTES: dict[type, str | None] = {
    BatchCreated: "coordinator",
    LabelingJobFinished: "coordinator",
    LevelStarted: "launcher",
    LabelingJobLaunched: None,
    BatchCompleted: "notifier",
    BatchFailed: "notifier",
}

WATCHED = (
    "count_job_end",
    "claim_level_end",
    "mark_level_advanced",
    "start_level",
    "end_batch",
    "record_launched",
    "record_job_end",
    "mark_notified",
)
FAULT_POINTS = (*WATCHED, "publish", "create_job")


@dataclass
class World:
    """The pending messages of every queue, the fake labeling service, and what happened."""

    env: Env
    fake: FakeLabelingService = field(default_factory=FakeLabelingService)
    pending: list[Delivery] = field(default_factory=list)
    published: list[EventDetail] = field(default_factory=list)
    dlq: list[Delivery] = field(default_factory=list)
    deferred: list[Delivery] = field(default_factory=list)
    """Launches waiting for capacity: they come back once a labeling job ends (the backoff's "later")."""
    results: dict[str, Counter[Any]] = field(default_factory=dict)
    notified: int = 0
    crashes: int = 0
    created: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    notify: bool = True
    """False: end-of-batch events are recorded, not delivered to the notifier."""
    _stack: ExitStack = field(default_factory=ExitStack)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- wiring ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        for name in WATCHED:
            self._stack.enter_context(mock.patch.object(store, name, self._watch(name, getattr(store, name))))
        real_create, real_stop = self.fake.create_job, self.fake.stop_job

        def create_job(spec: Any) -> str:
            self._fault("create_job", "before")
            arn = real_create(spec)
            self.created.append(spec.name)
            self._fault("create_job", "after")
            return arn

        def stop_job(name: str) -> None:
            before = self.fake.jobs[name.lower()].status
            real_stop(name)
            job = self.fake.jobs[name.lower()]
            if job.status is not before:  # SageMaker announces the stop
                self.enqueue("listener", SageMakerJobStateChange(labeling_job_arn=job.arn, status=job.status))
                self.wake()

        self.fake.create_job = create_job  # type: ignore[method-assign]
        self.fake.stop_job = stop_job  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _watch(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        counter: Counter[Any] = Counter()
        self.results[name] = counter

        def watched(*args: Any, **kwargs: Any) -> Any:
            self._fault(name, "before")
            result = real(*args, **kwargs)
            with self._lock:
                self._record(name, counter, args, result)
            self._fault(name, "after")
            return result

        return watched

    @staticmethod
    def _record(name: str, counter: Counter[Any], args: tuple[Any, ...], result: Any) -> None:
        """Count the transitions that won: level started/ended, job counted, batch ended."""
        if not result or name not in ("start_level", "claim_level_end", "count_job_end", "end_batch"):
            return
        counter[args[0].job_name if name == "count_job_end" else args[1]] += 1

    def _fault(self, point: str, when: str) -> None:
        for fault in self.faults:
            if fault.point == point and fault.when == when and not fault.fired:
                fault.calls += 1
                if fault.calls == fault.nth:
                    fault.fired = True
                    raise InjectedCrash(f"{when} {point}")

    def inject(self, point: str, when: str = "after", nth: int = 1) -> Fault:
        fault = Fault(point, when, nth)
        self.faults.append(fault)
        return fault

    def publish(self, *details: EventDetail) -> None:
        self._fault("publish", "before")
        with self._lock:
            for detail in details:
                self.published.append(detail)
                queue = _ROUTES[type(detail)]
                if queue == "notifier" and not self.notify:
                    continue
                if queue:
                    self.pending.append(Delivery(queue, detail))

    def enqueue(self, queue: str, event: Any) -> None:
        self.pending.append(Delivery(queue, event))

    # --- acting as the user, SQS and SageMaker --------------------------------------------------
    def create(self, body: dict[str, Any]) -> None:
        """POST /batch/create; a client retries it when the call fails."""
        for _ in range(MAX_RECEIVES):
            try:
                batches.create_batch(body, self.env.settings, publish=self.publish)
                return
            except InjectedCrash:
                self.crashes += 1
        raise AssertionError("create kept failing")

    def deliver(self, index: int, copies: int = 0) -> None:
        """Deliver one pending message; ``copies`` more of it stay queued (at-least-once)."""
        delivery = self.pending.pop(index)
        for _ in range(copies):
            self.pending.append(Delivery(delivery.queue, delivery.event))
        delivery.receives += 1
        try:
            self._handle(delivery)
        except launcher.LaunchDeferred:
            delivery.receives -= 1  # the backoff spreads these over time; a stuck one is caught by ``idle``
            self.deferred.append(delivery)
        except InjectedCrash:
            self.crashes += 1
            if delivery.receives >= MAX_RECEIVES:
                self.dlq.append(delivery)
            else:
                self.pending.append(delivery)

    def wake(self, idle: bool = False) -> bool:
        """Deferred launches come back; ``idle``: nothing ended since, so this retry may be in vain."""
        woken, self.deferred = self.deferred, []
        for delivery in woken:
            delivery.idle = delivery.idle + 1 if idle else 0
            (self.dlq if delivery.idle > MAX_RECEIVES else self.pending).append(delivery)
        return bool(woken)

    def _handle(self, delivery: Delivery) -> None:
        event, settings = delivery.event, self.env.settings
        if delivery.queue == "coordinator":
            if isinstance(event, BatchCreated):
                coordinator.on_batch_created(event, publish=self.publish)
            else:
                coordinator.on_job_finished(event, service=self.fake, publish=self.publish)
        elif delivery.queue == "launcher":
            launcher.launch_level(event, self.fake, settings, publish=self.publish)
        elif delivery.queue == "listener":
            listener.on_state_change(event, self.fake, publish=self.publish)
        else:
            if notifications.notify_batch_end(event.batch_id, settings, claimant=delivery.message_id):
                self.notified += 1

    def drain(self, queue: str | None = None, max_steps: int = 2000) -> None:
        """Deliver pending messages (of one queue, or all) in order, without ending any labeling job."""
        for _ in range(max_steps):
            index = next((i for i, d in enumerate(self.pending) if queue in (None, d.queue)), None)
            if index is None:
                return
            self.deliver(index)
        raise AssertionError("messages kept flowing")

    def take(self, queue: str) -> list[Delivery]:
        """Remove the pending messages of one queue, to deliver them some other way."""
        taken = [d for d in self.pending if d.queue == queue]
        self.pending = [d for d in self.pending if d.queue != queue]
        return taken

    def running(self) -> list[str]:
        return sorted(k for k, job in self.fake.jobs.items() if not job.status.is_terminal)

    def finish(self, labeling_job_name: str, ok: bool = True, announcements: int = 1) -> None:
        """The labeling job ends on the service; SageMaker puts its state change on the bus."""
        job = self.fake.complete(labeling_job_name) if ok else self.fake.fail(labeling_job_name)
        self.wake()
        for _ in range(announcements):
            self.enqueue("listener", SageMakerJobStateChange(labeling_job_arn=job.arn, status=job.status))

    def settle(self, failing: frozenset[str] = frozenset(), max_steps: int = 2000) -> None:
        """FIFO delivery; when nothing is pending, every running job ends (fails if named in ``failing``)."""
        for _ in range(max_steps):
            if self.pending:
                self.deliver(0)
            elif running := self.running():
                for name in running:
                    self.finish(name, ok=name not in failing)
            elif not self.wake(idle=True):
                return
        raise AssertionError(f"no quiescence after {max_steps} steps: {self.pending[:5]}")

    def state(self) -> store.BatchState:
        return store.load_batch_state(BATCH_ID)
