"""Event source mapping emulator: delivers queue messages to the handlers the way Lambda does.

For each function with an SQS event source, one thread long-polls the queue (WaitTimeSeconds 1,
MaxNumberOfMessages = BatchSize, the queue's VisibilityTimeout), builds the real Lambda SQS event,
calls the handler with a fake LambdaContext and deletes the messages not reported in
``batchItemFailures`` (none if the handler raised). Redrive to the DLQ after maxReceiveCount is
the endpoint's job (moto and LocalStack both do it). Scheduled functions get a real
``Scheduled Event`` every ``schedule_interval`` seconds.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from smgt.local import endpoints
from smgt.local.provision import ProvisionedStack, client
from smgt.local.template import FunctionSpec, ScheduleEventSource, SqsEventSource

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
HandlerResolver = Callable[[FunctionSpec], Handler]


def import_handler(spec: FunctionSpec) -> Handler:
    """The production handler: ``services.<dir>.<module>.<function>``."""
    module = importlib.import_module(spec.module)
    try:
        return getattr(module, spec.function_name)
    except AttributeError:
        raise ImportError(f"{spec.module} has no {spec.function_name} ({spec.logical_id})") from None


def resolve_handlers(
    specs: Iterable[FunctionSpec],
    *,
    resolve_handler: HandlerResolver = import_handler,
    handlers: Mapping[str, Handler] | None = None,
    skip_missing: bool = False,
) -> dict[str, Handler]:
    """logical id -> handler: explicit ``handlers`` first, then ``resolve_handler``.

    With skip_missing, a function whose module cannot be imported is left out with a warning.
    """
    out: dict[str, Handler] = {}
    for spec in specs:
        if handlers and spec.logical_id in handlers:
            out[spec.logical_id] = handlers[spec.logical_id]
            continue
        try:
            out[spec.logical_id] = resolve_handler(spec)
        except ImportError as err:
            if not skip_missing:
                raise
            log.warning(
                "%s: handler %s not importable, not played locally: %s", spec.logical_id, spec.handler, err
            )
    return out


@dataclass
class LambdaContext:
    """What Lambda passes as ``context`` (the attributes Powertools and handlers read)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def make_context(stack: ProvisionedStack, spec: FunctionSpec) -> LambdaContext:
    res = stack.resources.get(spec.logical_id)
    name = res.ref if res else spec.logical_id
    arn = res.attributes.get("Arn", "") if res else ""
    return LambdaContext(
        function_name=name,
        memory_limit_in_mb=spec.memory_size,
        invoked_function_arn=arn or f"arn:aws:lambda:{stack.region}:{stack.account_id}:function:{name}",
        timeout_seconds=float(spec.timeout),
    )


def local_environment(stack: ProvisionedStack, ground_truth_url: str | None = None) -> dict[str, str]:
    """What the runner puts in os.environ: the functions' environment plus the local endpoints."""
    env = dict(stack.shared_environment)
    env.update(
        {
            "AWS_ENDPOINT_URL": stack.endpoint_url,
            "AWS_DEFAULT_REGION": stack.region,
            "AWS_REGION": stack.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_SERVICE_NAME": "smgt-workflow",
            **endpoints.TEST_CREDENTIALS,
        }
    )
    if ground_truth_url:
        env["AWS_ENDPOINT_URL_SAGEMAKER"] = ground_truth_url
    return env


