"""The merged export: audit over first pass (per sequence and per frame), JSON Lines and MOTChallenge text."""

from __future__ import annotations

import copy
import json
from typing import Any

from services.common import manifests
from services.common.export import (
    AnnotationKind,
    ExportJob,
    export_batch,
    merge_frames,
    mot_line,
    resolve_chains,
)
from services.common.processors import FRAME_SAMPLE_KEY, QA_FLAGS_KEY, SOURCE_REF_KEY, S3Reader
from smgt.local.groundtruth import adjust_annotations, generate_video_annotations
from smgt.local.synthetic import lane_label_categories, vehicle_label_categories

BUCKET = "smgt-export-test"
FRAMES = 4
W, H = 320, 180


def uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"




def frames_of(seq: int) -> list[dict[str, Any]]:
    return [
        {"frame-no": i, "unix-timestamp": 1_700_000_000 + i, "frame": f"frame_{i:04d}.jpg"}
        for i in range(FRAMES)
    ]


def text(s3: Any, location: str) -> str:
    loc = manifests.S3Location.parse(location)
    return s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read().decode()


def metadata(job: str, class_map: dict[str, str], status: str | None = None) -> dict[str, Any]:
    meta = {
        "class-map": class_map,
        "job-name": f"labeling-job/b-{job}",
        "human-annotated": "yes",
        "creation-date": "2024-01-01T00:00:00.000000",
        "type": "groundtruth/video-object-tracking",
    }
    if status:
        meta["adjustment-status"] = status
    return meta


class Batch:
    """Level 1: vehicle (boxes) and lane (polylines) on 2 sequences, in Ground Truth's output formats.

    Level 2: vehicle-audit saw only seq-1 (a sequence sample) and carries QA flags; lane-audit saw
    frames 1 and 3 of seq-2 (a frame sample through a reduced sequence and SeqLabel).
    """

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.sources = [uri(f"sequences/seq-{n:03d}.json") for n in (1, 2)]
        self.labels: dict[tuple[str, int], dict[str, Any]] = {}
        vehicle_lines, lane_lines = [], []
        for n, source in enumerate(self.sources, start=1):
            manifests.write_json(
                source,
                {
                    "seq-no": n,
                    "prefix": uri(f"frames/seq-{n}/"),
                    "number-of-frames": FRAMES,
                    "frames": frames_of(n),
                },
                s3,
            )
            for job, categories, lines, attr in (
                ("vehicle", vehicle_label_categories(), vehicle_lines, "vehicle-ref"),
                ("lane", lane_label_categories(), lane_lines, "lane-ref"),
            ):
                label, class_map = generate_video_annotations(
                    f"b-{job}", n, categories, frames_of(n), W, H, True
                )
                self.labels[(job, n)] = label
                label_uri = uri(f"out/{job}/annotations/{n}/SeqLabel.json")
                manifests.write_json(label_uri, label, s3)
                lines.append(
                    {"source-ref": source, attr: label_uri, f"{attr}-metadata": metadata(job, class_map)}
                )
        manifests.write_manifest(uri("out/vehicle/output.manifest"), vehicle_lines, s3)
        manifests.write_manifest(uri("out/lane/output.manifest"), lane_lines, s3)

        # vehicle-audit: seq-1 only, every box moved 5 px right
        audited = copy.deepcopy(self.labels[("vehicle", 1)])
        for frame in audited["tracking-annotations"]:
            for box in frame["annotations"]:
                box["left"] += 5
        self.labels[("vehicle-audit", 1)] = audited
        manifests.write_json(uri("out/vehicle-audit/1/SeqLabel.json"), audited, s3)
        audit_line = dict(vehicle_lines[0])
        audit_line[QA_FLAGS_KEY] = [{"frame": 2, "objectId": "x", "check": "jump", "detail": "moved"}]
        audit_line["vehicle-audit-ref"] = uri("out/vehicle-audit/1/SeqLabel.json")
        audit_line["vehicle-audit-ref-metadata"] = metadata(
            "vehicle-audit", {}, "adjusted"
        )  # class map from parent
        manifests.write_manifest(uri("out/vehicle-audit/output.manifest"), [audit_line], s3)

        # lane-audit: frames 1 and 3 of seq-2, through a reduced SeqLabel, adjusted by the simulator
        parent = self.labels[("lane", 2)]
        reduced = {
            "tracking-annotations": [f for f in parent["tracking-annotations"] if f["frame-no"] in (1, 3)]
        }
        adjusted, _ = adjust_annotations("b-lane-audit", 0, reduced, W, H)
        self.labels[("lane-audit", 2)] = adjusted
        manifests.write_json(uri("out/lane-audit/0/SeqLabel.json"), adjusted, s3)
        lane_audit_line = {
            "source-ref": uri("work/frame-sample/abc/sequence.json"),
            SOURCE_REF_KEY: self.sources[1],
            "lane-ref": uri("work/frame-sample/abc/SeqLabel.json"),
            "lane-ref-metadata": lane_lines[1]["lane-ref-metadata"],
            FRAME_SAMPLE_KEY: {
                "sourceRef": self.sources[1],
                "labelRef": lane_lines[1]["lane-ref"],
                "frames": [1, 3],
            },
            "lane-audit-ref": uri("out/lane-audit/0/SeqLabel.json"),
            "lane-audit-ref-metadata": metadata(
                "lane-audit", lane_lines[1]["lane-ref-metadata"]["class-map"], "adjusted"
            ),
        }
        manifests.write_manifest(uri("out/lane-audit/output.manifest"), [lane_audit_line], s3)

    def jobs(self, **overrides: Any) -> list[ExportJob]:
        jobs = [
            ExportJob(
                job_name="vehicle",
                level=1,
                label_attribute_name="vehicle-ref",
                output_manifest_uri=uri("out/vehicle/output.manifest"),
                kind=AnnotationKind.BOX,
            ),
            ExportJob(
                job_name="lane",
                level=1,
                label_attribute_name="lane-ref",
                output_manifest_uri=uri("out/lane/output.manifest"),
                kind=AnnotationKind.POLYLINE,
            ),
            ExportJob(
                job_name="vehicle-audit",
                level=2,
                label_attribute_name="vehicle-audit-ref",
                output_manifest_uri=uri("out/vehicle-audit/output.manifest"),
                chain_from="vehicle",
            ),
            ExportJob(
                job_name="lane-audit",
                level=2,
                label_attribute_name="lane-audit-ref",
                output_manifest_uri=uri("out/lane-audit/output.manifest"),
                chain_from="lane",
                kind=AnnotationKind.POLYLINE,
            ),
        ]
        return [j.model_copy(update=overrides.get(j.job_name, {})) for j in jobs]

    def frame_annotations(self, job: str, seq: int, frame_no: int) -> list[dict[str, Any]]:
        [frame] = [f for f in self.labels[(job, seq)]["tracking-annotations"] if f["frame-no"] == frame_no]
        return frame.get("annotations") or frame.get("polylines") or []


