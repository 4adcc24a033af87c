"""Processors between levels: sample, quality, custom, and the streaming runner (moto S3)."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from services.common import manifests, processors
from services.common.processors import (
    FRAME_SAMPLE_KEY,
    QA_FLAGS_KEY,
    SOURCE_REF_KEY,
    CustomProcessor,
    ProcessorContext,
    ProcessorImportError,
    QualityProcessor,
    S3Reader,
    SampleProcessor,
    check_processors,
    check_tracking,
    load_callable,
    parse_processors,
    pick_frames,
    run_processors,
)

BUCKET = "smgt-processors-test"
ATTR = "vehicle-ref"
SIZE = (320, 180)




def context(s3: Any, job: str = "vehicle-audit", batch: str = "batch-1", **kw: Any) -> ProcessorContext:
    return ProcessorContext(
        batch_id=batch,
        job_name=job,
        label_attribute_name=ATTR,
        work_prefix_uri=f"s3://{BUCKET}/work/{batch}/{job}",
        reader=S3Reader(s3),
        **kw,
    )


def uri(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


# --------------------------------------------------------------------------------------------
# crafted SeqLabels
# --------------------------------------------------------------------------------------------


def box(oid: str, left: float, top: float, width: float = 40, height: float = 30) -> dict[str, Any]:
    return {
        "object-id": oid,
        "object-name": f"Car:{oid}",
        "class-id": "0",
        "left": left,
        "top": top,
        "width": width,
        "height": height,
    }


def line_of(oid: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "object-id": oid,
        "object-name": f"Lane:{oid}",
        "class-id": "0",
        "vertices": [{"x": x, "y": y} for x, y in points],
    }


def seq_label(frames: dict[int, list[dict[str, Any]]], key: str = "annotations") -> dict[str, Any]:
    return {
        "tracking-annotations": [
            {key: anns, "frame-no": n, "frame": f"frame_{n:04d}.jpg", "frame-attributes": {}}
            for n, anns in sorted(frames.items())
        ]
    }


def clean_boxes(n: int = 6) -> dict[int, list[dict[str, Any]]]:
    return {i: [box("a", 10 + 3 * i, 80 + i), box("b", 200 - 2 * i, 100, 50, 35)] for i in range(n)}


def tripped(frames: dict[int, list[dict[str, Any]]], key: str = "annotations", size: Any = SIZE) -> set[str]:
    return {
        f["check"] for f in check_tracking(seq_label(frames, key), QualityProcessor(type="quality"), size)
    }


def case_jump() -> dict[int, list[dict[str, Any]]]:
    frames = clean_boxes()
    frames[3][0] = box("a", 10 + 3 * 3 + 120, 80 + 3)
    frames[4][0] = box("a", 10 + 3 * 4 + 120, 80 + 4)  # stays there: one jump in, no jump back
    frames[5][0] = box("a", 10 + 3 * 5 + 120, 80 + 5)
    return frames


def case_size() -> dict[int, list[dict[str, Any]]]:
    frames = clean_boxes()
    for i in (3, 4, 5):
        frames[i][1] = box("b", 200 - 2 * i - 25, 100 - 17, 100, 70)  # same centre, 4x the area
    return frames


def case_out_of_frame() -> dict[int, list[dict[str, Any]]]:
    frames = clean_boxes()
    for i in range(6):
        frames[i][1] = box("b", 240 + 12 * i, 100, 50, 35)  # drifts right smoothly; past 320 from frame 3
    return frames


def case_short_track() -> dict[int, list[dict[str, Any]]]:
    frames = clean_boxes()
    frames[0].append(box("c", 150, 20, 20, 15))
    frames[1].append(box("c", 151, 20, 20, 15))
    return frames


def case_fragmented() -> dict[int, list[dict[str, Any]]]:
    frames = clean_boxes()
    frames[3] = [a for a in frames[3] if a["object-id"] != "a"]
    return frames


def case_empty_frame() -> dict[int, list[dict[str, Any]]]:
    frames = {i: [line_of("l1", [(10, 170), (100, 120), (150, 80)])] for i in range(3)}
    frames[3] = []  # one track ends before it, another starts after it: nothing else to flag
    frames.update({i: [line_of("l2", [(300, 170), (200, 80)])] for i in range(4, 7)})
    return frames


def case_polyline_points() -> dict[int, list[dict[str, Any]]]:
    frames = {
        i: [line_of("l1", [(10, 170), (100, 120), (150, 80)]), line_of("l2", [(300, 170), (200, 80)])]
        for i in range(6)
    }
    frames[4][1] = line_of("l2", [(300, 170)])
    return frames


@pytest.mark.parametrize(
    ("check", "case", "key"),
    [
        ("jump", case_jump, "annotations"),
        ("size", case_size, "annotations"),
        ("out-of-frame", case_out_of_frame, "annotations"),
        ("short-track", case_short_track, "annotations"),
        ("fragmented", case_fragmented, "annotations"),
        ("empty-frame", case_empty_frame, "polylines"),
        ("polyline-points", case_polyline_points, "polylines"),
    ],
)
def test_each_check_trips_on_its_crafted_track_only(check: str, case: Any, key: str) -> None:
    assert tripped(case(), key) == {check}


def test_clean_tracks_are_not_flagged() -> None:
    assert tripped(clean_boxes()) == set()
    assert tripped({i: [line_of("l1", [(10, 170), (100, 120 + i)])] for i in range(6)}, "polylines") == set()


def test_flag_shape_names_frame_object_check_and_detail() -> None:
    flags = check_tracking(seq_label(case_jump()), QualityProcessor(type="quality"), SIZE)
    assert flags == [{"frame": 3, "objectId": "a", "check": "jump", "detail": flags[0]["detail"]}]
    assert "box sizes per frame" in flags[0]["detail"]


def test_out_of_frame_is_skipped_when_the_frame_size_is_unknown() -> None:
    assert tripped(case_out_of_frame(), size=None) == set()


def test_gap_is_measured_in_frames_of_the_sequence() -> None:
    frames = clean_boxes()
    frames[3] = [a for a in frames[3] if a["object-id"] != "a"]
    spec = QualityProcessor(type="quality", maxGapFrames=1)
    assert "fragmented" not in {f["check"] for f in check_tracking(seq_label(frames), spec, SIZE)}


def test_thresholds_are_configurable_and_checks_selectable() -> None:
    strict = QualityProcessor(type="quality", maxCenterJump=0.01, checks=["jump"])
    assert {f["check"] for f in check_tracking(seq_label(clean_boxes()), strict, SIZE)} == {"jump"}
    with pytest.raises(ValidationError):
        QualityProcessor(type="quality", maxAreaRatio=0.5)
    with pytest.raises(ValidationError):
        QualityProcessor(type="quality", checks=["nonsense"])


def test_the_simulated_ground_truth_output_passes_the_default_thresholds() -> None:
    from smgt.local.groundtruth import generate_video_annotations
    from smgt.local.synthetic import lane_label_categories, vehicle_label_categories

    frames = [{"frame-no": i, "frame": f"frame_{i:04d}.jpg"} for i in range(12)]
    spec = QualityProcessor(type="quality")
    for index in range(30):
        for categories in (vehicle_label_categories(), lane_label_categories()):
            label, _ = generate_video_annotations("job", index, categories, frames, 320, 180, True)
            flags = check_tracking(label, spec, SIZE)
            assert [f for f in flags if f["check"] not in ("short-track",)] == [], flags


# --------------------------------------------------------------------------------------------
# quality through run_processors (moto S3)
# --------------------------------------------------------------------------------------------


def put_line(s3: Any, n: int, frames: dict[int, list[dict[str, Any]]], sized: bool = False) -> dict[str, Any]:
    sequence: dict[str, Any] = {
        "seq-no": n,
        "prefix": uri(f"frames/seq-{n}/"),
        "number-of-frames": len(frames),
        "frames": [
            {"frame-no": i, "unix-timestamp": 1_700_000_000 + i, "frame": f"frame_{i:04d}.jpg"}
            for i in sorted(frames)
        ],
    }
    if sized:
        sequence["frame-width"], sequence["frame-height"] = SIZE
    manifests.write_json(uri(f"sequences/seq-{n}.json"), sequence, s3)
    manifests.write_json(uri(f"labels/{n}/SeqLabel.json"), seq_label(frames), s3)
    return {
        "source-ref": uri(f"sequences/seq-{n}.json"),
        ATTR: uri(f"labels/{n}/SeqLabel.json"),
        f"{ATTR}-metadata": {
            "class-map": {"0": "Car"},
            "job-name": "labeling-job/batch-1-vehicle",
            "type": "groundtruth/video-object-tracking",
        },
    }


def test_quality_keeps_only_flagged_lines_with_their_flags(s3: Any) -> None:
    lines = [
        put_line(s3, 1, clean_boxes()),
        put_line(s3, 2, case_jump()),
        put_line(s3, 3, case_out_of_frame(), sized=True),
        put_line(s3, 4, case_out_of_frame()),
    ]
    manifests.write_manifest(uri("in.manifest"), lines, s3)
    result = run_processors(uri("in.manifest"), uri("out.manifest"), [{"type": "quality"}], context(s3))
    assert (result.lines_in, result.lines_out, result.flags) == (4, 2, 4)
    assert result.flags_by_check == {"jump": 1, "out-of-frame": 3}  # frames 3, 4 and 5
    out = list(manifests.iter_manifest(uri("out.manifest"), s3))
    assert [line["source-ref"] for line in out] == [lines[1]["source-ref"], lines[2]["source-ref"]]
    for original, line in zip((lines[1], lines[2]), out, strict=True):
        # every key Ground Truth needs is untouched; the flags are one extra key
        assert {k: v for k, v in line.items() if k != QA_FLAGS_KEY} == original
        assert all(set(flag) == {"frame", "objectId", "check", "detail"} for flag in line[QA_FLAGS_KEY])
    assert out[1][QA_FLAGS_KEY][0]["check"] == "out-of-frame"


def test_a_processor_that_leaves_nothing_gives_zero_lines(s3: Any) -> None:
    manifests.write_manifest(uri("in.manifest"), [put_line(s3, 1, clean_boxes())], s3)
    result = run_processors(uri("in.manifest"), uri("out.manifest"), [{"type": "quality"}], context(s3))
    assert (result.lines_in, result.lines_out, result.empty) == (1, 0, True)
    assert manifests.count_manifest_lines(uri("out.manifest"), s3) == 0


def test_keep_all_annotates_without_filtering(s3: Any) -> None:
    lines = [put_line(s3, 1, clean_boxes()), put_line(s3, 2, case_jump())]
    manifests.write_manifest(uri("in.manifest"), lines, s3)
    result = run_processors(
        uri("in.manifest"), uri("out.manifest"), [{"type": "quality", "keep": "all"}], context(s3)
    )
    assert result.lines_out == 2
    out = list(manifests.iter_manifest(uri("out.manifest"), s3))
    assert QA_FLAGS_KEY not in out[0] and out[1][QA_FLAGS_KEY]


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


def simple_manifest(s3: Any, n: int, key: str = "in.manifest") -> str:
    manifests.write_manifest(uri(key), ({"source-ref": uri(f"sequences/seq-{i}.json")} for i in range(n)), s3)
    return uri(key)


def picks(s3: Any, spec: dict[str, Any], **ctx: Any) -> list[str]:
    source = simple_manifest(s3, 100)
    result = run_processors(source, uri("out.manifest"), [spec], context(s3, **ctx))
    assert result.lines_in == 100
    return [line["source-ref"] for line in manifests.iter_manifest(uri("out.manifest"), s3)]


def test_sample_honours_fraction_and_count_and_keeps_order(s3: Any) -> None:
    tenth = picks(s3, {"type": "sample", "fraction": 0.1})
    assert len(tenth) == 10
    order = [uri(f"sequences/seq-{i}.json") for i in range(100)]
    assert tenth == sorted(tenth, key=order.index)
    assert len(picks(s3, {"type": "sample", "count": 5})) == 5
    assert len(picks(s3, {"type": "sample", "count": 500})) == 100
    assert len(picks(s3, {"type": "sample", "fraction": 0.001})) == 1
    assert len(picks(s3, {"type": "sample", "fraction": 1})) == 100


def test_sample_is_reproducible_per_batch_and_job(s3: Any) -> None:
    spec = {"type": "sample", "fraction": 0.2}
    first = picks(s3, spec)
    assert picks(s3, spec) == first
    assert picks(s3, spec, job="lane-audit") != first
    assert picks(s3, spec, batch="batch-2") != first
    assert picks(s3, {**spec, "seed": "other"}) != first


def test_sample_seed_uses_sha256_not_hash() -> None:
    ctx = ProcessorContext(batch_id="b", job_name="j", label_attribute_name=ATTR, work_prefix_uri="s3://x/y")
    import hashlib

    digest = hashlib.sha256(b"b\x1fj\x1fsample").digest()
    assert ctx.seed("sample") == int.from_bytes(digest[:8], "big")
    assert ctx.seed("sample") == ProcessorContext(
        batch_id="b", job_name="j", label_attribute_name="other", work_prefix_uri="s3://z/w"
    ).seed("sample")


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"fraction": 0.1, "count": 3},
        {"fraction": 0},
        {"fraction": 1.5},
        {"count": 0},
        {"fraction": 0.1, "unit": "pixel"},
        {"fraction": 0.1, "extra": 1},
    ],
)
def test_sample_declaration_is_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_processors([{"type": "sample", **bad}])


def test_pick_frames_is_evenly_spaced() -> None:
    import random

    picked = pick_frames(100, 10, random.Random(1))
    assert len(picked) == 10
    assert {b - a for a, b in itertools.pairwise(picked)} == {10}
    assert pick_frames(5, 9, random.Random(1)) == [0, 1, 2, 3, 4]


def test_frame_sampling_writes_reduced_sequence_and_labels(s3: Any) -> None:
    frames = {i: [box("a", 10 + i, 80)] for i in range(10)}
    line = put_line(s3, 7, frames)
    manifests.write_manifest(uri("in.manifest"), [line], s3)
    spec = {"type": "sample", "fraction": 0.3, "unit": "frame"}
    result = run_processors(uri("in.manifest"), uri("out.manifest"), [spec], context(s3))
    assert (result.lines_in, result.lines_out) == (1, 1)
    [out] = manifests.iter_manifest(uri("out.manifest"), s3)
    record = out[FRAME_SAMPLE_KEY]
    assert len(record["frames"]) == 3
    assert record["sourceRef"] == line["source-ref"] == out[SOURCE_REF_KEY]
    assert record["labelRef"] == line[ATTR]
    assert out["source-ref"] != line["source-ref"] and out[ATTR] != line[ATTR]
    assert out[f"{ATTR}-metadata"] == line[f"{ATTR}-metadata"]
    sequence = manifests.read_json(out["source-ref"], s3)
    assert sequence["number-of-frames"] == 3
    assert [f["frame-no"] for f in sequence["frames"]] == record["frames"]
    assert sequence["prefix"] == uri("frames/seq-7/")  # images are not copied
    label = manifests.read_json(out[ATTR], s3)
    assert [f["frame-no"] for f in label["tracking-annotations"]] == record["frames"]
    # reproducible
    run_processors(uri("in.manifest"), uri("out2.manifest"), [spec], context(s3))
    [again] = manifests.iter_manifest(uri("out2.manifest"), s3)
    assert again == out


def test_frame_sampling_then_quality_checks_the_reduced_labels(s3: Any) -> None:
    frames = {i: [box("a", 10 + i, 80)] for i in range(10)}
    manifests.write_manifest(uri("in.manifest"), [put_line(s3, 7, frames)], s3)
    specs = [{"type": "sample", "count": 4, "unit": "frame"}, {"type": "quality", "keep": "all"}]
    result = run_processors(uri("in.manifest"), uri("out.manifest"), specs, context(s3))
    assert result.lines_out == 1 and result.flags == 0  # a strided sample is not a "fragmented" track


# --------------------------------------------------------------------------------------------
# custom
# --------------------------------------------------------------------------------------------


def keep_every(lines: Iterator[dict[str, Any]], context: ProcessorContext) -> Iterable[dict[str, Any]]:
    """A custom processor used by the tests: keep every n-th line, mark it."""
    step = int(context.options.get("step", 2))
    for i, line in enumerate(lines):
        if i % step == 0:
            yield {**line, "kept-by": context.job_name}


not_callable = 42


def test_custom_processor_imported_by_path(s3: Any) -> None:
    source = simple_manifest(s3, 10)
    spec = {"type": "custom", "callable": "tests.unit.test_processors:keep_every", "options": {"step": 3}}
    result = run_processors(source, uri("out.manifest"), [spec], context(s3))
    assert (result.lines_in, result.lines_out) == (10, 4)
    assert all(
        line["kept-by"] == "vehicle-audit" for line in manifests.iter_manifest(uri("out.manifest"), s3)
    )


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("tests.unit.no_such_module:f", "cannot import module 'tests.unit.no_such_module'"),
        ("tests.unit.test_processors:no_such_function", "has no attribute 'no_such_function'"),
        ("tests.unit.test_processors:not_callable", "is not callable"),
    ],
)
def test_a_bad_custom_path_gives_a_clear_error(s3: Any, path: str, words: str) -> None:
    with pytest.raises(ProcessorImportError) as error:
        load_callable(path)
    assert repr(path) in str(error.value) and words in str(error.value)
    source = simple_manifest(s3, 3)
    with pytest.raises(ProcessorImportError, match=path):
        run_processors(source, uri("out.manifest"), [{"type": "custom", "callable": path}], context(s3))
    assert not manifests.exists(uri("out.manifest"), s3)  # failed before writing anything
    assert check_processors(parse_processors([{"type": "custom", "callable": path}])) != []


def test_custom_path_must_look_like_module_colon_function_and_be_allowed() -> None:
    with pytest.raises(ValidationError):
        CustomProcessor(type="custom", callable="tests/unit:f")
    with pytest.raises(ProcessorImportError, match="not one of the allowed modules"):
        load_callable("tests.unit.test_processors:keep_every", allowed_modules=("myorg",))
    assert load_callable("tests.unit.test_processors:keep_every", allowed_modules=("tests",)) is keep_every


def test_processors_are_a_discriminated_union() -> None:
    specs = parse_processors(
        [
            {"type": "sample", "count": 5, "unit": "frame"},
            {"type": "quality", "minTrackFrames": 5},
            {"type": "custom", "callable": "a.b:c", "options": {"x": 1}},
        ]
    )
    assert [type(s) for s in specs] == [SampleProcessor, QualityProcessor, CustomProcessor]
    with pytest.raises(ValidationError, match="does not match any of the expected tags|union_tag_invalid"):
        parse_processors([{"type": "shuffle"}])


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def big_line(i: int) -> dict[str, Any]:
    """A manifest line with its SeqLabel inline (a dict): ~1.5 KB of JSON, several times that parsed.

    Every 100th line has a jump (so quality keeps 1% of the lines).
    """
    label = _JUMPY if i % 100 == 0 else _SMOOTH
    return {
        "source-ref": f"s3://{BUCKET}/sequences/seq-{i:06d}.json",
        ATTR: json.loads(label),
        f"{ATTR}-metadata": _META,
    }


_SMOOTH = json.dumps(seq_label({n: [box("a", 10 + n, 80), box("b", 200 - n, 90, 50, 35)] for n in range(3)}))
_JUMPY = json.dumps(
    seq_label(
        {n: [box("a", 10 + n + (150 if n == 2 else 0), 80), box("b", 200 - n, 90, 50, 35)] for n in range(3)}
    )
)
_META = {"class-map": {"0": "Car"}, "job-name": "labeling-job/x"}


class _CountingReader(S3Reader):
    """Feeds a generator-backed manifest and records how far reading ran ahead of writing."""

    def __init__(self, s3: Any, n: int) -> None:
        super().__init__(s3)
        self.n = n
        self.pulled = 0
        self.max_ahead = 0

    def iter_manifest(self, uri: str) -> Iterator[dict[str, Any]]:
        for i in range(self.n):
            self.pulled += 1
            yield big_line(i)

    def write_manifest(self, uri: str, lines: Iterable[dict[str, Any]]) -> int:
        def watched() -> Iterator[dict[str, Any]]:
            for line in lines:
                position = int(line["source-ref"].rsplit("-", 1)[1].split(".")[0]) + 1
                self.max_ahead = max(self.max_ahead, self.pulled - position)
                yield line

        return super().write_manifest(uri, watched())


def test_run_processors_streams_20000_lines_with_flat_memory(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 20_000
    # quality: lines go out as they come in
    reader = _CountingReader(s3, n)
    ctx = ProcessorContext(
        batch_id="b", job_name="j", label_attribute_name=ATTR, work_prefix_uri=uri("w"), reader=reader
    )
    monkeypatch.setattr(manifests, "_SPOOL_BYTES", 256 * 1024)  # output spills to disk early
    tracemalloc.start()
    try:
        result = run_processors(
            "s3://unused/in", uri("out.manifest"), [{"type": "quality", "checks": ["jump"]}], ctx
        )
        _, peak_quality = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        # sample by sequence: the lines that reach it are spooled (to disk past SPOOL_BYTES), not listed
        monkeypatch.setattr(processors, "_SPOOL_BYTES", 256 * 1024)
        reader2 = _CountingReader(s3, n)
        ctx2 = ProcessorContext(
            batch_id="b", job_name="j", label_attribute_name=ATTR, work_prefix_uri=uri("w"), reader=reader2
        )
        sampled = run_processors(
            "s3://unused/in", uri("sampled.manifest"), [{"type": "sample", "fraction": 0.01}], ctx2
        )
        _, peak_sample = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.lines_in, result.lines_out) == (n, n // 100)
    # reading runs at most read_ahead lines ahead of the line being written; a list() would make it ~20,000
    assert reader.max_ahead <= ctx.read_ahead
    assert (sampled.lines_in, sampled.lines_out) == (n, 200)
    raw = sum(len(json.dumps(big_line(i))) for i in range(50)) / 50 * n  # ~30 MB of JSON; parsed, ~10x
    limit = 6 * 1024 * 1024
    print(
        f"peak quality {peak_quality / 2**20:.2f} MiB, sample {peak_sample / 2**20:.2f} MiB, manifest {raw / 2**20:.0f} MiB"
    )
    assert peak_quality < limit, f"peak {peak_quality / 2**20:.1f} MiB for {raw / 2**20:.0f} MiB of manifest"
    assert peak_sample < limit, f"peak {peak_sample / 2**20:.1f} MiB for {raw / 2**20:.0f} MiB of manifest"


def test_two_frame_samples_keep_the_original_references(s3: Any) -> None:
    frames = {i: [box("a", 10 + i, 80)] for i in range(12)}
    line = put_line(s3, 9, frames)
    manifests.write_manifest(uri("in.manifest"), [line], s3)
    specs = [{"type": "sample", "count": 6, "unit": "frame"}, {"type": "sample", "count": 3, "unit": "frame"}]
    run_processors(uri("in.manifest"), uri("out.manifest"), specs, context(s3))
    [out] = manifests.iter_manifest(uri("out.manifest"), s3)
    record = out[FRAME_SAMPLE_KEY]
    assert (record["sourceRef"], record["labelRef"]) == (line["source-ref"], line[ATTR])
    assert len(record["frames"]) == 3
    assert [f["frame-no"] for f in manifests.read_json(out["source-ref"], s3)["frames"]] == record["frames"]
    assert [f["frame-no"] for f in manifests.read_json(out[ATTR], s3)["tracking-annotations"]] == record[
        "frames"
    ]
