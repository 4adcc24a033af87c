"""Synthetic video-frame input data for the local stack (no network, no real images needed).

Builds a small automotive-looking dataset in Ground Truth's own input formats:

- N frames per sequence (JPEG, drawn with Pillow: a road, lane lines, a few moving vehicles),
- one sequence file per sequence (``seq-no``, ``prefix``, ``number-of-frames``,
  ``frames`` [{``frame-no``, ``unix-timestamp``, ``frame``}]),
- the input manifest (one ``{"source-ref": "s3://.../seq-N.json"}`` line per sequence),
- a vehicle label category file (``annotationType`` ``BoundingBox``) and a lane label category
  file (``annotationType`` ``Polyline``), in the video frame label category configuration shape
  (``documentVersion``, ``labels``, ``categoryGlobalAttributes``, ``frameAttributes``,
  ``annotationType``, ``instructions``).

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any

from pydantic import BaseModel

FRAME_WIDTH = 320
FRAME_HEIGHT = 180
BASE_UNIX_TIMESTAMP = 1_700_000_000
VEHICLE_LABELS = ["Car", "Truck", "Bus", "Motorcycle"]
LANE_LABELS = ["SolidLane", "DashedLane", "RoadEdge"]


class ReferenceDataset(BaseModel):
    manifest_uri: str
    vehicle_categories_uri: str
    lane_categories_uri: str
    sequence_uris: list[str]
    frame_count: int


def vehicle_label_categories() -> dict[str, Any]:
    """Label category configuration file of the vehicle tracking job (bounding boxes)."""
    return {
        "documentVersion": "2020-03-01",
        "frameAttributes": [
            {
                "name": "weather",
                "description": "What is the weather in this frame?",
                "type": "string",
                "enum": ["clear", "rain", "fog"],
            }
        ],
        "categoryGlobalAttributes": [
            {
                "name": "occluded",
                "description": "Is the vehicle partially hidden?",
                "type": "string",
                "enum": ["no", "partially", "yes"],
            }
        ],
        "labels": [{"label": label} for label in VEHICLE_LABELS],
        "annotationType": "BoundingBox",
        "instructions": {
            "shortInstruction": "Draw a tight box around every vehicle and keep the same ID across frames.",
            "fullInstruction": "<p>Track every car, truck, bus and motorcycle through the sequence. "
            "Draw the box tightly around the visible part of the vehicle, use one object ID per "
            "vehicle for the whole sequence, and mark partially hidden vehicles as occluded.</p>",
        },
    }


def lane_label_categories() -> dict[str, Any]:
    """Label category configuration file of the lane tracking job (polylines)."""
    return {
        "documentVersion": "2020-03-01",
        "labels": [{"label": label} for label in LANE_LABELS],
        "annotationType": "Polyline",
        "instructions": {
            "shortInstruction": "Trace every lane marking and road edge with a polyline.",
            "fullInstruction": "<p>Follow each lane marking from the bottom of the frame to where it "
            "disappears. Use SolidLane, DashedLane or RoadEdge and keep the same ID across frames.</p>",
        },
    }


def adjustment_label_categories(base: dict[str, Any], audit_label_attribute_name: str) -> dict[str, Any]:
    """The label category file of an adjustment job chained from a job that used ``base``."""
    categories = json.loads(json.dumps(base))
    categories["auditLabelAttributeName"] = audit_label_attribute_name
    return categories


def _vehicle_tracks(rng: random.Random, frames: int) -> list[dict[str, Any]]:
    tracks = []
    for _ in range(rng.randint(2, 3)):
        w = rng.randint(28, 60)
        h = int(w * rng.uniform(0.55, 0.8))
        tracks.append(
            {
                "x": rng.uniform(10, FRAME_WIDTH - w - 10),
                "y": rng.uniform(FRAME_HEIGHT * 0.45, FRAME_HEIGHT - h - 5),
                "w": w,
                "h": h,
                "vx": rng.uniform(-4, 4) or 1.0,
                "vy": rng.uniform(-0.6, 0.6),
                "color": tuple(rng.randint(40, 230) for _ in range(3)),
            }
        )
    return tracks


def render_frame(index: int, tracks: list[dict[str, Any]], lane_shift: float) -> bytes:
    """One JPEG frame: sky, road, three lane lines and the vehicles at their position at ``index``."""
    from PIL import Image, ImageDraw  # local extra: imported only when frames are drawn

    image = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), (135, 180, 225))
    draw = ImageDraw.Draw(image)
    horizon = int(FRAME_HEIGHT * 0.4)
    draw.rectangle([0, horizon, FRAME_WIDTH, FRAME_HEIGHT], fill=(80, 80, 85))
    vanish_x = FRAME_WIDTH / 2 + lane_shift * index
    for bottom_x, dashed in (
        (FRAME_WIDTH * 0.1, False),
        (FRAME_WIDTH * 0.5, True),
        (FRAME_WIDTH * 0.9, False),
    ):
        if dashed:
            steps = 8
            for s in range(0, steps, 2):
                t0, t1 = s / steps, (s + 1) / steps
                p0 = (vanish_x + (bottom_x - vanish_x) * t0, horizon + (FRAME_HEIGHT - horizon) * t0)
                p1 = (vanish_x + (bottom_x - vanish_x) * t1, horizon + (FRAME_HEIGHT - horizon) * t1)
                draw.line([p0, p1], fill=(250, 250, 250), width=2)
        else:
            draw.line([(vanish_x, horizon), (bottom_x, FRAME_HEIGHT)], fill=(250, 250, 250), width=2)
    for track in tracks:
        x = min(max(track["x"] + track["vx"] * index, 0), FRAME_WIDTH - track["w"])
        y = min(max(track["y"] + track["vy"] * index, horizon), FRAME_HEIGHT - track["h"])
        draw.rectangle([x, y, x + track["w"], y + track["h"]], fill=track["color"], outline=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def build_reference_files(
    bucket: str, prefix: str = "reference", sequences: int = 1, frames: int = 10, seed: int = 17
) -> tuple[dict[str, bytes], ReferenceDataset]:
    """All objects of the dataset as ``{key: bytes}`` plus the dataset's description."""
    if sequences < 1 or frames < 1:
        raise ValueError("sequences and frames must be at least 1")
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    sequence_uris: list[str] = []
    for seq in range(1, sequences + 1):
        frames_prefix = f"{base}frames/seq-{seq:03d}/"
        tracks = _vehicle_tracks(rng, frames)
        lane_shift = rng.uniform(-1.5, 1.5)
        frame_entries = []
        for i in range(frames):
            name = f"frame_{i:04d}.jpg"
            files[frames_prefix + name] = render_frame(i, tracks, lane_shift)
            frame_entries.append(
                {"frame-no": i, "unix-timestamp": BASE_UNIX_TIMESTAMP + seq * 3600 + i, "frame": name}
            )
        sequence = {
            "seq-no": seq,
            "prefix": f"s3://{bucket}/{frames_prefix}",
            "number-of-frames": frames,
            "frames": frame_entries,
        }
        seq_key = f"{base}sequences/seq-{seq:03d}.json"
        files[seq_key] = json.dumps(sequence, indent=1).encode()
        sequence_uris.append(f"s3://{bucket}/{seq_key}")
    manifest_key = f"{base}manifests/input.manifest"
    files[manifest_key] = "".join(json.dumps({"source-ref": uri}) + "\n" for uri in sequence_uris).encode()
    vehicle_key = f"{base}categories/vehicle.json"
    lane_key = f"{base}categories/lane.json"
    files[vehicle_key] = json.dumps(vehicle_label_categories(), indent=1).encode()
    files[lane_key] = json.dumps(lane_label_categories(), indent=1).encode()
    dataset = ReferenceDataset(
        manifest_uri=f"s3://{bucket}/{manifest_key}",
        vehicle_categories_uri=f"s3://{bucket}/{vehicle_key}",
        lane_categories_uri=f"s3://{bucket}/{lane_key}",
        sequence_uris=sequence_uris,
        frame_count=frames,
    )
    return files, dataset


def upload_reference_dataset(
    s3_client: Any,
    bucket: str,
    prefix: str = "reference",
    sequences: int = 1,
    frames: int = 10,
    seed: int = 17,
) -> ReferenceDataset:
    """Generate the dataset and upload it to ``s3://bucket/prefix/`` (the bucket must exist)."""
    files, dataset = build_reference_files(bucket, prefix, sequences, frames, seed)
    for key, body in files.items():
        if key.endswith(".jpg"):
            content_type = "image/jpeg"
        elif key.endswith(".json"):
            content_type = "application/json"
        else:
            content_type = "application/jsonlines"
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return dataset
