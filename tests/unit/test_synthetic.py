"""The synthetic video-frame dataset: Ground Truth's input formats, deterministic, uploadable."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from PIL import Image

from smgt.local.synthetic import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    ReferenceDataset,
    adjustment_label_categories,
    build_reference_files,
    lane_label_categories,
    upload_reference_dataset,
    vehicle_label_categories,
)


def test_files_follow_the_sequence_and_manifest_formats():
    files, dataset = build_reference_files("my-input-bucket", "ref", sequences=2, frames=4, seed=3)
    assert dataset.frame_count == 4 and len(dataset.sequence_uris) == 2
    manifest = [json.loads(line) for line in files["ref/manifests/input.manifest"].decode().splitlines()]
    assert manifest == [{"source-ref": uri} for uri in dataset.sequence_uris]
    for number, uri in enumerate(dataset.sequence_uris, start=1):
        sequence = json.loads(files[uri.removeprefix("s3://my-input-bucket/")])
        assert set(sequence) == {"seq-no", "prefix", "number-of-frames", "frames"}
        assert sequence["seq-no"] == number
        assert sequence["prefix"].startswith("s3://my-input-bucket/ref/frames/") and sequence[
            "prefix"
        ].endswith("/")
        assert sequence["number-of-frames"] == len(sequence["frames"]) == 4
        for i, frame in enumerate(sequence["frames"]):
            assert set(frame) == {"frame-no", "unix-timestamp", "frame"} and frame["frame-no"] == i
            key = sequence["prefix"].removeprefix("s3://my-input-bucket/") + frame["frame"]
            with Image.open(io.BytesIO(files[key])) as image:
                assert image.format == "JPEG" and image.size == (FRAME_WIDTH, FRAME_HEIGHT)
        names = [f["frame"] for f in sequence["frames"]]
        assert names == sorted(names)  # the worker UI orders frames by UTF-8 name


def test_label_category_files():
    vehicle, lane = vehicle_label_categories(), lane_label_categories()
    assert vehicle["annotationType"] == "BoundingBox" and lane["annotationType"] == "Polyline"
    for categories in (vehicle, lane):
        assert categories["documentVersion"] == "2020-03-01"
        labels = [lab["label"] for lab in categories["labels"]]
        assert (
            1 <= len(labels) <= 30 and len(set(labels)) == len(labels) and all(len(n) <= 16 for n in labels)
        )
        assert len(categories["instructions"]["shortInstruction"]) < 255
        assert len(categories["instructions"]["fullInstruction"]) < 2048
        assert "auditLabelAttributeName" not in categories
    assert {"Car", "Truck", "Bus"} <= {lab["label"] for lab in vehicle["labels"]}
    audit = adjustment_label_categories(vehicle, "vehicle-ref")
    assert audit["auditLabelAttributeName"] == "vehicle-ref" and "auditLabelAttributeName" not in vehicle


def test_deterministic_for_a_seed():
    a, _ = build_reference_files("b-input", seed=5, frames=3)
    b, _ = build_reference_files("b-input", seed=5, frames=3)
    c, _ = build_reference_files("b-input", seed=6, frames=3)
    assert a == b
    assert a != c


def test_rejects_empty_dataset():
    with pytest.raises(ValueError):
        build_reference_files("b-input", frames=0)


def test_upload(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="smgt-input-bucket")
        dataset = upload_reference_dataset(s3, "smgt-input-bucket", prefix="reference", sequences=1, frames=5)
        assert isinstance(dataset, ReferenceDataset)
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="smgt-input-bucket")["Contents"]}
        assert len([k for k in keys if k.endswith(".jpg")]) == 5
        for uri in (
            dataset.manifest_uri,
            dataset.vehicle_categories_uri,
            dataset.lane_categories_uri,
            *dataset.sequence_uris,
        ):
            assert uri.removeprefix("s3://smgt-input-bucket/") in keys
        categories = json.loads(
            s3.get_object(Bucket="smgt-input-bucket", Key="reference/categories/vehicle.json")["Body"].read()
        )
        assert categories == vehicle_label_categories()
