"""A simulated Amazon SageMaker Ground Truth for the local stack.

An HTTP server that speaks SageMaker's own wire protocol (JSON 1.1, ``X-Amz-Target:
SageMaker.<Operation>``) for ``CreateLabelingJob``, ``DescribeLabelingJob``, ``StopLabelingJob``
and ``ListLabelingJobs``, so an unmodified ``boto3.client("sagemaker", endpoint_url=...)`` (or
``AWS_ENDPOINT_URL_SAGEMAKER``) works against it. Errors are answered as the real service does
(HTTP 400, ``{"__type": "ValidationException", "message": ...}``, ``ResourceInUse``,
``ResourceNotFound``, ``ResourceLimitExceeded``), so botocore raises ``ClientError`` with those codes.

Requests are validated against the constraints of botocore's own SageMaker service model (required
members, lengths, ranges, patterns, enums) and then against the Ground Truth rules of the docs
(job name unique case-insensitively, label attribute name rules per task type, one worker per
object and private/vendor work teams for video frame and 3D point cloud jobs, time limits, input
manifest and label category file readable in S3, ``auditLabelAttributeName`` for adjustment jobs).

Each job runs in a background thread: ``Initializing`` -> ``InProgress`` -> ``Completed``
(simulated workers write the output in Ground Truth's formats) or ``Failed``/``Stopping``/
``Stopped`` on demand (see :class:`Behaviour`). Every status change puts SageMaker's real
``SageMaker Ground Truth Labeling Job State Change`` event on the default event bus of the
AWS-compatible endpoint.

Control API (JSON over HTTP on the same port):

- ``GET  /_simulator/health``                 -> ``{"status": "ok", "jobs": N, ...}``
- ``GET  /_simulator/behaviour``              -> the behaviour rules
- ``POST /_simulator/behaviour``              ``{"pattern": "vehicle-*", "mode": "fail", "delay_seconds": 1,
  "failure_reason": "..."}`` (``job_name_pattern`` is accepted for ``pattern``)
- ``DELETE /_simulator/behaviour``            -> clears every rule
- ``POST /_simulator/emit``                   ``{"LabelingJobName": "..."}``: re-sends the job's last event
- ``GET  /_simulator/jobs``                   -> every job's name, ARN and status
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import io
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self
from urllib.parse import urlparse

import boto3
import botocore.session
from botocore.config import Config
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Ground Truth Labeling Job State Change"
IN_FLIGHT = {"Initializing", "InProgress", "Stopping"}
TERMINAL = {"Completed", "Failed", "Stopped"}

VIDEO_FRAME_TYPES = {
    "VideoObjectDetection",
    "VideoObjectTracking",
    "AdjustmentVideoObjectDetection",
    "AdjustmentVideoObjectTracking",
}
POINT_CLOUD_TYPES = {
    "3DPointCloudObjectDetection",
    "3DPointCloudObjectTracking",
    "3DPointCloudSemanticSegmentation",
    "Adjustment3DPointCloudObjectDetection",
    "Adjustment3DPointCloudObjectTracking",
    "Adjustment3DPointCloudSemanticSegmentation",
}
# LabelAttributeName must end with "-ref" for these (CreateLabelingJob API reference).
REF_REQUIRED_TYPES = {
    "SemanticSegmentation",
    "AdjustmentSemanticSegmentation",
    "VideoObjectDetection",
    "AdjustmentVideoObjectDetection",
    "VideoObjectTracking",
    "AdjustmentVideoObjectTracking",
    "3DPointCloudSemanticSegmentation",
    "Adjustment3DPointCloudSemanticSegmentation",
    "3DPointCloudObjectTracking",
    "Adjustment3DPointCloudObjectTracking",
}
# Built-in types whose label attribute name must not end with "-ref".
REF_FORBIDDEN_TYPES = {
    "BoundingBox",
    "AdjustmentBoundingBox",
    "VerificationBoundingBox",
    "VerificationSemanticSegmentation",
    "ImageMultiClass",
    "ImageMultiClassMultiLabel",
    "TextMultiClass",
    "TextMultiClassMultiLabel",
    "NamedEntityRecognition",
    "VideoMultiClass",
}
# HumanTaskUiArn resource name -> task type (the UI ARN cannot tell an adjustment job apart).
UI_TASK_TYPES = {
    "VideoObjectDetection": "VideoObjectDetection",
    "VideoObjectTracking": "VideoObjectTracking",
    "PointCloudObjectDetection": "3DPointCloudObjectDetection",
    "PointCloudObjectTracking": "3DPointCloudObjectTracking",
    "PointCloudSemanticSegmentation": "3DPointCloudSemanticSegmentation",
    "NamedEntityRecognition": "NamedEntityRecognition",
}
ANNOTATION_TYPES = {"BoundingBox", "Polyline", "Polygon", "Keypoint"}
# annotationType -> name of the per-frame list in SeqLabel.json (sms-data-output).
ANNOTATION_LIST_KEYS = {
    "BoundingBox": "annotations",
    "Polyline": "polylines",
    "Polygon": "polygons",
    "Keypoint": "keypoints",
}
MAX_TASK_TIME_IMAGE_TEXT = 28_800
MAX_TASK_TIME_VIDEO_POINT_CLOUD = 2_592_000
MAX_AVAILABILITY_PUBLIC = 43_200
MAX_AVAILABILITY_PRIVATE = 2_592_000
PUBLIC_WORKTEAM = re.compile(r":workteam/public-crowd/")


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (the simulator is polled a lot); errors still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Behaviour(StrEnum):
    COMPLETE = "complete"
    FAIL = "fail"
    STALL = "stall"
    SLOW = "slow"
    SILENT = "silent"
    """Completes like COMPLETE but its state-change events are lost (never reach the bus)."""


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


@dataclass
class BehaviourRule:
    pattern: str
    mode: Behaviour
    delay_seconds: float | None = None
    failure_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "mode": self.mode.value,
            "delay_seconds": self.delay_seconds,
            "failure_reason": self.failure_reason,
        }


@dataclass
class Job:
    request: dict[str, Any]
    name: str
    arn: str
    task_type: str
    rule: BehaviourRule | None
    categories: dict[str, Any] | None
    status: str = "Initializing"
    creation_time: float = field(default_factory=time.time)
    last_modified_time: float = field(default_factory=time.time)
    failure_reason: str | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "TotalLabeled": 0,
            "HumanLabeled": 0,
            "MachineLabeled": 0,
            "FailedNonRetryableError": 0,
            "Unlabeled": 0,
        }
    )
    output_uri: str | None = None
    reference_code: str = field(default_factory=lambda: uuid.uuid4().hex)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    last_event: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# Validation against botocore's service model
# --------------------------------------------------------------------------------------------

_pattern_cache: dict[str, re.Pattern[str] | None] = {}


def _compiled(pattern: str) -> re.Pattern[str] | None:
    if pattern not in _pattern_cache:
        try:
            _pattern_cache[pattern] = None if "\\p{" in pattern else re.compile(pattern, re.DOTALL)
        except re.error:
            _pattern_cache[pattern] = None
    return _pattern_cache[pattern]


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    return f"'{json.dumps(value)}'"


def model_errors(shape: Any, value: Any, path: str) -> list[str]:
    """Constraint violations of ``value`` against a botocore shape, in AWS's message style."""
    errors: list[str] = []
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must be a structure"
            ]
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(
                    f"Value null at '{_sub(path, name)}' failed to satisfy constraint: Member must not be null"
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                errors.extend(model_errors(member, value[name], _sub(path, name)))
        return errors
    if kind == "list":
        if not isinstance(value, list):
            return [f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must be a list"]
        if "min" in meta and len(value) < meta["min"]:
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {meta['min']}"
            )
        if "max" in meta and len(value) > meta["max"]:
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']}"
            )
        for i, item in enumerate(value):
            errors.extend(model_errors(shape.member, item, f"{path}.{i + 1}.member"))
        return errors
    if kind == "string":
        if not isinstance(value, str):
            return [
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must be a string"
            ]
        if "min" in meta and len(value) < meta["min"]:
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {meta['min']}"
            )
        if "max" in meta and len(value) > meta["max"]:
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']}"
            )
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
            )
        if shape.enum and value not in shape.enum:
            errors.append(
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{', '.join(shape.enum)}]"
            )
        return errors
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [
                f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must be an integer"
            ]
        if "min" in meta and value < meta["min"]:
            errors.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {meta['min']}"
            )
        if "max" in meta and value > meta["max"]:
            errors.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value less than or equal to {meta['max']}"
            )
        return errors
    return errors


