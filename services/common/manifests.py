"""Manifest and annotation files on S3, read and written as streams so memory stays flat."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from services.common.clients import client

_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
_SPOOL_BYTES = 8 * 1024 * 1024


class S3Location(BaseModel, frozen=True):
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        match = _S3_URI.match(uri)
        if not match:
            raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
        return cls(bucket=match["bucket"], key=match["key"])

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def child(self, *parts: str) -> S3Location:
        return S3Location(bucket=self.bucket, key="/".join([self.key.rstrip("/"), *parts]))


def read_json(uri: str, s3: Any = None) -> Any:
    loc = S3Location.parse(uri)
    body = (s3 or client("s3")).get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    return json.loads(body.read())


def write_json(uri: str, document: Any, s3: Any = None) -> None:
    loc = S3Location.parse(uri)
    (s3 or client("s3")).put_object(
        Bucket=loc.bucket, Key=loc.key, Body=json.dumps(document).encode(), ContentType="application/json"
    )


def iter_manifest(uri: str, s3: Any = None) -> Iterator[dict[str, Any]]:
    """Yield one JSON object per manifest line, reading the object as a stream."""
    loc = S3Location.parse(uri)
    body = (s3 or client("s3")).get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    for line in body.iter_lines():
        if line.strip():
            yield json.loads(line)


def write_manifest(uri: str, lines: Iterable[dict[str, Any]], s3: Any = None) -> int:
    """Write JSON Lines through a spooled file (memory up to 8 MiB, disk beyond); return the line count."""
    loc = S3Location.parse(uri)
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        for line in lines:
            spool.write(json.dumps(line, separators=(",", ":")).encode())
            spool.write(b"\n")
            count += 1
        spool.seek(0)
        (s3 or client("s3")).upload_fileobj(spool, loc.bucket, loc.key)
    return count


def count_manifest_lines(uri: str, s3: Any = None) -> int:
    return sum(1 for _ in iter_manifest(uri, s3))


def exists(uri: str, s3: Any = None) -> bool:
    loc = S3Location.parse(uri)
    try:
        (s3 or client("s3")).head_object(Bucket=loc.bucket, Key=loc.key)
    except Exception as error:  # botocore raises ClientError 404 for a missing key
        if getattr(error, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def presign(uri: str, expires_in: int, s3: Any = None) -> str:
    loc = S3Location.parse(uri)
    return (s3 or client("s3")).generate_presigned_url(
        "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=expires_in
    )