def strip(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k not in ("label", "motId")} for a in annotations]


def test_export_merges_the_audit_over_the_first_pass(s3: Any) -> None:
    batch = Batch(s3)
    result = export_batch(batch.jobs(), uri("export/b"), batch_id="b", reader=S3Reader(s3))
    assert (result.sequences, result.frames) == (2, 2 * FRAMES)
    assert result.jsonl_uri == uri("export/b/export.jsonl")
    assert result.mot_uris == {"vehicle": uri("export/b/mot/vehicle/")}
    assert result.chains == {"vehicle": ["vehicle", "vehicle-audit"], "lane": ["lane", "lane-audit"]}
    records = list(manifests.iter_manifest(result.jsonl_uri, s3))
    assert [(r["sequence"], r["frameNo"], r["motFrame"]) for r in records] == [
        (f"seq-{n:03d}", i, i + 1) for n in (1, 2) for i in range(FRAMES)
    ]
    for record in records:
        seq = int(record["sequence"][-1])
        i = record["frameNo"]
        assert record["batchId"] == "b" and record["frame"] == f"frame_{i:04d}.jpg"
        assert record["sourceRef"] == batch.sources[seq - 1]
        vehicle, lane = record["jobs"]["vehicle"], record["jobs"]["lane"]
        # vehicle: the audit for seq-1 (it saw it), the first pass for seq-2 (sequence not sampled)
        source = "vehicle-audit" if seq == 1 else "vehicle"
        assert vehicle["fromJob"] == source and vehicle["kind"] == "box"
        assert strip(vehicle["annotations"]) == batch.frame_annotations(source, seq, i)
        assert all(a["label"] in ("Car", "Truck", "Bus", "Motorcycle") for a in vehicle["annotations"])
        # lane: the audit only for the frames it saw (1 and 3 of seq-2), else the first pass
        lane_source = "lane-audit" if (seq, i) in ((2, 1), (2, 3)) else "lane"
        assert lane["fromJob"] == lane_source and lane["kind"] == "polyline"
        assert strip(lane["annotations"]) == batch.frame_annotations(lane_source, seq, i)
        assert lane.get("adjustmentStatus") == ("adjusted" if lane_source == "lane-audit" else None)
        assert ("qaFlags" in vehicle) == (seq == 1 and i == 2)