def _sub(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


def raise_model_errors(errors: list[str]) -> None:
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise validation(f"{count} validation {noun} detected: " + "; ".join(errors))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def join_s3(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *[p.strip("/") for p in parts]])


def task_type_of(request: dict[str, Any]) -> str:
    """The built-in task type, from the PRE- Lambda function name, else the HumanTaskUiArn."""
    htc = request.get("HumanTaskConfig") or {}
    pre = htc.get("PreHumanTaskLambdaArn") or ""
    match = re.search(r":function:PRE-([A-Za-z0-9]+)$", pre)
    if match:
        return match.group(1)
    ui = (htc.get("UiConfig") or {}).get("HumanTaskUiArn") or ""
    match = re.search(r":human-task-ui/([A-Za-z0-9]+)$", ui)
    if match and match.group(1) in UI_TASK_TYPES:
        return UI_TASK_TYPES[match.group(1)]
    return "Custom"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()[:8], "big")


# --------------------------------------------------------------------------------------------
# Simulated workers: output in Ground Truth's formats
# --------------------------------------------------------------------------------------------


def _attribute_values(rng: random.Random, attributes: list[dict[str, Any]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in attributes or []:
        name = attribute.get("name")
        if not name:
            continue
        if attribute.get("enum"):
            values[name] = attribute["enum"][0] if rng.random() < 0.7 else rng.choice(attribute["enum"])
        elif attribute.get("type") == "number":
            low, high = int(attribute.get("minimum", 0)), int(attribute.get("maximum", 10))
            values[name] = rng.randint(low, max(low, high))
    return values


def _label_attributes(
    rng: random.Random, categories: dict[str, Any], label: dict[str, Any]
) -> dict[str, Any]:
    attributes = list(categories.get("categoryGlobalAttributes") or []) + list(
        label.get("categoryAttributes") or []
    )
    return _attribute_values(rng, attributes)


def generate_video_annotations(
    job_name: str,
    object_index: int,
    categories: dict[str, Any],
    frames: list[dict[str, Any]],
    width: int,
    height: int,
    tracking: bool,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``SeqLabel.json`` body for one sequence, and the class map of the classes used.

    Deterministic (seeded by job name and data object); objects move smoothly inside the frame.
    """
    rng = random.Random(_seed(job_name, object_index))
    labels = [lab for lab in categories.get("labels") or [] if isinstance(lab, dict) and lab.get("label")]
    annotation_type = categories.get("annotationType") or "BoundingBox"
    list_key = ANNOTATION_LIST_KEYS.get(annotation_type, "annotations")
    n_frames = len(frames)
    objects = []
    counts: dict[str, int] = {}
    for k in range(rng.randint(2, 3) if annotation_type != "Polyline" else min(3, max(1, len(labels)))):
        class_id = k % len(labels) if annotation_type == "Polyline" else rng.randrange(len(labels))
        label = labels[class_id]
        counts[label["label"]] = counts.get(label["label"], 0) + 1
        obj: dict[str, Any] = {
            "class-id": str(class_id),
            "label": label,
            "object-id": str(uuid.UUID(int=_seed(job_name, object_index, k) << 64 | _seed(k, job_name))),
            "object-name": f"{label['label']}:{counts[label['label']]}",
            "attributes": _label_attributes(rng, categories, label),
            "first": 0 if k == 0 else rng.randrange(max(1, n_frames // 3)),
        }
        if annotation_type in ("BoundingBox", "Keypoint"):
            w = rng.randint(max(8, width // 12), max(10, width // 5))
            h = int(w * rng.uniform(0.5, 0.9))
            obj.update(
                w=w,
                h=h,
                x=rng.uniform(0, width - w),
                y=rng.uniform(height * 0.3, max(height * 0.3 + 1, height - h)),
                vx=rng.uniform(-0.02, 0.02) * width,
                vy=rng.uniform(-0.005, 0.005) * height,
            )
        else:
            bottom_x = width * (0.1 + 0.8 * (k + 0.5) / 3)
            obj.update(
                points=[
                    (width / 2 + (bottom_x - width / 2) * t, height * (0.4 + 0.6 * t))
                    for t in (0.0, 0.35, 0.7, 1.0)
                ],
                drift=rng.uniform(-0.004, 0.004) * width,
            )
        objects.append(obj)

    def clamp(v: float, low: float, high: float) -> int:
        return round(min(max(v, low), high))

    frame_entries = []
    used: dict[str, str] = {}
    for i, frame in enumerate(frames):
        annotations = []
        for obj in objects:
            if i < obj["first"]:
                continue
            entry: dict[str, Any]
            if annotation_type == "BoundingBox":
                left = clamp(obj["x"] + obj["vx"] * i, 0, width - obj["w"])
                top = clamp(obj["y"] + obj["vy"] * i, 0, height - obj["h"])
                entry = {"height": obj["h"], "width": obj["w"], "top": top, "left": left}
            elif annotation_type == "Keypoint":
                entry = {
                    "vertices": [
                        {
                            "x": clamp(obj["x"] + obj["vx"] * i + obj["w"] / 2, 0, width - 1),
                            "y": clamp(obj["y"] + obj["vy"] * i + obj["h"] / 2, 0, height - 1),
                        }
                    ]
                }
            else:
                vertices = [
                    {"x": clamp(x + obj["drift"] * i, 0, width - 1), "y": clamp(y, 0, height - 1)}
                    for x, y in obj["points"]
                ]
                entry = {"vertices": vertices}
            entry["class-id"] = obj["class-id"]
            entry["label-category-attributes"] = dict(obj["attributes"])
            if tracking:
                entry["object-id"] = obj["object-id"]
                entry["object-name"] = obj["object-name"]
            used[obj["class-id"]] = obj["label"]["label"]
            annotations.append(entry)
        frame_entries.append(
            {
                list_key: annotations,
                "frame-no": frame.get("frame-no", i),
                "frame": frame.get("frame"),
                "frame-attributes": _attribute_values(rng, categories.get("frameAttributes") or []),
            }
        )
    key = "tracking-annotations" if tracking else "detection-annotations"
    return {key: frame_entries}, dict(sorted(used.items(), key=lambda kv: int(kv[0])))


def adjust_annotations(
    job_name: str, object_index: int, parent: dict[str, Any], width: int | None, height: int | None
) -> tuple[dict[str, Any], bool]:
    """An adjusted copy of a parent ``SeqLabel.json``: some objects nudged by a few pixels."""
    rng = random.Random(_seed(job_name, object_index, "adjust"))
    adjusted = copy.deepcopy(parent)
    changed = False
    key = "tracking-annotations" if "tracking-annotations" in adjusted else "detection-annotations"
    object_ids = sorted(
        {
            a.get("object-id") or a.get("object-name") or str(n)
            for frame in adjusted.get(key, [])
            for lk in ANNOTATION_LIST_KEYS.values()
            for n, a in enumerate(frame.get(lk, []))
        }
    )
    nudged = {
        oid: (rng.choice([-3, -2, -1, 1, 2, 3]), rng.choice([-2, -1, 1, 2]))
        for oid in object_ids
        if rng.random() < 0.4
    }
    if object_ids and not nudged:
        nudged[object_ids[0]] = (2, 1)
    for frame in adjusted.get(key, []):
        for list_key in ANNOTATION_LIST_KEYS.values():
            for n, annotation in enumerate(frame.get(list_key, [])):
                oid = annotation.get("object-id") or annotation.get("object-name") or str(n)
                if oid not in nudged:
                    continue
                dx, dy = nudged[oid]
                if "left" in annotation and "top" in annotation:
                    max_left = (width - annotation.get("width", 0)) if width else None
                    max_top = (height - annotation.get("height", 0)) if height else None
                    new_left = max(0, annotation["left"] + dx)
                    new_top = max(0, annotation["top"] + dy)
                    if max_left is not None:
                        new_left = min(new_left, max(0, max_left))
                    if max_top is not None:
                        new_top = min(new_top, max(0, max_top))
                    changed |= (new_left, new_top) != (annotation["left"], annotation["top"])
                    annotation["left"], annotation["top"] = new_left, new_top
                for vertex in annotation.get("vertices", []):
                    new_x = max(0, vertex["x"] + dx)
                    new_y = max(0, vertex["y"] + dy)
                    if width:
                        new_x = min(new_x, width - 1)
                    if height:
                        new_y = min(new_y, height - 1)
                    changed |= (new_x, new_y) != (vertex["x"], vertex["y"])
                    vertex["x"], vertex["y"] = new_x, new_y
    return adjusted, changed


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class SimulatedGroundTruth:
    """SageMaker's labeling-job API, served locally. See the module docstring."""

    def __init__(
        self,
        aws_endpoint_url: str,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        work_seconds: float = 1.0,
        max_concurrent_jobs: int | None = None,
    ) -> None:
        self.aws_endpoint_url = aws_endpoint_url
        self.region = region
        self.account_id = account_id
        self.work_seconds = work_seconds
        self.max_concurrent_jobs = max_concurrent_jobs
        self.url = ""
        self._jobs: dict[str, Job] = {}
        self._rules: list[BehaviourRule] = []
        self._lock = threading.RLock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._shutdown = threading.Event()
        model = botocore.session.get_session().get_service_model("sagemaker")
        self._inputs = {
            op: model.operation_model(op).input_shape
            for op in ("CreateLabelingJob", "DescribeLabelingJob", "StopLabelingJob", "ListLabelingJobs")
        }
        self._clients: dict[str, Any] = {}

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 4580) -> str:
        self._shutdown.clear()
        self._server = make_server(host, port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="simulated-ground-truth", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._shutdown.set()
        with self._lock:
            for job in self._jobs.values():
                job.stop_requested.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        if not self.url:
            self.start(port=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ------------------------------------------------------------------------------

    def set_behaviour(
        self,
        job_name_pattern: str,
        mode: Behaviour | str,
        delay_seconds: float | None = None,
        failure_reason: str | None = None,
    ) -> None:
        """Jobs created from now on whose name matches ``job_name_pattern`` (fnmatch,
        case-insensitive) behave as ``mode``. A later rule for the same pattern replaces it;
        the most recently set matching rule wins."""
        rule = BehaviourRule(job_name_pattern, Behaviour(str(mode).lower()), delay_seconds, failure_reason)
        with self._lock:
            self._rules = [r for r in self._rules if r.pattern.lower() != job_name_pattern.lower()]
            self._rules.append(rule)

    def clear_behaviours(self) -> None:
        with self._lock:
            self._rules = []

    def behaviours(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def _rule_for(self, name: str) -> BehaviourRule | None:
        with self._lock:
            for rule in reversed(self._rules):
                if fnmatch.fnmatchcase(name.lower(), rule.pattern.lower()):
                    return rule
        return None

    # -- AWS clients ----------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.session.Session().client(
                    service,
                    endpoint_url=self.aws_endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                    aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                    config=Config(retries={"max_attempts": 3, "mode": "standard"}),
                )
            return self._clients[service]

    def _read_s3(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        return self._client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def _write_s3(self, uri: str, body: bytes, content_type: str = "application/json") -> None:
        bucket, key = parse_s3_uri(uri)
        self._client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    # -- HTTP -----------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            if request.path.startswith("/_simulator"):
                response = self._control(request)
            else:
                response = self._api(request)
        except Exception as exc:
            logger.exception("simulated Ground Truth: internal error")
            response = self._error(ApiError("InternalFailure", str(exc), 500))
        return response(environ, start_response)

    @staticmethod
    def _json(body: Any, status: int = 200, content_type: str = "application/x-amz-json-1.1") -> Response:
        return Response(
            json.dumps(body, default=str),
            status=status,
            content_type=content_type,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    def _error(self, error: ApiError) -> Response:
        response = self._json({"__type": error.code, "message": error.message}, status=error.status)
        response.headers["x-amzn-ErrorType"] = error.code
        return response

    def _api(self, request: Request) -> Response:
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.partition(".")
        if request.method != "POST" or prefix != "SageMaker":
            return self._error(ApiError("UnknownOperationException", f"Unknown operation {target!r}"))
        handlers = {
            "CreateLabelingJob": self.create_labeling_job,
            "DescribeLabelingJob": self.describe_labeling_job,
            "StopLabelingJob": self.stop_labeling_job,
            "ListLabelingJobs": self.list_labeling_jobs,
        }
        handler = handlers.get(operation)
        if handler is None:
            return self._error(
                ApiError(
                    "UnknownOperationException",
                    f"The simulated Ground Truth does not implement SageMaker.{operation}",
                )
            )
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except json.JSONDecodeError:
            return self._error(ApiError("SerializationException", "Request body is not valid JSON"))
        try:
            return self._json(handler(body))
        except ApiError as error:
            return self._error(error)

    def _control(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        plain = "application/json"
        try:
            body = (
                json.loads(request.get_data(as_text=True) or "{}")
                if request.method in ("POST", "PUT")
                else {}
            )
        except json.JSONDecodeError:
            return self._json({"error": "body is not valid JSON"}, 400, plain)
        if path == "/_simulator/health":
            with self._lock:
                jobs = len(self._jobs)
            return self._json(
                {
                    "status": "ok",
                    "jobs": jobs,
                    "region": self.region,
                    "aws_endpoint_url": self.aws_endpoint_url,
                },
                content_type=plain,
            )
        if path == "/_simulator/behaviour":
            if request.method == "GET":
                return self._json({"rules": self.behaviours()}, content_type=plain)
            if request.method == "DELETE":
                self.clear_behaviours()
                return self._json({"rules": []}, content_type=plain)
            if request.method in ("POST", "PUT"):
                pattern = body.get("pattern") or body.get("job_name_pattern")
                mode = body.get("mode")
                try:
                    if not pattern or not mode:
                        raise ValueError("pattern and mode are required")
                    self.set_behaviour(pattern, mode, body.get("delay_seconds"), body.get("failure_reason"))
                except ValueError as exc:
                    return self._json({"error": str(exc), "modes": [b.value for b in Behaviour]}, 400, plain)
                return self._json({"rules": self.behaviours()}, content_type=plain)
        if path == "/_simulator/emit" and request.method == "POST":
            name = body.get("LabelingJobName") or body.get("name") or ""
            job = self._find(name)
            if job is None:
                return self._json({"error": f"no labeling job named {name!r}"}, 404, plain)
            if job.last_event is None:
                return self._json({"error": "the job has not emitted an event yet"}, 409, plain)
            self._put_event(job.last_event)
            return self._json({"emitted": job.last_event}, content_type=plain)
        if path == "/_simulator/jobs" and request.method == "GET":
            with self._lock:
                jobs = [
                    {
                        "LabelingJobName": j.name,
                        "LabelingJobArn": j.arn,
                        "LabelingJobStatus": j.status,
                        "TaskType": j.task_type,
                    }
                    for j in self._jobs.values()
                ]
            return self._json({"jobs": jobs}, content_type=plain)
        return self._json({"error": f"no route {request.method} {request.path}"}, 404, plain)

    # -- operations -----------------------------------------------------------------------------

    def _find(self, name: str) -> Job | None:
        with self._lock:
            return self._jobs.get(name.lower())

    def _arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:labeling-job/{name.lower()}"

    def create_labeling_job(self, body: dict[str, Any]) -> dict[str, Any]:
        raise_model_errors(model_errors(self._inputs["CreateLabelingJob"], body, ""))
        name = body["LabelingJobName"]
        with self._lock:
            existing = self._jobs.get(name.lower())
            if existing is not None:
                raise ApiError(
                    "ResourceInUse",
                    f"Job name must be unique within an AWS account and region, "
                    f"and a job with this name already exists ({existing.arn})",
                )
            if self.max_concurrent_jobs is not None:
                in_flight = sum(1 for j in self._jobs.values() if j.status in IN_FLIGHT)
                if in_flight >= self.max_concurrent_jobs:
                    raise ApiError(
                        "ResourceLimitExceeded",
                        f"You have reached the limit of {self.max_concurrent_jobs} active labeling jobs.",
                    )
        task_type = task_type_of(body)
        categories = self._validate_ground_truth_rules(body, task_type)
        job = Job(
            request=copy.deepcopy(body),
            name=name,
            arn=self._arn(name),
            task_type=task_type,
            rule=self._rule_for(name),
            categories=categories,
        )
        with self._lock:
            if name.lower() in self._jobs:  # created concurrently while S3 was read
                raise ApiError(
                    "ResourceInUse",
                    f"Job name must be unique within an AWS account and region, "
                    f"and a job with this name already exists ({self._jobs[name.lower()].arn})",
                )
            self._jobs[name.lower()] = job
        threading.Thread(target=self._run, args=(job,), name=f"labeling-job-{name}", daemon=True).start()
        return {"LabelingJobArn": job.arn}

    def _validate_ground_truth_rules(self, body: dict[str, Any], task_type: str) -> dict[str, Any] | None:
        attr = body["LabelAttributeName"]
        htc = body["HumanTaskConfig"]
        video_or_point_cloud = task_type in VIDEO_FRAME_TYPES or task_type in POINT_CLOUD_TYPES
        adjustment = task_type.startswith(("Adjustment", "Verification"))
        if attr.endswith("-metadata"):
            raise validation(f'LabelAttributeName {attr} is invalid: the name can\'t end with "-metadata".')
        if task_type in REF_REQUIRED_TYPES and not attr.endswith("-ref"):
            raise validation(
                f"LabelAttributeName {attr} is invalid: for {task_type} labeling jobs the label "
                f'attribute name must end with "-ref".'
            )
        if task_type in REF_FORBIDDEN_TYPES and attr.endswith("-ref"):
            raise validation(
                f"LabelAttributeName {attr} is invalid: for {task_type} labeling jobs the label "
                f'attribute name must not end with "-ref".'
            )
        public = bool(PUBLIC_WORKTEAM.search(htc["WorkteamArn"]))
        if video_or_point_cloud:
            if htc["NumberOfHumanWorkersPerDataObject"] != 1:
                raise validation(
                    f"NumberOfHumanWorkersPerDataObject must be 1 for {task_type} labeling jobs, "
                    f"got {htc['NumberOfHumanWorkersPerDataObject']}."
                )
            if public:
                raise validation(
                    f"{task_type} labeling jobs can only use a private or vendor work team; "
                    f"the Amazon Mechanical Turk workforce is not supported."
                )
            if not (htc.get("UiConfig") or {}).get("HumanTaskUiArn"):
                raise validation(
                    f"HumanTaskConfig.UiConfig.HumanTaskUiArn is required for {task_type} labeling jobs."
                )
        if "PublicWorkforceTaskPrice" in htc and not public:
            raise validation(
                "PublicWorkforceTaskPrice can only be used with the Amazon Mechanical Turk workforce."
            )
        max_task_time = MAX_TASK_TIME_VIDEO_POINT_CLOUD if video_or_point_cloud else MAX_TASK_TIME_IMAGE_TEXT
        if htc["TaskTimeLimitInSeconds"] > max_task_time:
            raise validation(
                f"TaskTimeLimitInSeconds {htc['TaskTimeLimitInSeconds']} is greater than the maximum "
                f"of {max_task_time} seconds for {task_type} labeling jobs."
            )
        availability = htc.get("TaskAvailabilityLifetimeInSeconds")
        max_availability = MAX_AVAILABILITY_PUBLIC if public else MAX_AVAILABILITY_PRIVATE
        if availability is not None and availability > max_availability:
            raise validation(
                f"TaskAvailabilityLifetimeInSeconds {availability} is greater than the maximum of "
                f"{max_availability} seconds for this workforce."
            )
        if not (htc.get("UiConfig") or {}).get("HumanTaskUiArn") and not (htc.get("UiConfig") or {}).get(
            "UiTemplateS3Uri"
        ):
            raise validation(
                "HumanTaskConfig.UiConfig must contain either UiTemplateS3Uri or HumanTaskUiArn."
            )
        if task_type == "Custom" and not htc.get("PreHumanTaskLambdaArn"):
            raise validation("PreHumanTaskLambdaArn is required for custom labeling jobs.")
        if (
            task_type != "Custom"
            and not (htc.get("AnnotationConsolidationConfig") or {}).get("AnnotationConsolidationLambdaArn")
            and "AnnotationConsolidationConfig" not in htc
        ):
            pass  # optional in the current API for built-in task types
        # S3 locations
        data_source = body["InputConfig"]["DataSource"]
        s3_source = data_source.get("S3DataSource")
        if not s3_source and not data_source.get("SnsDataSource"):
            raise validation("InputConfig.DataSource must contain S3DataSource or SnsDataSource.")
        if not s3_source:
            raise validation(
                "The simulated Ground Truth supports S3DataSource input only (no streaming jobs)."
            )
        uris = {
            "InputConfig.DataSource.S3DataSource.ManifestS3Uri": s3_source["ManifestS3Uri"],
            "OutputConfig.S3OutputPath": body["OutputConfig"]["S3OutputPath"],
        }
        if body.get("LabelCategoryConfigS3Uri"):
            uris["LabelCategoryConfigS3Uri"] = body["LabelCategoryConfigS3Uri"]
        for member, uri in uris.items():
            try:
                _, key = parse_s3_uri(uri)
            except ValueError:
                raise validation(f"{member} {uri} is not a valid Amazon S3 URI (s3://bucket/key).") from None
            if member != "OutputConfig.S3OutputPath" and (not key or key.endswith("/")):
                raise validation(f"{member} {uri} must point to an object, not a bucket or prefix.")
        try:
            self._read_s3(s3_source["ManifestS3Uri"])
        except Exception:  # noqa: BLE001
            raise validation(
                f"Failed to read the input manifest {s3_source['ManifestS3Uri']}: the object does "
                f"not exist or the role {body['RoleArn']} cannot read it."
            ) from None
        if video_or_point_cloud and not body.get("LabelCategoryConfigS3Uri"):
            raise validation(f"LabelCategoryConfigS3Uri is required for {task_type} labeling jobs.")
        categories: dict[str, Any] | None = None
        if body.get("LabelCategoryConfigS3Uri"):
            uri = body["LabelCategoryConfigS3Uri"]
            try:
                raw = self._read_s3(uri)
            except Exception:  # noqa: BLE001
                raise validation(
                    f"Failed to read the label category configuration file {uri}: the object does "
                    f"not exist or the role {body['RoleArn']} cannot read it."
                ) from None
            try:
                categories = json.loads(raw)
                if not isinstance(categories, dict):
                    raise TypeError
            except (ValueError, TypeError):
                raise validation(
                    f"The label category configuration file {uri} is not a valid JSON object."
                ) from None
            self._validate_categories(categories, uri, task_type, attr, video_or_point_cloud, adjustment)
        return categories

    @staticmethod
    def _validate_categories(
        categories: dict[str, Any],
        uri: str,
        task_type: str,
        attr: str,
        video_or_point_cloud: bool,
        adjustment: bool,
    ) -> None:
        labels = categories.get("labels")
        if not isinstance(labels, list) or not labels:
            raise validation(
                f'The label category configuration file {uri} must contain a non-empty "labels" list.'
            )
        names = [lab.get("label") if isinstance(lab, dict) else None for lab in labels]
        if any(not isinstance(n, str) or not n for n in names):
            raise validation(f'Every entry of "labels" in {uri} must have a "label".')
        if len(set(names)) != len(names):
            raise validation(f"The label categories in {uri} must be unique.")
        if video_or_point_cloud:
            if len(labels) > 30:
                raise validation(
                    f"{task_type} labeling jobs accept at most 30 labels; {uri} has {len(labels)}."
                )
            too_long = [n for n in names if len(n) > 16]
            if too_long:
                raise validation(f"Label names can have at most 16 characters: {', '.join(too_long)}.")
        annotation_type = categories.get("annotationType")
        if annotation_type is not None:
            if task_type not in VIDEO_FRAME_TYPES:
                raise validation("annotationType is only supported for video frame labeling jobs.")
            if annotation_type not in ANNOTATION_TYPES:
                raise validation(
                    f"annotationType {annotation_type} is invalid; accepted values: "
                    f"{', '.join(sorted(ANNOTATION_TYPES))}."
                )
        instructions = categories.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, dict):
                raise validation(
                    '"instructions" must be a JSON object with shortInstruction and fullInstruction.'
                )
            if (
                len(str(instructions.get("shortInstruction", ""))) >= 255
                or len(str(instructions.get("fullInstruction", ""))) >= 2048
            ):
                raise validation(
                    "Short instructions must be under 255 characters and full instructions under 2,048."
                )
        if task_type == "NamedEntityRecognition" and not instructions:
            raise validation(
                'Named entity recognition labeling jobs need "instructions" in the label category file.'
            )
        audit = categories.get("auditLabelAttributeName")
        if adjustment and video_or_point_cloud:
            if not audit:
                raise validation(
                    f'{task_type} labeling jobs need "auditLabelAttributeName" in the label category '
                    f"configuration file {uri}: the LabelAttributeName of the job to adjust or verify."
                )
            if audit == attr:
                raise validation(
                    f"An adjustment or verification labeling job must use a different LabelAttributeName "
                    f"than the original labeling job ({audit})."
                )

    def describe_labeling_job(self, body: dict[str, Any]) -> dict[str, Any]:
        raise_model_errors(model_errors(self._inputs["DescribeLabelingJob"], body, ""))
        job = self._find(body["LabelingJobName"])
        if job is None:
            raise ApiError(
                "ResourceNotFound", f"Could not find labeling job with name {body['LabelingJobName']}"
            )
        with self._lock:
            request = job.request
            out: dict[str, Any] = {
                "LabelingJobStatus": job.status,
                "LabelCounters": dict(job.counters),
                "CreationTime": job.creation_time,
                "LastModifiedTime": job.last_modified_time,
                "JobReferenceCode": job.reference_code,
                "LabelingJobName": job.name,
                "LabelingJobArn": job.arn,
                "LabelAttributeName": request["LabelAttributeName"],
                "InputConfig": request["InputConfig"],
                "OutputConfig": request["OutputConfig"],
                "RoleArn": request["RoleArn"],
                "HumanTaskConfig": request["HumanTaskConfig"],
            }
            for member in (
                "LabelCategoryConfigS3Uri",
                "StoppingConditions",
                "LabelingJobAlgorithmsConfig",
                "Tags",
            ):
                if request.get(member) is not None:
                    out[member] = request[member]
            if job.failure_reason:
                out["FailureReason"] = job.failure_reason
            if job.output_uri:
                out["LabelingJobOutput"] = {"OutputDatasetS3Uri": job.output_uri}
            return copy.deepcopy(out)

    def stop_labeling_job(self, body: dict[str, Any]) -> dict[str, Any]:
        raise_model_errors(model_errors(self._inputs["StopLabelingJob"], body, ""))
        job = self._find(body["LabelingJobName"])
        if job is None:
            raise ApiError(
                "ResourceNotFound", f"Could not find labeling job with name {body['LabelingJobName']}"
            )
        with self._lock:
            if job.status in TERMINAL:
                raise validation(f"Labeling job {job.name} cannot be stopped: its status is {job.status}.")
            job.stop_requested.set()
        return {}

    def list_labeling_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        raise_model_errors(model_errors(self._inputs["ListLabelingJobs"], body, ""))
        with self._lock:
            jobs = list(self._jobs.values())

        def within(value: float, after: Any, before: Any) -> bool:
            return (after is None or value > float(after)) and (before is None or value < float(before))

        selected = [
            j
            for j in jobs
            if within(j.creation_time, body.get("CreationTimeAfter"), body.get("CreationTimeBefore"))
            and within(
                j.last_modified_time, body.get("LastModifiedTimeAfter"), body.get("LastModifiedTimeBefore")
            )
            and (not body.get("NameContains") or body["NameContains"].lower() in j.name.lower())
            and (not body.get("StatusEquals") or j.status == body["StatusEquals"])
        ]
        sort_by = body.get("SortBy", "CreationTime")
        keys = {
            "Name": lambda j: j.name.lower(),
            "CreationTime": lambda j: j.creation_time,
            "Status": lambda j: j.status,
        }
        selected.sort(key=keys[sort_by], reverse=body.get("SortOrder", "Ascending") == "Descending")
        try:
            start = int(body.get("NextToken") or 0)
        except ValueError:
            raise validation("Invalid pagination token.") from None
        size = body.get("MaxResults", 10)
        page = selected[start : start + size]
        summaries = []
        for j in page:
            htc = j.request["HumanTaskConfig"]
            summary: dict[str, Any] = {
                "LabelingJobName": j.name,
                "LabelingJobArn": j.arn,
                "CreationTime": j.creation_time,
                "LastModifiedTime": j.last_modified_time,
                "LabelingJobStatus": j.status,
                "LabelCounters": dict(j.counters),
                "WorkteamArn": htc["WorkteamArn"],
                "InputConfig": j.request["InputConfig"],
            }
            if htc.get("PreHumanTaskLambdaArn"):
                summary["PreHumanTaskLambdaArn"] = htc["PreHumanTaskLambdaArn"]
            acs = (htc.get("AnnotationConsolidationConfig") or {}).get("AnnotationConsolidationLambdaArn")
            if acs:
                summary["AnnotationConsolidationLambdaArn"] = acs
            if j.failure_reason:
                summary["FailureReason"] = j.failure_reason
            if j.output_uri:
                summary["LabelingJobOutput"] = {"OutputDatasetS3Uri": j.output_uri}
            summaries.append(summary)
        out: dict[str, Any] = {"LabelingJobSummaryList": summaries}
        if start + size < len(selected):
            out["NextToken"] = str(start + size)
        return out

    # -- job life cycle ------------------------------------------------------------------------

    def _set_status(self, job: Job, status: str, failure_reason: str | None = None) -> None:
        with self._lock:
            job.status = status
            job.last_modified_time = time.time()
            if failure_reason:
                job.failure_reason = failure_reason[:1024]
            event = {
                "Source": EVENT_SOURCE,
                "DetailType": EVENT_DETAIL_TYPE,
                "Resources": [job.arn],
                "Detail": json.dumps({"LabelingJobStatus": status}),
            }
            job.last_event = event
        if job.rule is not None and job.rule.mode is Behaviour.SILENT:
            logger.info("simulated Ground Truth: dropping %s's %s event (silent mode)", job.name, status)
            return
        self._put_event(event)

    def _put_event(self, event: dict[str, Any]) -> None:
        try:
            entry = dict(event, Time=datetime.now(UTC))
            result = self._client("events").put_events(Entries=[entry])
            if result.get("FailedEntryCount"):
                logger.warning("simulated Ground Truth: event not accepted: %s", result)
        except Exception:
            logger.exception("simulated Ground Truth: could not put the state-change event")

    def _run(self, job: Job) -> None:
        rule = job.rule
        mode = rule.mode if rule else Behaviour.COMPLETE
        delay = rule.delay_seconds if rule and rule.delay_seconds is not None else None
        try:
            n_objects = self._count_objects(job)
        except Exception:  # noqa: BLE001
            n_objects = 0
        with self._lock:
            job.counters["Unlabeled"] = n_objects
        if job.stop_requested.wait(min(0.05, self.work_seconds / 4)):
            return self._stop(job)
        self._set_status(job, "InProgress")
        if mode is Behaviour.STALL:
            job.stop_requested.wait()
            return self._stop(job)
        if mode is Behaviour.SLOW:
            wait = delay if delay is not None else self.work_seconds * 5
        else:
            wait = delay if delay is not None else self.work_seconds
        if job.stop_requested.wait(wait):
            return self._stop(job)
        if mode is Behaviour.FAIL:
            reason = (
                rule.failure_reason
                if rule and rule.failure_reason
                else "ClientError: Simulated failure requested through the simulator's behaviour settings."
            )
            return self._set_status(job, "Failed", reason)
        try:
            labeled, output_uri = self._work(job)
        except _JobFailure as failure:
            return self._set_status(job, "Failed", str(failure))
        except Exception as exc:
            logger.exception("simulated Ground Truth: job %s failed", job.name)
            return self._set_status(job, "Failed", f"ClientError: {exc}")
        if self._shutdown.is_set():
            return
        with self._lock:
            job.output_uri = output_uri
            job.counters.update(
                TotalLabeled=labeled,
                HumanLabeled=labeled,
                MachineLabeled=0,
                FailedNonRetryableError=0,
                Unlabeled=max(0, n_objects - labeled),
            )
        self._set_status(job, "Completed")

    def _stop(self, job: Job) -> None:
        if self._shutdown.is_set():
            return
        self._set_status(job, "Stopping")
        time.sleep(min(0.05, self.work_seconds / 4))
        self._set_status(job, "Stopped")

    def _count_objects(self, job: Job) -> int:
        raw = self._read_s3(job.request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
        return sum(1 for line in raw.decode().splitlines() if line.strip())

    def _frame_size(self, sequence: dict[str, Any]) -> tuple[int, int]:
        frames = sequence.get("frames") or []
        if frames and sequence.get("prefix"):
            try:
                from PIL import Image

                raw = self._read_s3(sequence["prefix"].rstrip("/") + "/" + frames[0]["frame"])
                with Image.open(io.BytesIO(raw)) as image:
                    return image.size
            except Exception:  # noqa: BLE001 - fall back to a common size
                logger.debug("simulated Ground Truth: cannot read frame size of %s", sequence.get("prefix"))
        return 1920, 1080

    def _work(self, job: Job) -> tuple[int, str]:
        """The simulated workers: write annotations and the output manifest; return (labeled, uri)."""
        request = job.request
        attr = request["LabelAttributeName"]
        base = join_s3(request["OutputConfig"]["S3OutputPath"], job.name)
        manifest_uri = request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
        lines = [
            json.loads(line) for line in self._read_s3(manifest_uri).decode().splitlines() if line.strip()
        ]
        if not lines:
            raise _JobFailure(
                "ClientError: The input manifest file is empty; there are no data objects to label."
            )
        categories = job.categories or {}
        created = now_iso()
        output_lines = []
        task_type = job.task_type
        for index, line in enumerate(lines):
            out = dict(line)
            metadata: dict[str, Any]
            if task_type in VIDEO_FRAME_TYPES:
                tracking = task_type.endswith("ObjectTracking")
                kind = (
                    "groundtruth/video-object-tracking" if tracking else "groundtruth/video-object-detection"
                )
                seq_label_uri = join_s3(
                    base, "annotations/consolidated-annotation/output", str(index), "SeqLabel.json"
                )
                if task_type.startswith("Adjustment"):
                    audit = categories.get("auditLabelAttributeName", "")
                    parent_uri = line.get(audit)
                    if not isinstance(parent_uri, str):
                        raise _JobFailure(
                            f"ClientError: Data object {index} of the input manifest has no "
                            f'"{audit}" attribute to adjust (auditLabelAttributeName).'
                        )
                    try:
                        parent = json.loads(self._read_s3(parent_uri))
                    except Exception:  # noqa: BLE001
                        raise _JobFailure(
                            f"ClientError: Cannot read the annotations to adjust at {parent_uri}."
                        ) from None
                    width = height = None
                    if isinstance(line.get("source-ref"), str):
                        try:
                            width, height = self._frame_size(json.loads(self._read_s3(line["source-ref"])))
                        except Exception:  # noqa: BLE001 - boxes are then clamped at 0 only
                            logger.debug(
                                "simulated Ground Truth: cannot read sequence %s", line["source-ref"]
                            )
                    seq_label, changed = adjust_annotations(job.name, index, parent, width, height)
                    parent_meta = line.get(f"{audit}-metadata") or {}
                    class_map = parent_meta.get("class-map") or {}
                    metadata = {
                        "class-map": class_map,
                        "job-name": f"labeling-job/{job.name}",
                        "human-annotated": "yes",
                        "creation-date": created,
                        "type": kind,
                        "adjustment-status": "adjusted" if changed else "unadjusted",
                    }
                else:
                    try:
                        sequence = json.loads(self._read_s3(line["source-ref"]))
                    except Exception:  # noqa: BLE001
                        raise _JobFailure(
                            f"ClientError: Cannot read the sequence file of data object {index} "
                            f"({line.get('source-ref')})."
                        ) from None
                    width, height = self._frame_size(sequence)
                    seq_label, class_map = generate_video_annotations(
                        job.name, index, categories, sequence.get("frames") or [], width, height, tracking
                    )
                    metadata = {
                        "class-map": class_map,
                        "job-name": f"labeling-job/{job.name}",
                        "human-annotated": "yes",
                        "creation-date": created,
                        "type": kind,
                    }
                self._write_s3(seq_label_uri, json.dumps(seq_label).encode())
                self._write_worker_response(base, index, seq_label)
                out[attr] = seq_label_uri
                out[f"{attr}-metadata"] = metadata
            else:
                # Other task types: a placeholder label in the generic output shape.
                out[attr] = {}
                out[f"{attr}-metadata"] = {
                    "job-name": f"labeling-job/{job.name}",
                    "human-annotated": "yes",
                    "creation-date": created,
                    "type": f"groundtruth/{task_type.lower()}",
                }
            output_lines.append(out)
        output_uri = join_s3(base, "manifests/output/output.manifest")
        body = "".join(json.dumps(line) + "\n" for line in output_lines).encode()
        self._write_s3(
            join_s3(base, "annotations/intermediate/1/annotations.manifest"), body, "application/jsonlines"
        )
        self._write_s3(output_uri, body, "application/jsonlines")
        return len(output_lines), output_uri

    def _write_worker_response(self, base: str, index: int, answer: dict[str, Any]) -> None:
        submitted = datetime.now(UTC)
        stamp = submitted.strftime("%Y-%m-%d_%H-%M-%S")
        worker = hashlib.sha256(base.encode()).hexdigest()[:16]
        response = {
            "answers": [
                {
                    "acceptanceTime": submitted.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "answerContent": answer,
                    "submissionTime": submitted.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "timeSpentInSeconds": round(self.work_seconds, 3),
                    "workerId": worker,
                    "workerMetadata": {
                        "identityData": {
                            "identityProviderType": "Cognito",
                            "issuer": f"https://cognito-idp.{self.region}.amazonaws.com/{self.region}_simulated",
                            "sub": str(uuid.UUID(worker * 2)),
                        }
                    },
                }
            ]
        }
        self._write_s3(
            join_s3(base, "annotations/worker-response/iteration-1", str(index), f"{stamp}.json"),
            json.dumps(response).encode(),
        )


class _JobFailure(Exception):
    """A data problem found while the job runs: the job ends Failed with this reason."""
