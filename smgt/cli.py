"""`smgt`: the local stack, the reference demo, and the batch API from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from smgt.client import ApiError, SmgtClient, WatchTimeout
from smgt.local import endpoints
from smgt.progress import render_batch, render_list, watch_live


def _client(args: argparse.Namespace) -> SmgtClient:
    return SmgtClient(args.api)


def cmd_local_start(args: argparse.Namespace, console: Console) -> int:
    from smgt.local.stack import LocalStack

    stack = LocalStack(host=args.host, port=args.port, api_port=args.api_port, gt_port=args.gt_port)
    stack.start()
    console.print(stack.describe())
    if args.sample_data:
        _upload_sample_data(stack, console)
    console.print("Ctrl-C stops everything started here.")
    stack.run_forever()
    return 0


def _upload_sample_data(stack: Any, console: Console) -> None:
    """The synthetic reference dataset where examples/reference-batch.json expects it."""
    import boto3

    from smgt.local.synthetic import upload_reference_dataset

    bucket = stack.provisioned.shared_environment["INPUT_BUCKET"]
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.aws_endpoint_url,
        region_name=stack.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    dataset = upload_reference_dataset(s3, bucket, prefix="reference")
    console.print(f"sample data: {dataset.manifest_uri} ({dataset.frame_count} frames)")
    from smgt.local.demo import REFERENCE_REQUEST

    if REFERENCE_REQUEST.exists() and f"s3://{bucket}/" in REFERENCE_REQUEST.read_text():
        console.print(f"try: smgt create {REFERENCE_REQUEST} && smgt watch reference-0001")


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from smgt.local.demo import run_demo

    result = run_demo(console, frames=args.frames, work_seconds=args.work_seconds, timeout=args.timeout)
    return 0 if result.succeeded else 1


def cmd_create(args: argparse.Namespace, console: Console) -> int:
    try:
        body = json.loads(Path(args.file).read_text())
    except (OSError, json.JSONDecodeError) as error:
        console.print(f"[red]cannot read {args.file}: {error}[/red]")
        return 2
    answer = _client(args).create(body)
    console.print_json(json.dumps(answer))
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    client = _client(args)
    if args.batch_id:
        detail = client.show(args.batch_id)
        _print(console, detail, args.json, render_batch)
    else:
        page = client.list(status=args.status, limit=args.limit, next_token=args.next_token)
        _print(console, page, args.json, render_list)
    return 0


def cmd_watch(args: argparse.Namespace, console: Console) -> int:
    detail = watch_live(_client(args), args.batch_id, interval=args.interval, console=console, timeout=args.timeout)
    return 0 if detail.get("status") == "COMPLETE" else 1


def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    console.print_json(json.dumps(_client(args).cancel(args.batch_id)))
    return 0


def _print(console: Console, document: Any, as_json: bool, render: Any) -> None:
    if as_json:
        console.print_json(json.dumps(document))
    else:
        console.print(render(document))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smgt", description="Multi-level SageMaker Ground Truth workflows.")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the embedded local stack").add_subparsers(dest="local_command", required=True)
    start = local.add_parser("start", help="start the local stack in the foreground (Ctrl-C stops it)")
    start.add_argument("--host", default=endpoints.HOST)
    start.add_argument("--port", type=int, default=endpoints.AWS_PORT, help="AWS-compatible endpoint port (4566)")
    start.add_argument("--api-port", type=int, default=endpoints.API_PORT, help="HTTP API port (3000)")
    start.add_argument("--gt-port", type=int, default=endpoints.GROUND_TRUTH_PORT, help="simulated Ground Truth port (4580)")
    start.add_argument(
        "--no-sample-data",
        dest="sample_data",
        action="store_false",
        help="do not upload the synthetic reference dataset to the input bucket",
    )
    start.set_defaults(func=cmd_local_start)

    demo = commands.add_parser("demo", help="run the reference example on a fresh local stack")
    demo.add_argument("--frames", type=int, default=8, help="frames in the synthetic video sequence")
    demo.add_argument("--work-seconds", type=float, default=2.0, help="how long each simulated job works")
    demo.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    demo.set_defaults(func=cmd_demo)

    def api_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--api", default=None, help="API URL (default $SMGT_API_URL or http://127.0.0.1:3000)")
        return sub

    create = api_command("create", "create a batch from a JSON request file")
    create.add_argument("file")
    create.set_defaults(func=cmd_create)

    show = api_command("show", "show one batch, or list batches")
    show.add_argument("batch_id", nargs="?")
    show.add_argument("--status", default=None, help="list mode: batches in this status (default IN_PROGRESS)")
    show.add_argument("--limit", type=int, default=None)
    show.add_argument("--next-token", default=None)
    show.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    show.set_defaults(func=cmd_show)

    watch = api_command("watch", "follow a batch until it ends")
    watch.add_argument("batch_id")
    watch.add_argument("--interval", type=float, default=2.0)
    watch.add_argument("--timeout", type=float, default=None)
    watch.set_defaults(func=cmd_watch)

    cancel = api_command("cancel", "stop a batch's jobs and mark it CANCELLED")
    cancel.add_argument("batch_id")
    cancel.set_defaults(func=cmd_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return int(args.func(args, console))
    except ApiError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        return 1
    except WatchTimeout as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