def test_mot_files_are_valid_motchallenge_lines(s3: Any) -> None:
    batch = Batch(s3)
    result = export_batch(batch.jobs(), uri("export/b"), batch_id="b", reader=S3Reader(s3))
    records = list(manifests.iter_manifest(result.jsonl_uri, s3))
    for n in (1, 2):
        body = text(s3, f"{result.mot_uris['vehicle']}seq-{n:03d}.txt")
        lines = body.splitlines()
        expected = [
            a for r in records if r["sequence"] == f"seq-{n:03d}" for a in r["jobs"]["vehicle"]["annotations"]
        ]
        assert len(lines) == len(expected) > 0
        ids_by_object: dict[str, int] = {}
        for line, (record_annotation) in zip(lines, expected, strict=True):
            values = line.split(",")
            assert len(values) == 10
            frame, track, left, top, width, height = (float(v) for v in values[:6])
            assert values[6:] == ["1", "-1", "-1", "-1"]
            assert frame >= 1 and frame == int(frame) and track >= 1 and track == int(track)
            assert (left, top) == (record_annotation["left"] + 1, record_annotation["top"] + 1)  # 1-based
            assert (width, height) == (record_annotation["width"], record_annotation["height"])
            assert ids_by_object.setdefault(record_annotation["object-id"], int(track)) == int(track)
            assert record_annotation["motId"] == int(track)
        assert sorted(set(ids_by_object.values())) == list(range(1, len(ids_by_object) + 1))
    assert not manifests.exists(uri("export/b/mot/lane/seq-001.txt"), s3)  # polylines have no MOT form


def test_a_failed_audit_leaves_the_first_pass(s3: Any) -> None:
    batch = Batch(s3)
    jobs = batch.jobs(**{"vehicle-audit": {"output_manifest_uri": None}})
    result = export_batch(jobs, uri("export/b"), reader=S3Reader(s3))
    assert result.chains["vehicle"] == ["vehicle"]
    records = list(manifests.iter_manifest(result.jsonl_uri, s3))
    assert {r["jobs"]["vehicle"]["fromJob"] for r in records} == {"vehicle"}


def test_export_does_not_need_manifests_in_the_same_order_and_is_idempotent(s3: Any) -> None:
    batch = Batch(s3)
    lines = list(manifests.iter_manifest(uri("out/lane/output.manifest"), s3))
    manifests.write_manifest(uri("out/lane/output.manifest"), list(reversed(lines)), s3)
    first = export_batch(batch.jobs(), uri("export/b"), reader=S3Reader(s3))
    body = text(s3, first.jsonl_uri)
    mot = text(s3, f"{first.mot_uris['vehicle']}seq-002.txt")
    again = export_batch(batch.jobs(), uri("export/b"), reader=S3Reader(s3))
    assert again == first
    assert text(s3, first.jsonl_uri) == body and text(s3, f"{first.mot_uris['vehicle']}seq-002.txt") == mot
    records = [json.loads(x) for x in body.splitlines()]
    assert [r["sequence"] for r in records[::FRAMES]] == ["seq-001", "seq-002"]  # first-seen order of vehicle


def test_resolve_chains_takes_the_deepest_job_with_output() -> None:
    def job(name: str, level: int, parent: str | None, output: bool = True) -> ExportJob:
        return ExportJob(
            job_name=name,
            level=level,
            label_attribute_name=f"{name}-ref",
            output_manifest_uri=uri(name) if output else None,
            chain_from=parent,
        )

    jobs = [
        job("vehicle", 1, None),
        job("Vehicle-Audit", 2, "vehicle"),
        job("vehicle-audit-2", 3, "vehicle-audit"),
        job("lane", 1, None),
        job("lane-audit", 2, "lane", output=False),
        job("lost", 1, None, output=False),
    ]
    chains = resolve_chains(jobs)
    assert {k: [j.job_name for j in v] for k, v in chains.items()} == {
        "vehicle": ["vehicle", "Vehicle-Audit", "vehicle-audit-2"],
        "lane": ["lane"],
    }


def test_merge_matches_a_renumbered_reduced_sequence_by_frame_file_name() -> None:
    first = {
        "tracking-annotations": [
            {"frame-no": i, "frame": f"f{i}.jpg", "annotations": [{"n": i}]} for i in range(5)
        ]
    }
    audit = {"tracking-annotations": [{"frame-no": 0, "frame": "f3.jpg", "annotations": [{"n": "audited"}]}]}
    a = ExportJob(job_name="a", level=1, label_attribute_name="a-ref", output_manifest_uri=None)
    b = ExportJob(
        job_name="b", level=2, label_attribute_name="b-ref", output_manifest_uri=None, chain_from="a"
    )
    merged = merge_frames([(a, first), (b, audit)])
    assert merged[3][0]["annotations"] == [{"n": "audited"}] and merged[3][1] is b
    assert merged[0][0]["annotations"] == [{"n": 0}] and merged[0][1] is a


def test_mot_line_format() -> None:
    box = {"left": 10, "top": 20.5, "width": 30, "height": 40.25}
    assert mot_line(1, 7, box) == "1,7,11,21.5,30,40.25,1,-1,-1,-1"
    assert mot_line(3, 2, box, one_based_boxes=False) == "3,2,10,20.5,30,40.25,1,-1,-1,-1"
