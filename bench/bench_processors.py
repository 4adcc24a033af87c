"""Throughput and memory of the between-level processors on a large manifest.

    python -m bench.bench_processors                      # 100,000 sequences, local-file S3
    python -m bench.bench_processors --sequences 20000    # smaller
    python -m bench.bench_processors --backend moto --sequences 3000

It generates a manifest of N sequences in Ground Truth's output format (one line per sequence:
``source-ref`` -> a sequence file, ``vehicle-ref`` -> a small ``SeqLabel.json`` stub of a few
frames with two tracked boxes, 1% of them with an implausible jump), then runs the real
``services.common.processors.run_processors`` (which reads and writes through
``services.common.manifests``) at three sizes (N/4, N/2, N) and prints, per processor and size,
the median throughput of a few runs and the peak memory of the process running it.

Backends: ``local`` (default) is a minimal S3 client over a local directory, so the whole real
code path (processors, manifests, JSON (de)serialisation, StreamingBody.iter_lines) runs and only
the network is gone; ``moto`` is moto's in-process S3 (about 2 ms per request on a small machine:
use a smaller N).

Each (processor, size) runs in its own Python process, so ``ru_maxrss`` is that run's peak
resident memory; the table shows it above the process's baseline after imports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

BUCKET = "smgt-bench-processing"
ATTR = "vehicle-ref"
PROCESSORS: dict[str, list[dict[str, Any]]] = {
    "sample": [{"type": "sample", "fraction": 0.1}],
    "quality": [{"type": "quality"}],
    "sample-frames": [{"type": "sample", "fraction": 0.5, "unit": "frame"}],
}
FRAME_W, FRAME_H = 1920, 1080


# --------------------------------------------------------------------------------------------
# A local-directory S3 client: exactly the calls services.common.manifests makes
# --------------------------------------------------------------------------------------------


class LocalS3Client:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def get_object(self, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        from botocore.response import StreamingBody

        path = self._path(Bucket, Key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by StreamingBody / GC like an HTTP body
        except FileNotFoundError:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": Key}}, "GetObject") from None
        return {"Body": StreamingBody(handle, path.stat().st_size)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        path = self._path(Bucket, Key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Body if isinstance(Body, bytes) else Body.read())
        return {}

    def upload_fileobj(self, fileobj: Any, bucket: str, key: str, **_: Any) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out, 1024 * 1024)

    def head_object(self, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        path = self._path(Bucket, Key)
        if not path.exists():
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"ContentLength": path.stat().st_size}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def seq_label(rng: random.Random, frames: int, jumpy: bool) -> dict[str, Any]:
    boxes = []
    for k in range(2):
        w = rng.randint(60, 200)
        boxes.append(
            (
                f"{rng.getrandbits(64):016x}-{k}",
                rng.uniform(100, FRAME_W - w - 100),
                rng.uniform(400, 800),
                w,
                int(w * 0.7),
                rng.uniform(-8, 8),
            )
        )
    entries = []
    for i in range(frames):
        annotations = []
        for oid, x, y, w, h, vx in boxes:
            left = x + vx * i + (600 if jumpy and i == frames // 2 and oid.endswith("-0") else 0)
            annotations.append(
                {
                    "height": h,
                    "width": w,
                    "top": round(y),
                    "left": round(left),
                    "class-id": "0",
                    "label-category-attributes": {"occluded": "no"},
                    "object-id": oid,
                    "object-name": f"Car:{oid[-1]}",
                }
            )
        entries.append(
            {
                "annotations": annotations,
                "frame-no": i,
                "frame": f"frame_{i:04d}.jpg",
                "frame-attributes": {"weather": "clear"},
            }
        )
    return {"tracking-annotations": entries}


def sequence_file(n: int, frames: int) -> dict[str, Any]:
    return {
        "seq-no": n,
        "prefix": f"s3://{BUCKET}/frames/seq-{n:06d}/",
        "number-of-frames": frames,
        "frame-width": FRAME_W,
        "frame-height": FRAME_H,
        "frames": [
            {"frame-no": i, "unix-timestamp": 1_700_000_000 + i, "frame": f"frame_{i:04d}.jpg"}
            for i in range(frames)
        ],
    }


def manifest_line(n: int) -> dict[str, Any]:
    return {
        "source-ref": f"s3://{BUCKET}/sequences/seq-{n:06d}.json",
        ATTR: f"s3://{BUCKET}/vehicle/annotations/consolidated-annotation/output/{n}/SeqLabel.json",
        f"{ATTR}-metadata": {
            "class-map": {"0": "Car"},
            "job-name": "labeling-job/bench-vehicle",
            "human-annotated": "yes",
            "creation-date": "2024-01-01T00:00:00.000000",
            "type": "groundtruth/video-object-tracking",
        },
    }


def generate(put: Any, sequences: int, frames: int, seed: int = 7, start: int = 0) -> None:
    """Sequence files and SeqLabel stubs for sequences start..N-1 (``put(key, bytes)``)."""
    rng = random.Random(seed * 1_000_003 + start)
    for n in range(start, sequences):
        line = manifest_line(n)
        put(line["source-ref"].split("/", 3)[3], json.dumps(sequence_file(n, frames)).encode())
        put(line[ATTR].split("/", 3)[3], json.dumps(seq_label(rng, frames, jumpy=n % 100 == 0)).encode())


def manifest_key(size: int) -> str:
    return f"vehicle/manifests/output/output-{size}.manifest"


def write_manifest(put: Any, size: int) -> None:
    put(manifest_key(size), "".join(json.dumps(manifest_line(n)) + "\n" for n in range(size)).encode())


def _generate_local(root: str, start: int, stop: int, frames: int) -> None:
    local = LocalS3Client(root)
    generate(lambda key, body: local.put_object(Bucket=BUCKET, Key=key, Body=body), stop, frames, start=start)


def generate_local(root: str, sequences: int, frames: int, sizes: list[int]) -> None:
    """The data set on a local directory, written by one process per CPU; manifests streamed to disk."""
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(os.cpu_count() or 1, 8))
    bounds = [sequences * i // workers for i in range(workers + 1)]
    with ProcessPoolExecutor(workers) as pool:
        for future in [
            pool.submit(_generate_local, root, a, b, frames) for a, b in itertools.pairwise(bounds)
        ]:
            future.result()
    for size in sizes:
        path = Path(root) / BUCKET / manifest_key(size)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as out:
            out.writelines(json.dumps(manifest_line(n)) + "\n" for n in range(size))


# --------------------------------------------------------------------------------------------
# One measured process
# --------------------------------------------------------------------------------------------


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        pass
    return None


def maxrss_kib() -> int:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    peak = _proc_status("VmHWM")
    if peak is not None:
        return peak
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


def rss_kib() -> int:
    return _proc_status("VmRSS") or maxrss_kib()


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from services.common.processors import ProcessorContext, S3Reader, run_processors

    baseline = rss_kib()
    if args.backend == "moto":
        import boto3
        from moto import mock_aws

        mock = mock_aws()
        mock.start()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        generate(
            lambda key, body: client.put_object(Bucket=BUCKET, Key=key, Body=body), args.size, args.frames
        )
        write_manifest(lambda key, body: client.put_object(Bucket=BUCKET, Key=key, Body=body), args.size)
        baseline = rss_kib()
    else:
        client = LocalS3Client(args.data)
    context = ProcessorContext(
        batch_id="bench",
        job_name="vehicle-audit",
        label_attribute_name=ATTR,
        work_prefix_uri=f"s3://{BUCKET}/work",
        reader=S3Reader(client),
        read_ahead=args.read_ahead,
    )
    source = f"s3://{BUCKET}/{manifest_key(args.size)}"
    times, cpu, result = [], [], None
    for run in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run_processors(
            source,
            f"s3://{BUCKET}/out/{args.processor}-{args.size}-{run}.manifest",
            PROCESSORS[args.processor],
            context,
        )
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert result is not None
    traced = None
    if args.tracemalloc:
        tracemalloc.start()
        run_processors(source, f"s3://{BUCKET}/out/traced.manifest", PROCESSORS[args.processor], context)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "processor": args.processor,
        "size": args.size,
        "times": times,
        "cpu": cpu,
        "lines_in": result.lines_in,
        "lines_out": result.lines_out,
        "flags": result.flags,
        "rss_baseline_kib": baseline,
        "rss_peak_kib": maxrss_kib(),
        "tracemalloc_peak": traced,
    }


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_processors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sequences", type=int, default=100_000, help="largest manifest (lines); also runs N/4 and N/2"
    )
    parser.add_argument("--frames", type=int, default=5, help="frames per sequence in the SeqLabel stubs")
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs at the largest size (median shown); 1 at the others"
    )
    parser.add_argument("--all-runs", action="store_true", help="--runs timed runs at every size")
    parser.add_argument(
        "--processors", default="sample,quality", help=f"comma-separated, of {sorted(PROCESSORS)}"
    )
    parser.add_argument("--backend", choices=("local", "moto"), default="local")
    parser.add_argument(
        "--read-ahead",
        type=int,
        default=8,
        help="ProcessorContext.read_ahead: S3 reads in flight on threads (1: none); default as in production",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="one more run under tracemalloc (slow): Python heap peak"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data directory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processor", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--data", help="directory for the local-file S3 (default: a new one in /dev/shm, else the temp dir)"
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    names = [p.strip() for p in args.processors.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROCESSORS]
    if unknown:
        parser.error(f"unknown processor(s) {unknown}; choose from {sorted(PROCESSORS)}")
    sizes = sorted({max(1, args.sequences // 4), max(1, args.sequences // 2), args.sequences})
    shm = Path("/dev/shm")
    data = args.data or tempfile.mkdtemp(
        prefix="smgt-bench-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    )
    began = time.perf_counter()
    try:
        if args.backend == "local":
            start = time.perf_counter()
            generate_local(data, args.sequences, args.frames, sizes)
            print(
                f"generated {args.sequences:,} sequences x {args.frames} frames in {time.perf_counter() - start:.1f}s "
                f"({data})",
                flush=True,
            )
        print(
            f"backend {args.backend}, read-ahead {args.read_ahead}, {args.runs} run(s) at the largest size, python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPU(s)\n",
            flush=True,
        )
        header = (
            f"{'processor':<14}{'lines':>9}{'kept':>8}{'flags':>7}{'runs':>5}{'median s':>10}{'lines/s':>10}{'lines/cpu-s':>12}"
            f"{'peak MiB':>10}{'baseline':>10}" + (f"{'heap MiB':>10}" if args.tracemalloc else "")
        )
        print(header)
        print("-" * len(header), flush=True)
        rows: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            for size in sizes:
                runs = args.runs if (size == sizes[-1] or args.all_runs) else 1
                command = [
                    sys.executable,
                    "-m",
                    "bench.bench_processors",
                    "--worker",
                    "--processor",
                    name,
                    "--size",
                    str(size),
                    "--data",
                    data,
                    "--runs",
                    str(runs),
                    "--backend",
                    args.backend,
                    "--frames",
                    str(args.frames),
                    "--read-ahead",
                    str(args.read_ahead),
                ] + (["--tracemalloc"] if args.tracemalloc else [])
                done = subprocess.run(
                    command, capture_output=True, text=True, check=False, cwd=Path(__file__).parents[1]
                )
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return done.returncode
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.setdefault(name, []).append(row)
                median = statistics.median(row["times"])
                growth = (row["rss_peak_kib"] - row["rss_baseline_kib"]) / 1024
                line = (
                    f"{name:<14}{size:>9,}{row['lines_out']:>8,}{row['flags']:>7,}{len(row['times']):>5}{median:>10.2f}"
                    f"{size / median:>10,.0f}{size / statistics.median(row['cpu']):>12,.0f}{growth:>10.1f}{row['rss_baseline_kib'] / 1024:>10.1f}"
                )
                if args.tracemalloc:
                    line += f"{row['tracemalloc_peak'] / 2**20:>10.1f}"
                print(line, flush=True)
        print()
        for name, measured in rows.items():
            small, large = measured[0], measured[-1]
            growth_small = max(1.0, (small["rss_peak_kib"] - small["rss_baseline_kib"]) / 1024)
            growth_large = max(1.0, (large["rss_peak_kib"] - large["rss_baseline_kib"]) / 1024)
            text = (
                f"{name}: {large['size'] // small['size']}x the lines -> peak RSS above baseline "
                f"x{growth_large / growth_small:.2f} ({growth_small:.1f} -> {growth_large:.1f} MiB)"
            )
            if args.tracemalloc and small["tracemalloc_peak"]:
                text += f"; Python heap peak x{large['tracemalloc_peak'] / small['tracemalloc_peak']:.2f}"
            print(text)
        print(f"\ntotal {time.perf_counter() - began:.0f}s")
    finally:
        if args.keep:
            print(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
