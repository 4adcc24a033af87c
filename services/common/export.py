"""The merged export of a batch, written after its last level.

One JSON Lines file per batch with one record per (sequence, frame): for every *first-pass* job
(a job that chains from nobody), the final annotations of that frame, taken from the deepest job
of its chain that reviewed the frame (an audit/adjustment of an audit of the job, ...), else from
the first pass. So a sequence the audit did not see (sequence sampling, QA filtering) and a frame
it did not see (frame sampling) keep the first pass's labels, and each record says which job the
labels come from. Frames the audit saw replace the first pass's, including frames the reviewer
emptied.

Plus, per first-pass job of bounding boxes, MOTChallenge text files (``gt.txt``/``det.txt`` shape,
10 values a line): ``<frame>,<id>,<bb_left>,<bb_top>,<bb_width>,<bb_height>,<conf>,<x>,<y>,<z>``,
one file per sequence named after the sequence (as MOTChallenge expects: one ``.txt`` per sequence,
named like it), under ``<output_prefix>/mot/<job>/``. Frame numbers, target IDs and (by default)
box coordinates are 1-based as in MOTChallenge: the frame is the position from the sequence's
first frame-no (the first frame is 1), the ID numbers the sequence's objects 1.. in order of first
appearance (the JSON Lines records carry the mapping as ``motId`` next to Ground Truth's
``object-id``), ``bb_left``/``bb_top`` are Ground Truth's 0-based ``left``/``top`` + 1, ``conf`` is 1
(a ground-truth entry to consider) and ``x,y,z`` are -1 (2D).

Streaming: every job's output manifest is read once as a stream into an on-disk index (SQLite in a
temporary directory: sequence -> label reference per job), then the sequences are visited in the
order they first appear, reading one sequence's SeqLabel files at a time. Memory stays flat in the
number of sequences; output manifests need not be in the same order.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.processors import (
    ANNOTATION_LIST_KEYS,
    FRAME_SAMPLE_KEY,
    QA_FLAGS_KEY,
    S3Reader,
    label_frames,
    line_key,
    object_key,
)

JSONL_NAME = "export.jsonl"
MOT_FOLDER = "mot"


class AnnotationKind(StrEnum):
    BOX = "box"
    POLYLINE = "polyline"
    POLYGON = "polygon"
    KEYPOINT = "keypoint"


_KINDS = {
    "BoundingBox": AnnotationKind.BOX,
    "Polyline": AnnotationKind.POLYLINE,
    "Polygon": AnnotationKind.POLYGON,
    "Keypoint": AnnotationKind.KEYPOINT,
}


def annotation_kind(label_category_config: Mapping[str, Any]) -> AnnotationKind:
    """The kind of a video frame job from its label category file (``annotationType``, default boxes)."""
    return _KINDS.get(str(label_category_config.get("annotationType") or "BoundingBox"), AnnotationKind.BOX)


class ExportJob(BaseModel):
    """One job of the batch as the export needs it (pass only jobs that ``COMPLETED``, or leave
    ``output_manifest_uri`` None for the others: they are then left out of their chain)."""

    model_config = ConfigDict(frozen=True)

    job_name: str
    level: int
    label_attribute_name: str
    output_manifest_uri: str | None
    chain_from: str | None = None
    kind: AnnotationKind = AnnotationKind.BOX


class ExportResult(BaseModel):
    jsonl_uri: str
    mot_uris: dict[str, str] = Field(
        description="first-pass box job -> s3 prefix of its <sequence>.txt files"
    )
    sequences: int
    frames: int
    chains: dict[str, list[str]] = Field(
        description="first-pass job -> the jobs merged, first pass to deepest"
    )


def resolve_chains(jobs: Sequence[ExportJob]) -> dict[str, list[ExportJob]]:
    """First-pass job name -> [first pass, its audit, the audit's audit, ...] (jobs with output only).

    Where a job has several chained jobs, the chain follows the one of the highest level (then
    the first by name) that has an output, and goes as deep as outputs go.
    """
    by_parent: dict[str, list[ExportJob]] = {}
    for job in jobs:
        if job.chain_from is not None:
            by_parent.setdefault(job.chain_from.lower(), []).append(job)
    chains: dict[str, list[ExportJob]] = {}
    for job in jobs:
        if job.chain_from is not None or job.output_manifest_uri is None:
            continue
        chain = [job]
        seen = {job.job_name.lower()}
        while True:
            children = [
                c
                for c in by_parent.get(chain[-1].job_name.lower(), [])
                if c.output_manifest_uri and c.job_name.lower() not in seen
            ]
            if not children:
                break
            nxt = min(children, key=lambda c: (-c.level, c.job_name))
            chain.append(nxt)
            seen.add(nxt.job_name.lower())
        chains[job.job_name] = chain
    return chains


# --------------------------------------------------------------------------------------------
# The on-disk index
# --------------------------------------------------------------------------------------------


class _Index:
    def __init__(self, directory: str) -> None:
        self.db = sqlite3.connect(os.path.join(directory, "export-index.sqlite"))
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -4096;
            CREATE TABLE seqs (key TEXT PRIMARY KEY, ord INTEGER NOT NULL UNIQUE);
            CREATE TABLE rows (job TEXT NOT NULL, key TEXT NOT NULL, label TEXT, meta TEXT, sample TEXT, flags TEXT,
                               PRIMARY KEY (job, key));
            CREATE TABLE names (name TEXT PRIMARY KEY);
            """
        )
        self.next_ord = 0

    def add_manifest(self, job: ExportJob, lines: Iterable[dict[str, Any]], first_pass: bool) -> None:
        attribute = job.label_attribute_name
        metadata_key = f"{attribute}-metadata"
        batch: list[tuple[Any, ...]] = []
        for line in lines:
            key = line_key(line)
            if first_pass:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO seqs (key, ord) VALUES (?, ?)", (key, self.next_ord)
                )
                self.next_ord += cursor.rowcount
            label = line.get(attribute)
            metadata = line.get(metadata_key) or {}
            batch.append(
                (
                    job.job_name,
                    key,
                    json.dumps(label) if label is not None else None,
                    json.dumps(
                        {
                            "class-map": metadata.get("class-map") or {},
                            "adjustment-status": metadata.get("adjustment-status"),
                            "failure-reason": metadata.get("failure-reason"),
                        }
                    ),
                    json.dumps(line[FRAME_SAMPLE_KEY]) if FRAME_SAMPLE_KEY in line else None,
                    json.dumps(line[QA_FLAGS_KEY]) if QA_FLAGS_KEY in line else None,
                )
            )
            if len(batch) >= 1000:
                self._flush(batch)
        self._flush(batch)

    def _flush(self, batch: list[tuple[Any, ...]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?)", batch)
        batch.clear()

    def sequences(self) -> Iterator[str]:
        last = -1
        while True:
            rows = self.db.execute(
                "SELECT key, ord FROM seqs WHERE ord > ? ORDER BY ord LIMIT 500", (last,)
            ).fetchall()
            if not rows:
                return
            for key, ordinal in rows:
                yield key
                last = ordinal

    def row(self, job: str, key: str) -> dict[str, Any] | None:
        found = self.db.execute(
            "SELECT label, meta, sample, flags FROM rows WHERE job = ? AND key = ?", (job, key)
        ).fetchone()
        if found is None:
            return None
        label, meta, sample, flags = found
        return {
            "label": json.loads(label) if label is not None else None,
            "meta": json.loads(meta) if meta else {},
            "sample": json.loads(sample) if sample else None,
            "flags": json.loads(flags) if flags else [],
        }

    def unique_name(self, key: str) -> str:
        stem = key.rstrip("/").rsplit("/", 1)[-1]
        stem = re.sub(r"\.json$", "", stem)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "sequence"
        name = stem
        suffix = 1
        while True:
            try:
                self.db.execute("INSERT INTO names (name) VALUES (?)", (name,))
                return name
            except sqlite3.IntegrityError:
                suffix += 1
                name = f"{stem}-{suffix}"

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------------------------
# Merging one sequence
# --------------------------------------------------------------------------------------------


def _number(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def merge_frames(
    layers: Sequence[tuple[ExportJob, Mapping[str, Any]]],
) -> dict[int, tuple[dict[str, Any], ExportJob]]:
    """frame-no -> (frame entry, job it comes from); deeper layers replace the frames they contain.

    A deeper layer's frame is matched to the first layer's by the frame's file name (``frame``),
    then by ``frame-no``, so a reduced sequence (frame sampling) lands on the original frames.
    """
    merged: dict[int, tuple[dict[str, Any], ExportJob]] = {}
    by_name: dict[str, int] = {}
    for depth, (job, seq_label) in enumerate(layers):
        for i, frame in enumerate(label_frames(seq_label)):
            number = _number(frame.get("frame-no"), i)
            name = frame.get("frame")
            if depth == 0:
                if isinstance(name, str):
                    by_name.setdefault(name, number)
            elif isinstance(name, str) and name in by_name:
                number = by_name[name]
            merged[number] = (frame, job)
    return merged


def _annotations(frame: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(a) for k in ANNOTATION_LIST_KEYS for a in frame.get(k) or [] if isinstance(a, Mapping)]


def _fmt(value: Any) -> str:
    number = float(value)
    if number.is_integer():
        return str(int(number))
    return f"{number:.2f}".rstrip("0").rstrip(".")


def mot_line(frame: int, track_id: int, box: Mapping[str, Any], one_based_boxes: bool = True) -> str:
    """One MOTChallenge line: frame,id,bb_left,bb_top,bb_width,bb_height,conf,x,y,z."""
    shift = 1 if one_based_boxes else 0
    return ",".join(
        [
            str(frame),
            str(track_id),
            _fmt(box["left"] + shift),
            _fmt(box["top"] + shift),
            _fmt(box["width"]),
            _fmt(box["height"]),
            "1",
            "-1",
            "-1",
            "-1",
        ]
    )


def export_batch(
    jobs: Sequence[ExportJob],
    output_prefix_uri: str,
    *,
    batch_id: str | None = None,
    reader: S3Reader | None = None,
    one_based_boxes: bool = True,
) -> ExportResult:
    """Write ``<prefix>/export.jsonl`` and ``<prefix>/mot/<job>/<sequence>.txt``; see the module docstring.

    ``reader`` reads and writes S3 (default: the process's S3 client). Running it again overwrites
    the same objects with the same content.
    """
    reader = reader or S3Reader()
    prefix = output_prefix_uri.rstrip("/")
    chains = resolve_chains(jobs)
    jsonl_uri = f"{prefix}/{JSONL_NAME}"
    mot_uris = {
        name: f"{prefix}/{MOT_FOLDER}/{name}/"
        for name, chain in chains.items()
        if chain[0].kind is AnnotationKind.BOX
    }
    counts = {"sequences": 0, "frames": 0}
    with tempfile.TemporaryDirectory(prefix="smgt-export-") as directory:
        index = _Index(directory)
        try:
            for chain in chains.values():
                for depth, job in enumerate(chain):
                    assert job.output_manifest_uri is not None
                    index.add_manifest(
                        job, reader.iter_manifest(job.output_manifest_uri), first_pass=depth == 0
                    )
            index.db.commit()
            records = _records(index, chains, mot_uris, reader, batch_id, one_based_boxes, counts)
            reader.write_manifest(jsonl_uri, records)
        finally:
            index.close()
    return ExportResult(
        jsonl_uri=jsonl_uri,
        mot_uris=mot_uris,
        sequences=counts["sequences"],
        frames=counts["frames"],
        chains={name: [j.job_name for j in chain] for name, chain in chains.items()},
    )


def _records(
    index: _Index,
    chains: Mapping[str, list[ExportJob]],
    mot_uris: Mapping[str, str],
    reader: S3Reader,
    batch_id: str | None,
    one_based_boxes: bool,
    counts: dict[str, int],
) -> Iterator[dict[str, Any]]:
    for key in index.sequences():
        name = index.unique_name(key)
        counts["sequences"] += 1
        per_job: dict[str, dict[int, tuple[dict[str, Any], ExportJob]]] = {}
        class_maps: dict[str, dict[str, dict[str, str]]] = {}
        statuses: dict[str, dict[str, Any]] = {}
        flags: dict[str, list[dict[str, Any]]] = {}
        for first, chain in chains.items():
            layers = []
            for job in chain:
                row = index.row(job.job_name, key)
                if row is None or row["label"] is None:
                    continue
                label = row["label"]
                seq_label = reader.read_json(label) if isinstance(label, str) else label
                layers.append((job, seq_label))
                class_maps.setdefault(first, {})[job.job_name] = row["meta"].get("class-map") or {}
                statuses.setdefault(first, {})[job.job_name] = row["meta"].get("adjustment-status")
                if row["flags"]:
                    flags[first] = row["flags"]
            if layers:
                per_job[first] = merge_frames(layers)
        numbers = sorted({n for merged in per_job.values() for n in merged})
        if not numbers:
            continue
        base = numbers[0]
        mot_ids: dict[str, dict[str, int]] = {first: {} for first in per_job}
        mot_lines: dict[str, list[str]] = {first: [] for first in per_job if first in mot_uris}
        for number in numbers:
            record: dict[str, Any] = {
                "batchId": batch_id,
                "sequence": name,
                "sourceRef": key,
                "frameNo": number,
                "frame": None,
                "motFrame": number - base + 1,
                "jobs": {},
            }
            for first, merged in per_job.items():
                if number not in merged:
                    continue
                frame, job = merged[number]
                record["frame"] = record["frame"] or frame.get("frame")
                class_map = (
                    class_maps[first].get(job.job_name)
                    or class_maps[first].get(chains[first][0].job_name)
                    or {}
                )
                annotations = _annotations(frame)
                for position, annotation in enumerate(annotations):
                    label = class_map.get(str(annotation.get("class-id")))
                    if label is not None:
                        annotation["label"] = label
                    if first in mot_lines and all(
                        k in annotation for k in ("left", "top", "width", "height")
                    ):
                        ids = mot_ids[first]
                        oid = object_key(annotation, position)
                        track_id = ids.setdefault(oid, len(ids) + 1)
                        annotation["motId"] = track_id
                        mot_lines[first].append(
                            mot_line(number - base + 1, track_id, annotation, one_based_boxes)
                        )
                entry: dict[str, Any] = {
                    "kind": chains[first][0].kind.value,
                    "labelAttributeName": job.label_attribute_name,
                    "fromJob": job.job_name,
                    "fromLevel": job.level,
                    "annotations": annotations,
                }
                if frame.get("frame-attributes"):
                    entry["frameAttributes"] = frame["frame-attributes"]
                status = statuses.get(first, {}).get(job.job_name)
                if status:
                    entry["adjustmentStatus"] = status
                frame_flags = [f for f in flags.get(first, []) if f.get("frame") == number]
                if frame_flags:
                    entry["qaFlags"] = frame_flags
                record["jobs"][first] = entry
            counts["frames"] += 1
            yield record
        for first, lines in mot_lines.items():
            body = "".join(line + "\n" for line in lines).encode()
            reader.write_bytes(f"{mot_uris[first]}{name}.txt", body, "text/plain")
