"""Processors between levels: what a chained job sees of its parent's output.

A chained job may declare ``inputConfig.processors``: an ordered list applied to the parent job's
output manifest before the chained job is created. Each declaration is one of
(a discriminated union on ``type``):

- ``{"type": "sample", "fraction": 0.1}`` or ``{"type": "sample", "count": 5}``, with
  ``"unit": "sequence"`` (default: keep that share of the manifest's lines) or ``"unit": "frame"``
  (keep every line, but only that share of each sequence's frames; see *Frame sampling* below).
  Picks are reproducible: the random generator is seeded with SHA-256 of batch id, job name and
  the optional ``seed`` string, so the same batch and job always pick the same lines, and another
  job (or batch) picks differently.
- ``{"type": "quality", ...}``: automated QA of tracking output. Each line's label (a
  ``SeqLabel.json``) is checked; only lines with at least one finding go on, each with the findings
  attached under :data:`QA_FLAGS_KEY` (a list of ``{"frame", "objectId", "check", "detail"}``), so
  the reviewer of the chained (audit/adjustment) job knows where to look. Extra keys on a manifest
  line are allowed by Ground Truth (it copies them to the output manifest), so the adjustment UI
  still accepts the line, and the flags travel on to the audit's output and the export.
- ``{"type": "custom", "callable": "package.module:function", "options": {...}}``: your own
  :class:`LineProcessor`.

Entry point: :func:`run_processors` streams the input manifest through the processors into the
output manifest (``manifests.iter_manifest`` -> processors -> ``manifests.write_manifest``); the
manifest is never held in memory. A result with ``lines_out == 0`` means the chained job has
nothing to label (the caller marks it ``SKIPPED``; Ground Truth refuses an empty manifest).

Frame sampling (``unit: frame``) is honest for video frame jobs this way: for each line it writes
a reduced *sequence file* (the original's ``frames`` list filtered to the picked frames,
``number-of-frames`` updated, ``prefix`` and each frame's ``frame-no``/``frame`` unchanged, so the
images are not copied) and, when the line carries the parent's labels, a reduced ``SeqLabel.json``
with only those frames' annotations. The line's ``source-ref`` and label attribute then point at
the reduced files and the line records the originals under :data:`FRAME_SAMPLE_KEY`
(``{"sourceRef", "labelRef", "frames": [frame-no...]}``; the original sequence is also kept under
:data:`SOURCE_REF_KEY`) so the export can put the reviewed frames back in their place. Picked
frames are evenly spaced (a constant stride with a seeded offset), so the worker sees the same
video at a lower frame rate rather than a random jumble; object IDs are kept. What a reviewer does
not see is not reviewed: frames left out keep the first pass's labels in the export.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import random
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Annotated, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from services.common import manifests

QA_FLAGS_KEY = "smgt-qa-flags"
"""Manifest line key carrying the quality findings: a list of {frame, objectId, check, detail}."""
FRAME_SAMPLE_KEY = "smgt-frame-sample"
"""Manifest line key recording a frame sample: {sourceRef, labelRef, frames}."""
SOURCE_REF_KEY = "smgt-source-ref"
"""The original sequence file of a line whose ``source-ref`` now points at a reduced copy."""

CALLABLE_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
ANNOTATION_LIST_KEYS = ("annotations", "polylines", "polygons", "keypoints")
_SPOOL_BYTES = 8 * 1024 * 1024
T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Declarations (what a request's inputConfig.processors holds)
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SampleProcessor(_Strict):
    """Keep a reproducible share of the lines (``unit: sequence``) or of each line's frames (``unit: frame``).

    ``fraction`` keeps ``round(fraction * n)`` (at least 1 when n > 0); ``count`` keeps ``min(count, n)``,
    where n is the number of lines (sequence) or of the sequence's frames (frame).
    """

    type: Literal["sample"]
    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1)
    unit: Literal["sequence", "frame"] = "sequence"
    seed: str | None = Field(default=None, max_length=128, description="mixed into the batch/job seed")

    @model_validator(mode="after")
    def _fraction_or_count(self) -> SampleProcessor:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("exactly one of fraction or count is required")
        return self

    def how_many(self, n: int) -> int:
        if n <= 0:
            return 0
        if self.count is not None:
            return min(self.count, n)
        assert self.fraction is not None
        return min(n, max(1, round(self.fraction * n)))


QualityCheck = Literal[
    "jump", "size", "out-of-frame", "short-track", "fragmented", "polyline-points", "empty-frame"
]
ALL_CHECKS: tuple[QualityCheck, ...] = (
    "jump",
    "size",
    "out-of-frame",
    "short-track",
    "fragmented",
    "polyline-points",
    "empty-frame",
)


class QualityProcessor(_Strict):
    """Automated QA of tracking output; only lines with findings go on, findings attached.

    Thresholds (per pair of consecutive annotated frames of one object; a gap of g frames divides
    the displacement by g and takes the g-th root of the area ratio):

    - ``jump``: centre displacement per frame / box size (mean of width and height of both boxes)
      above ``maxCenterJump``;
    - ``size``: area ratio per frame (larger / smaller) above ``maxAreaRatio``, or a box with no area;
    - ``out-of-frame``: a box or vertex more than ``outOfFrameTolerance`` pixels outside the frame
      (needs the frame size: ``frameWidth``/``frameHeight`` here, else ``frame-width``/``frame-height``
      or ``width``/``height`` in the SeqLabel, the label metadata or the sequence file; skipped if unknown);
    - ``short-track``: an object present in fewer than ``minTrackFrames`` frames;
    - ``fragmented``: an object missing from more than ``maxGapFrames`` consecutive frames of the
      sequence between its first and last appearance;
    - ``polyline-points``: a polyline (or polygon) with fewer than ``minPolylinePoints`` vertices;
    - ``empty-frame``: a frame with no annotation at all.
    """

    type: Literal["quality"]
    max_center_jump: float = Field(default=0.5, alias="maxCenterJump", gt=0)
    max_area_ratio: float = Field(default=1.5, alias="maxAreaRatio", gt=1)
    min_track_frames: int = Field(default=3, alias="minTrackFrames", ge=1)
    max_gap_frames: int = Field(default=0, alias="maxGapFrames", ge=0)
    min_polyline_points: int = Field(default=2, alias="minPolylinePoints", ge=2)
    out_of_frame_tolerance: float = Field(default=0.0, alias="outOfFrameTolerance", ge=0)
    frame_width: int | None = Field(default=None, alias="frameWidth", ge=1)
    frame_height: int | None = Field(default=None, alias="frameHeight", ge=1)
    read_sequence_for_frame_size: bool = Field(default=True, alias="readSequenceForFrameSize")
    checks: tuple[QualityCheck, ...] = ALL_CHECKS
    keep: Literal["flagged", "all"] = Field(
        default="flagged", description="'all' annotates without filtering"
    )
    max_flags_per_line: int = Field(default=200, alias="maxFlagsPerLine", ge=1)


class CustomProcessor(_Strict):
    """Your own :class:`LineProcessor`, imported from ``package.module:function`` at run time."""

    type: Literal["custom"]
    callable: str = Field(pattern=CALLABLE_PATTERN, description="package.module:function")
    options: dict[str, Any] = Field(default_factory=dict)


ProcessorSpec = Annotated[SampleProcessor | QualityProcessor | CustomProcessor, Field(discriminator="type")]
"""One entry of ``inputConfig.processors`` (use as ``list[ProcessorSpec]`` in the request model)."""

_SPECS = TypeAdapter(list[ProcessorSpec])


def parse_processors(
    raw: Iterable[Mapping[str, Any] | BaseModel],
) -> list[SampleProcessor | QualityProcessor | CustomProcessor]:
    """Validate declarations (dicts as in the request, or models already parsed)."""
    items = [r.model_dump(by_alias=True) if isinstance(r, BaseModel) else dict(r) for r in raw]
    return _SPECS.validate_python(items)


# --------------------------------------------------------------------------------------------
# Context and the custom-processor interface
# --------------------------------------------------------------------------------------------


class S3Reader:
    """Reads and writes JSON documents and manifests on S3 (one boto3 client; None = the process's)."""

    def __init__(self, s3: Any = None) -> None:
        self.s3 = s3

    def read_json(self, uri: str) -> Any:
        return manifests.read_json(uri, self.s3)

    def write_json(self, uri: str, document: Any) -> None:
        manifests.write_json(uri, document, self.s3)

    def write_bytes(self, uri: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        location = manifests.S3Location.parse(uri)
        (self.s3 or manifests.client("s3")).put_object(
            Bucket=location.bucket, Key=location.key, Body=body, ContentType=content_type
        )

    def iter_manifest(self, uri: str) -> Iterator[dict[str, Any]]:
        return manifests.iter_manifest(uri, self.s3)

    def write_manifest(self, uri: str, lines: Iterable[dict[str, Any]]) -> int:
        return manifests.write_manifest(uri, lines, self.s3)


@dataclass(frozen=True)
class ProcessorContext:
    """What a processor knows about where it runs.

    ``label_attribute_name`` is the *parent* job's label attribute (where the labels to check or
    reduce are on each line). ``work_prefix_uri`` is where processors may write derived files
    (reduced sequence files and SeqLabels). ``options`` holds a custom processor's own options.
    ``allowed_custom_modules``: module prefixes a custom processor may be imported from
    (None: any importable module). ``read_ahead``: how many lines' S3 reads (SeqLabel, sequence
    file) ``quality`` and frame ``sample`` keep in flight on a thread pool, to hide S3 latency;
    output order is unchanged and memory grows only by that many documents (1: no threads).
    """

    batch_id: str
    job_name: str
    label_attribute_name: str
    work_prefix_uri: str
    reader: S3Reader = field(default_factory=S3Reader)
    parent_job_name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    allowed_custom_modules: tuple[str, ...] | None = None
    read_ahead: int = 8

    def seed(self, *extra: object) -> int:
        """A reproducible 64-bit seed from batch id, job name and ``extra`` (SHA-256, not hash())."""
        text = "\x1f".join(str(p) for p in (self.batch_id, self.job_name, *extra))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@runtime_checkable
class LineProcessor(Protocol):
    """The interface of a custom processor (``"callable": "package.module:function"``).

    Called once per run with the stream of manifest lines (dicts, in manifest order) and the
    context (``context.options`` holds the declaration's ``options``; ``context.reader`` reads and
    writes S3). Yield the lines to keep, in any order, possibly annotated (add keys; never remove
    ``source-ref`` or the label attribute). Consume ``lines`` lazily: do not ``list()`` it, the
    manifest may be large. Example::

        def only_long_sequences(lines, context):
            minimum = context.options.get("minFrames", 10)
            for line in lines:
                sequence = context.reader.read_json(line["source-ref"])
                if len(sequence["frames"]) >= minimum:
                    yield line
    """

    def __call__(
        self, lines: Iterator[dict[str, Any]], context: ProcessorContext
    ) -> Iterable[dict[str, Any]]: ...


class ProcessorDataError(ValueError):
    """A manifest line lacks what a processor needs (a sequence file, the parent's labels)."""


class ProcessorImportError(ValueError):
    """A custom processor's ``callable`` cannot be imported or is not callable."""


def load_callable(path: str, allowed_modules: tuple[str, ...] | None = None) -> LineProcessor:
    """Import ``package.module:function`` (nested attributes allowed after the colon)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ProcessorImportError(f"custom processor {path!r}: expected 'package.module:function'")
    if allowed_modules is not None and not any(
        module_name == prefix or module_name.startswith(prefix + ".") for prefix in allowed_modules
    ):
        raise ProcessorImportError(
            f"custom processor {path!r}: module {module_name!r} is not one of the allowed modules {list(allowed_modules)}"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or whatever the module raised while importing
        raise ProcessorImportError(
            f"custom processor {path!r}: cannot import module {module_name!r}: {error}"
        ) from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ProcessorImportError(
                f"custom processor {path!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ProcessorImportError(f"custom processor {path!r}: {attribute!r} is not callable")
    return target


def check_processors(
    specs: Iterable[SampleProcessor | QualityProcessor | CustomProcessor],
    allowed_modules: tuple[str, ...] | None = None,
) -> list[str]:
    """Problems found before running (custom callables that cannot be imported); empty when fine."""
    problems = []
    for i, spec in enumerate(specs):
        if isinstance(spec, CustomProcessor):
            try:
                load_callable(spec.callable, allowed_modules)
            except ProcessorImportError as error:
                problems.append(f"processors[{i}].callable: {error}")
    return problems


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


class ProcessorResult(BaseModel):
    lines_in: int
    lines_out: int
    flags: int = 0
    flags_by_check: dict[str, int] = Field(default_factory=dict)
    output_manifest_uri: str

    @property
    def empty(self) -> bool:
        """Nothing left for the chained job: mark it SKIPPED."""
        return self.lines_out == 0


@dataclass
class _Stats:
    lines_in: int = 0
    flags: Counter[str] = field(default_factory=Counter)


def run_processors(
    input_manifest_uri: str,
    output_manifest_uri: str,
    processors: Iterable[SampleProcessor | QualityProcessor | CustomProcessor | Mapping[str, Any]],
    context: ProcessorContext,
) -> ProcessorResult:
    """Stream the input manifest through ``processors`` (in order) into the output manifest.

    Memory stays flat in the manifest's size: lines are read as a stream, each processor is a
    generator, a sample by sequence spools the lines that reach it to a temporary file (memory up
    to 8 MiB, disk beyond) to know how many there are, and the output is written through a spooled
    file. Running again with the same inputs writes the same output (idempotent).
    """
    specs = parse_processors(processors)
    for spec in specs:  # fail before reading anything when a custom processor cannot be imported
        if isinstance(spec, CustomProcessor):
            load_callable(spec.callable, context.allowed_custom_modules)
    stats = _Stats()

    def source() -> Iterator[dict[str, Any]]:
        for line in context.reader.iter_manifest(input_manifest_uri):
            stats.lines_in += 1
            yield line

    stream: Iterator[dict[str, Any]] = source()
    for index, spec in enumerate(specs):
        stream = iter(_apply(spec, index, stream, context, stats))
    lines_out = context.reader.write_manifest(output_manifest_uri, stream)
    return ProcessorResult(
        lines_in=stats.lines_in,
        lines_out=lines_out,
        flags=sum(stats.flags.values()),
        flags_by_check=dict(sorted(stats.flags.items())),
        output_manifest_uri=output_manifest_uri,
    )


def _apply(
    spec: SampleProcessor | QualityProcessor | CustomProcessor,
    index: int,
    lines: Iterator[dict[str, Any]],
    context: ProcessorContext,
    stats: _Stats,
) -> Iterable[dict[str, Any]]:
    if isinstance(spec, SampleProcessor):
        if spec.unit == "sequence":
            return sample_sequences(lines, spec, context)
        return sample_frames(lines, spec, context, index)
    if isinstance(spec, QualityProcessor):
        return quality_filter(lines, spec, context, stats.flags)
    function = load_callable(spec.callable, context.allowed_custom_modules)
    return function(lines, replace(context, options=dict(spec.options)))


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


def line_key(line: Mapping[str, Any]) -> str:
    """What identifies a data object: its original sequence (or source) reference."""
    for key in (SOURCE_REF_KEY, "source-ref", "source"):
        value = line.get(key)
        if isinstance(value, str):
            return value
    return json.dumps(line, sort_keys=True)


def sample_sequences(
    lines: Iterator[dict[str, Any]], spec: SampleProcessor, context: ProcessorContext
) -> Iterator[dict[str, Any]]:
    """Exactly ``spec.how_many(n)`` of the n lines, in manifest order (selection sampling, Knuth's S).

    The lines are spooled (memory up to 8 MiB, then disk) to count them first; the generator is
    seeded from batch id + job name (+ ``spec.seed``), so the same manifest gives the same picks.
    """
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b") as spool:
        n = 0
        for line in lines:
            spool.write(json.dumps(line, separators=(",", ":")).encode())
            spool.write(b"\n")
            n += 1
        wanted = spec.how_many(n)
        rng = random.Random(context.seed("sample", "sequence", spec.seed or ""))
        spool.seek(0)
        for seen, raw in enumerate(spool):
            if wanted == 0:
                break
            if rng.random() * (n - seen) < wanted:
                wanted -= 1
                yield json.loads(raw)


def pick_frames(n: int, k: int, rng: random.Random) -> list[int]:
    """``k`` evenly spaced positions out of ``n`` (constant stride, seeded offset)."""
    if k >= n:
        return list(range(n))
    stride = n / k
    offset = rng.random() * stride
    return sorted({min(n - 1, int(offset + i * stride)) for i in range(k)})


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def sample_frames(
    lines: Iterator[dict[str, Any]], spec: SampleProcessor, context: ProcessorContext, step: int = 0
) -> Iterator[dict[str, Any]]:
    """Every line, reduced to the picked frames (see the module docstring, *Frame sampling*).

    ``step`` (the processor's position in the list) keeps the files of two frame samples apart;
    the record keeps the *original* sequence and labels when the line was reduced before.
    """
    attribute = context.label_attribute_name

    def reduce(line: dict[str, Any]) -> dict[str, Any]:
        source_ref = line.get("source-ref")
        if not isinstance(source_ref, str):
            raise ProcessorDataError(
                "frame sampling needs a 'source-ref' (a sequence file) on every manifest line"
            )
        sequence = context.reader.read_json(source_ref)
        frames = list(sequence.get("frames") or [])
        key = line_key(line)
        rng = random.Random(context.seed("sample", "frame", spec.seed or "", key))
        picked = pick_frames(len(frames), spec.how_many(len(frames)), rng)
        kept = [frames[i] for i in picked]
        if len(kept) == len(frames):
            return line
        frame_numbers = [f.get("frame-no", i) for i, f in zip(picked, kept, strict=True)]
        base = f"{context.work_prefix_uri.rstrip('/')}/frame-sample/{step}/{_digest(key)}"
        reduced_sequence = dict(sequence, frames=kept)
        reduced_sequence["number-of-frames"] = len(kept)
        sequence_uri = f"{base}/sequence.json"
        context.reader.write_json(sequence_uri, reduced_sequence)
        out = dict(line)
        out.setdefault(SOURCE_REF_KEY, source_ref)
        out["source-ref"] = sequence_uri
        earlier = line.get(FRAME_SAMPLE_KEY) or {}
        record: dict[str, Any] = {
            "sourceRef": earlier.get("sourceRef") or source_ref,
            "labelRef": earlier.get("labelRef"),
            "frames": frame_numbers,
        }
        label = line.get(attribute)
        if isinstance(label, str):
            seq_label = context.reader.read_json(label)
            wanted_numbers = set(frame_numbers)
            wanted_names = {f.get("frame") for f in kept if f.get("frame")}
            reduced_label = {}
            for list_key, entries in seq_label.items():
                if list_key in ("tracking-annotations", "detection-annotations") and isinstance(
                    entries, list
                ):
                    reduced_label[list_key] = [
                        e
                        for e in entries
                        if e.get("frame") in wanted_names or e.get("frame-no") in wanted_numbers
                    ]
                else:
                    reduced_label[list_key] = entries
            label_uri = f"{base}/SeqLabel.json"
            context.reader.write_json(label_uri, reduced_label)
            out[attribute] = label_uri
            record["labelRef"] = record["labelRef"] or label
        out[FRAME_SAMPLE_KEY] = record
        return out

    for _, reduced in read_ahead(lines, reduce, context.read_ahead):
        yield reduced


# --------------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------------


def label_frames(seq_label: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-frame entries of a SeqLabel.json (tracking or detection), sorted by frame-no."""
    frames = seq_label.get("tracking-annotations")
    if frames is None:
        frames = seq_label.get("detection-annotations") or []
    indexed = [(f.get("frame-no", i), i, f) for i, f in enumerate(frames)]
    return [f for _, _, f in sorted(indexed, key=lambda t: (_as_number(t[0], t[1]), t[1]))]


def _as_number(value: Any, default: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)


def _frame_no(frame: Mapping[str, Any], default: int) -> int:
    try:
        return int(frame.get("frame-no", default))
    except (TypeError, ValueError):
        return default


def object_key(annotation: Mapping[str, Any], position: int) -> str:
    return str(annotation.get("object-id") or annotation.get("object-name") or f"#{position}")


def _size_from(document: Any) -> tuple[int, int] | None:
    if not isinstance(document, Mapping):
        return None
    for wk, hk in (("frame-width", "frame-height"), ("frameWidth", "frameHeight"), ("width", "height")):
        w, h = document.get(wk), document.get(hk)
        if isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0:
            return int(w), int(h)
    size = document.get("image-size") or document.get("image_size")
    if isinstance(size, list) and size and isinstance(size[0], Mapping):
        return _size_from(size[0])
    return None


def _flag(frame: int | None, object_id: str | None, check: str, detail: str) -> dict[str, Any]:
    return {"frame": frame, "objectId": object_id, "check": check, "detail": detail}


def check_tracking(
    seq_label: Mapping[str, Any],
    spec: QualityProcessor,
    frame_size: tuple[int, int] | None,
    sequence_frame_numbers: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Every finding of the enabled checks on one SeqLabel.json, in a stable order."""
    checks = set(spec.checks)
    flags: list[dict[str, Any]] = []
    frames = label_frames(seq_label)
    numbers = {_frame_no(f, i) for i, f in enumerate(frames)} | set(sequence_frame_numbers or ())
    position_of = {n: i for i, n in enumerate(sorted(numbers))}
    tracks: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, frame in enumerate(frames):
        number = _frame_no(frame, i)
        annotations = [
            (k, a) for k in ANNOTATION_LIST_KEYS for a in frame.get(k) or [] if isinstance(a, Mapping)
        ]
        if not annotations and "empty-frame" in checks:
            flags.append(_flag(number, None, "empty-frame", "no annotation in this frame"))
        for position, (list_key, annotation) in enumerate(annotations):
            oid = object_key(annotation, position)
            tracks.setdefault(oid, []).append((number, annotation))
            vertices = annotation.get("vertices")
            is_box = all(k in annotation for k in ("left", "top", "width", "height"))
            if (
                list_key in ("polylines", "polygons")
                and "polyline-points" in checks
                and len(vertices or []) < spec.min_polyline_points
            ):
                flags.append(
                    _flag(
                        number,
                        oid,
                        "polyline-points",
                        f"{len(vertices or [])} point(s); at least {spec.min_polyline_points} expected",
                    )
                )
            if frame_size is not None and "out-of-frame" in checks:
                detail = _outside(annotation, is_box, frame_size, spec.out_of_frame_tolerance)
                if detail:
                    flags.append(_flag(number, oid, "out-of-frame", detail))
            if is_box and "size" in checks and (annotation["width"] <= 0 or annotation["height"] <= 0):
                flags.append(
                    _flag(
                        number,
                        oid,
                        "size",
                        f"box of {annotation['width']}x{annotation['height']} has no area",
                    )
                )

    for oid, track in tracks.items():
        present = [n for n, _ in track]
        if "short-track" in checks and len(set(present)) < spec.min_track_frames:
            flags.append(
                _flag(
                    present[0],
                    oid,
                    "short-track",
                    f"present in {len(set(present))} frame(s); at least {spec.min_track_frames} expected",
                )
            )
        if "fragmented" in checks:
            for a, b in itertools.pairwise(present):
                if a in position_of and b in position_of:
                    missing = position_of[b] - position_of[a] - 1
                else:
                    missing = b - a - 1
                if missing > spec.max_gap_frames:
                    flags.append(
                        _flag(
                            b,
                            oid,
                            "fragmented",
                            f"missing from {missing} frame(s) between frame {a} and frame {b}",
                        )
                    )
        if "jump" in checks or "size" in checks:
            flags.extend(_motion_flags(oid, track, spec, checks, position_of))
    return flags


def _outside(
    annotation: Mapping[str, Any], is_box: bool, size: tuple[int, int], tolerance: float
) -> str | None:
    width, height = size
    if is_box:
        left, top = annotation["left"], annotation["top"]
        right, bottom = left + annotation["width"], top + annotation["height"]
        if left < -tolerance or top < -tolerance or right > width + tolerance or bottom > height + tolerance:
            return f"box [{left}, {top}, {right}, {bottom}] leaves the {width}x{height} frame"
        return None
    for vertex in annotation.get("vertices") or []:
        x, y = vertex.get("x", 0), vertex.get("y", 0)
        if x < -tolerance or y < -tolerance or x > width + tolerance or y > height + tolerance:
            return f"vertex ({x}, {y}) leaves the {width}x{height} frame"
    return None


def _motion_flags(
    oid: str,
    track: list[tuple[int, dict[str, Any]]],
    spec: QualityProcessor,
    checks: set[str],
    position_of: Mapping[int, int],
) -> Iterator[dict[str, Any]]:
    boxes = [(n, a) for n, a in track if all(k in a for k in ("left", "top", "width", "height"))]
    for (n0, a), (n1, b) in itertools.pairwise(boxes):
        steps = (position_of[n1] - position_of[n0]) if n0 in position_of and n1 in position_of else (n1 - n0)
        steps = max(1, steps)
        if "jump" in checks:
            dx = (b["left"] + b["width"] / 2) - (a["left"] + a["width"] / 2)
            dy = (b["top"] + b["height"] / 2) - (a["top"] + a["height"] / 2)
            scale = max(1.0, (a["width"] + a["height"] + b["width"] + b["height"]) / 4)
            jump = math.hypot(dx, dy) / scale / steps
            if jump > spec.max_center_jump:
                yield _flag(
                    n1,
                    oid,
                    "jump",
                    f"centre moved {math.hypot(dx, dy):.1f}px from frame {n0} ({jump:.2f} box sizes per frame; "
                    f"limit {spec.max_center_jump})",
                )
        if "size" in checks:
            area0, area1 = a["width"] * a["height"], b["width"] * b["height"]
            if area0 > 0 and area1 > 0:
                ratio = (max(area0, area1) / min(area0, area1)) ** (1 / steps)
                if ratio > spec.max_area_ratio:
                    yield _flag(
                        n1,
                        oid,
                        "size",
                        f"area changed from {area0:g} to {area1:g} since frame {n0} "
                        f"(x{ratio:.2f} per frame; limit x{spec.max_area_ratio})",
                    )


def quality_filter(
    lines: Iterator[dict[str, Any]],
    spec: QualityProcessor,
    context: ProcessorContext,
    tally: Counter[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Lines with at least one finding (all lines with ``keep: all``), findings under :data:`QA_FLAGS_KEY`."""
    attribute = context.label_attribute_name
    need_size = "out-of-frame" in spec.checks
    fixed = (spec.frame_width, spec.frame_height) if spec.frame_width and spec.frame_height else None
    read_sequence = _cached_reader(context.reader)

    def fetch(line: dict[str, Any]) -> tuple[Mapping[str, Any], tuple[int, int] | None, Any]:
        label = line.get(attribute)
        if isinstance(label, str):
            seq_label = context.reader.read_json(label)
        elif isinstance(label, Mapping):
            seq_label = label
        else:
            raise ProcessorDataError(
                f"manifest line has no label attribute {attribute!r} to check (keys: {sorted(line)[:10]})"
            )
        size = fixed
        sequence = None
        if need_size and size is None:
            size = _size_from(seq_label) or _size_from(line.get(f"{attribute}-metadata"))
            if size is None and spec.read_sequence_for_frame_size and isinstance(line.get("source-ref"), str):
                sequence = read_sequence(line["source-ref"])
                size = _size_from(sequence)
        return seq_label, size, sequence

    for line, (seq_label, size, sequence) in read_ahead(lines, fetch, context.read_ahead):
        numbers = None
        if isinstance(sequence, Mapping) and isinstance(sequence.get("frames"), list):
            numbers = [_frame_no(f, i) for i, f in enumerate(sequence["frames"]) if isinstance(f, Mapping)]
        flags = check_tracking(seq_label, spec, size, numbers)
        if tally is not None:
            tally.update(f["check"] for f in flags)
        if not flags and spec.keep == "flagged":
            continue
        out = dict(line)
        if flags:
            previous = list(out.get(QA_FLAGS_KEY) or [])
            kept = flags[: spec.max_flags_per_line]
            if len(flags) > len(kept):
                kept.append(
                    _flag(None, None, "truncated", f"{len(flags) - len(kept)} more finding(s) not listed")
                )
            out[QA_FLAGS_KEY] = previous + kept
        yield out


def read_ahead(lines: Iterable[T], fetch: Callable[[T], R], window: int) -> Iterator[tuple[T, R]]:
    """``(line, fetch(line))`` in input order, with up to ``window`` fetches running on threads."""
    if window <= 1:
        for line in lines:
            yield line, fetch(line)
        return
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="smgt-read-ahead") as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        try:
            for line in lines:
                pending.append((line, pool.submit(fetch, line)))
                if len(pending) >= window:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def _cached_reader(reader: S3Reader) -> Callable[[str], Any]:
    """Sequence files are small and often shared by consecutive lines: keep the last few."""

    @lru_cache(maxsize=32)
    def read(uri: str) -> Any:
        try:
            return reader.read_json(uri)
        except Exception:  # noqa: BLE001 - an unreadable sequence only means the frame size is unknown
            return None

    return read