class EnvironmentPatch:
    """Set variables in os.environ; restore the previous values on restore()."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self._saved: dict[str, str | None] = {}

    def apply(self) -> None:
        for key, value in self.values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore(self) -> None:
        for key, old in self._saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved.clear()


@dataclass
class FunctionStats:
    invocations: int = 0  # handler calls
    messages: int = 0  # SQS messages delivered (a message retried counts again)
    deleted: int = 0  # messages deleted after success
    failed_messages: int = 0  # messages left on the queue (reported or because the handler raised)
    errors: int = 0  # invocations that raised

    @property
    def deliveries(self) -> int:
        return self.invocations

    @property
    def failures(self) -> int:
        return self.failed_messages + self.errors


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of Lambda's SQS event, from a ReceiveMessage message."""
    attributes = {k: str(v) for k, v in (message.get("Attributes") or {}).items()}
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(value["BinaryValue"]).decode()
            if value.get("BinaryValue")
            else None,
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues") or []],
            "dataType": value.get("DataType", "String"),
        }
        message_attributes[name] = {k: v for k, v in message_attributes[name].items() if v is not None}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def scheduled_event(account_id: str, region: str, rule_arn: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def failed_message_ids(response: Any, batch_ids: list[str]) -> set[str]:
    """Message ids to keep, from a partial batch response (Lambda's rules: a malformed one fails all)."""
    if not isinstance(response, Mapping) or "batchItemFailures" not in response:
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    ids = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not ident or ident not in batch_ids:
            return set(batch_ids)  # Lambda treats an invalid identifier as a failure of the whole batch
        ids.add(ident)
    return ids


class Runner:
    """Plays the template's SQS event source mappings and schedules against a provisioned stack."""

    def __init__(
        self,
        stack: ProvisionedStack,
        *,
        resolve_handler: HandlerResolver = import_handler,
        handlers: Mapping[str, Handler] | None = None,
        functions: Iterable[str] | None = None,
        schedule_interval: float | None = 5.0,
        ground_truth_url: str | None = None,
        set_environ: bool = True,
        skip_missing: bool = False,
        wait_time_seconds: int = 1,
        failure_visibility_timeout: int | None = None,
    ) -> None:
        """
        handlers: logical id -> callable, overriding resolve_handler (tests swap in fakes).
        functions: logical ids to play (default: every function with an SQS or Schedule event).
        schedule_interval: seconds between Scheduled Events; None disables schedules.
        failure_visibility_timeout: if set, failed messages become visible again after this many
            seconds instead of the queue's VisibilityTimeout (faster local retries; Lambda keeps the
            queue's timeout).
        """
        self.stack = stack
        self.specs = {
            lid: spec
            for lid, spec in stack.template.functions().items()
            if (spec.sqs_events or spec.schedules) and (functions is None or lid in set(functions))
        }
        self._resolve_handler = resolve_handler
        self._handler_overrides = dict(handlers or {})
        self.schedule_interval = schedule_interval
        self.ground_truth_url = ground_truth_url
        self.set_environ = set_environ
        self.skip_missing = skip_missing
        self.wait_time_seconds = wait_time_seconds
        self.failure_visibility_timeout = failure_visibility_timeout
        self.handlers: dict[str, Handler] = {}
        self.stats: dict[str, FunctionStats] = {lid: FunctionStats() for lid in self.specs}
        self._env = EnvironmentPatch(local_environment(stack, ground_truth_url))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = 0
        self._sqs = client("sqs", stack.endpoint_url, stack.region)
        self._visibility: dict[str, int] = {}
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Runner:
        if self.started:
            return self
        if self.set_environ:
            self._env.apply()
        self.handlers = resolve_handlers(
            self.specs.values(),
            resolve_handler=self._resolve_handler,
            handlers=self._handler_overrides,
            skip_missing=self.skip_missing,
        )
        self._stop.clear()
        for lid, handler in self.handlers.items():
            spec = self.specs[lid]
            for source in spec.sqs_events:
                if source.enabled:
                    self._spawn(f"sqs-{lid}-{source.name}", self._poll_loop, spec, source, handler)
            if self.schedule_interval is not None:
                for schedule in spec.schedules:
                    if schedule.enabled:
                        self._spawn(
                            f"schedule-{lid}-{schedule.name}", self._schedule_loop, spec, schedule, handler
                        )
        self.started = True
        log.info("runner started: %s", ", ".join(sorted(self.handlers)) or "no functions")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        if self.set_environ:
            self._env.restore()
        self.started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # ------------------------------------------------------------------ idle detection

    @property
    def consumed_queues(self) -> list[str]:
        return sorted({s.queue_logical_id for spec in self.specs.values() for s in spec.sqs_events})

    def queue_depth(self, logical_id: str) -> int:
        attrs = self._sqs.get_queue_attributes(
            QueueUrl=self.stack.queue_url(logical_id),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def is_idle(self) -> bool:
        with self._lock:
            if self._busy:
                return False
        if any(self.queue_depth(q) for q in self.consumed_queues):
            return False
        with self._lock:
            return self._busy == 0

    def wait_idle(self, timeout: float = 30.0, settle: float = 0.2) -> bool:
        """True once every consumed queue is empty and no handler runs (twice, ``settle`` apart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_idle():
                time.sleep(settle)
                if self.is_idle():
                    return True
            time.sleep(0.1)
        return False

    # ------------------------------------------------------------------ SQS

    def _queue_visibility(self, queue_logical_id: str) -> int:
        if queue_logical_id not in self._visibility:
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=self.stack.queue_url(queue_logical_id), AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            self._visibility[queue_logical_id] = int(attrs.get("VisibilityTimeout", 30))
        return self._visibility[queue_logical_id]

    def _poll_loop(self, spec: FunctionSpec, source: SqsEventSource, handler: Handler) -> None:
        sqs = client("sqs", self.stack.endpoint_url, self.stack.region)
        url = self.stack.queue_url(source.queue_logical_id)
        arn = self.stack.queue_arn(source.queue_logical_id)
        visibility = self._queue_visibility(source.queue_logical_id)
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=max(1, min(source.batch_size, 10)),
                    WaitTimeSeconds=self.wait_time_seconds,
                    VisibilityTimeout=visibility,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                # received messages are invisible, so the queue is not empty until they are deleted
                with self._lock:
                    self._busy += 1
                try:
                    self._deliver(sqs, url, arn, spec, source, handler, messages)
                finally:
                    with self._lock:
                        self._busy -= 1
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: polling %s failed", spec.logical_id, source.queue_logical_id)
                self._stop.wait(1.0)

    def _deliver(
        self,
        sqs: Any,
        url: str,
        arn: str,
        spec: FunctionSpec,
        source: SqsEventSource,
        handler: Handler,
        messages: list[dict[str, Any]],
    ) -> None:
        records = [sqs_record(m, arn, self.stack.region) for m in messages]
        ids = [r["messageId"] for r in records]
        stats = self.stats[spec.logical_id]
        try:
            response = handler({"Records": records}, make_context(self.stack, spec))
        except Exception:
            log.exception(
                "%s raised; %d message(s) stay on %s", spec.logical_id, len(ids), source.queue_logical_id
            )
            failed = set(ids)
            with self._lock:
                stats.errors += 1
        else:
            failed = failed_message_ids(response, ids) if source.report_batch_item_failures else set()
        with self._lock:
            stats.invocations += 1
            stats.messages += len(ids)
            stats.failed_messages += len(failed)
            stats.deleted += len(ids) - len(failed)
        done = [
            {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
            for i, r in enumerate(records)
            if r["messageId"] not in failed
        ]
        if done:
            result = sqs.delete_message_batch(QueueUrl=url, Entries=done)
            for err in result.get("Failed", []):
                log.warning("%s: could not delete a message: %s", spec.logical_id, err)
        if failed and self.failure_visibility_timeout is not None:
            retry = [
                {
                    "Id": str(i),
                    "ReceiptHandle": r["receiptHandle"],
                    "VisibilityTimeout": self.failure_visibility_timeout,
                }
                for i, r in enumerate(records)
                if r["messageId"] in failed
            ]
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=retry)

    # ------------------------------------------------------------------ schedules

    def _schedule_loop(self, spec: FunctionSpec, schedule: ScheduleEventSource, handler: Handler) -> None:
        assert self.schedule_interval is not None
        rule_arn = (
            f"arn:aws:events:{self.stack.region}:{self.stack.account_id}:rule/"
            f"{self.stack.template.parameters.get('Prefix', 'smgt')}-{spec.logical_id}{schedule.name}"
        )
        while not self._stop.wait(self.schedule_interval):
            self.invoke_scheduled(spec.logical_id, handler=handler, rule_arn=rule_arn)

    def invoke_scheduled(self, logical_id: str, *, handler: Handler | None = None, rule_arn: str = "") -> Any:
        """Call a scheduled function once now with a Scheduled Event (also handy from tests)."""
        spec = self.specs[logical_id]
        handler = handler or self.handlers[logical_id]
        stats = self.stats[logical_id]
        event = scheduled_event(
            self.stack.account_id,
            self.stack.region,
            rule_arn or f"arn:aws:events:{self.stack.region}:{self.stack.account_id}:rule/{logical_id}",
        )
        with self._lock:
            self._busy += 1
        try:
            return handler(event, make_context(self.stack, spec))
        except Exception:
            log.exception("%s (scheduled) raised", logical_id)
            with self._lock:
                stats.errors += 1
            return None
        finally:
            with self._lock:
                stats.invocations += 1
                self._busy -= 1
