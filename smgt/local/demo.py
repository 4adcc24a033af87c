"""The reference example on a fresh local stack: vehicle and lane tracking, then their audits.

What it prints is what a user of a deployed stack sees: the batch id, the progress of levels and
jobs, the final ``batch/show`` detail and the SNS message that announces the end of the batch.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from smgt.client import SmgtClient
from smgt.local.stack import LocalStack
from smgt.local.synthetic import ReferenceDataset, upload_reference_dataset
from smgt.progress import render_batch, watch_live

REFERENCE_REQUEST = Path(__file__).resolve().parents[2] / "examples" / "reference-batch.json"


@dataclass
class DemoResult:
    batch_id: str
    detail: dict[str, Any]
    notification: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        return (
            self.detail.get("status") == "COMPLETE"
            and self.notification is not None
            and self.notification.get("status") == "SUCCESS"
        )


def reference_request(batch_id: str, dataset: ReferenceDataset, account_id: str, region: str) -> dict[str, Any]:
    """examples/reference-batch.json pointed at this stack's dataset, account and region."""
    request = json.loads(REFERENCE_REQUEST.read_text())
    request["batchId"] = batch_id
    categories = {"vehicle": dataset.vehicle_categories_uri, "lane": dataset.lane_categories_uri}
    for job in request["labelingJobs"]:
        if "inputManifestS3Uri" in job["inputConfig"]:
            job["inputConfig"]["inputManifestS3Uri"] = dataset.manifest_uri
        if job["jobName"] in categories:
            job["labelCategoryConfigS3Uri"] = categories[job["jobName"]]
        if "workteamArn" in job:
            team = job["workteamArn"].rsplit(":", 1)[-1]
            job["workteamArn"] = f"arn:aws:sagemaker:{region}:{account_id}:{team}"
    return request


def subscribe(session_clients: dict[str, Any], topic_arn: str) -> str:
    sqs, sns = session_clients["sqs"], session_clients["sns"]
    url = sqs.create_queue(QueueName=f"demo-inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def wait_for_message(sqs: Any, url: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return json.loads(message["Body"])
    return None


def run_demo(
    console: Console | None = None,
    *,
    frames: int = 8,
    work_seconds: float = 2.0,
    timeout: float = 300.0,
    ports: tuple[int, int, int] = (0, 0, 0),
    log_level: str = "WARNING",
) -> DemoResult:
    console = console or Console()
    aws_port, gt_port, api_port = ports
    with LocalStack(
        port=aws_port,
        gt_port=gt_port,
        api_port=api_port,
        ground_truth_options={"work_seconds": work_seconds},
        parameters={"LoggingLevel": log_level},
        schedule_interval=5.0,
        failure_visibility_timeout=2,
    ) as stack:
        console.print(Panel(stack.describe(), title="local stack", expand=False))
        provisioned = stack.provisioned
        assert provisioned is not None
        clients = {
            name: boto3.client(
                name,
                endpoint_url=stack.aws_endpoint_url,
                region_name=stack.region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            for name in ("s3", "sqs", "sns")
        }
        env = provisioned.shared_environment
        dataset = upload_reference_dataset(clients["s3"], env["INPUT_BUCKET"], prefix="reference", frames=frames)
        console.print(f"reference dataset: {dataset.manifest_uri} ({dataset.frame_count} frames)")
        inbox = subscribe(clients, env["STATUS_TOPIC_ARN"])

        batch_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        request = reference_request(batch_id, dataset, provisioned.account_id, stack.region)
        client = SmgtClient(stack.api_url)
        created = client.create(request)
        console.print(f"[bold]batch id:[/bold] {created['batchId']}  ({created['status']})")

        detail = watch_live(client, batch_id, interval=1.0, console=console, timeout=timeout)
        notification = wait_for_message(clients["sqs"], inbox, timeout=30)

        console.rule("batch/show")
        console.print(render_batch(detail))
        console.print(Syntax(json.dumps(detail, indent=2), "json", word_wrap=True))
        console.rule("SNS message")
        if notification is None:
            console.print("[red]no SNS message arrived[/red]")
        else:
            console.print(Syntax(json.dumps(notification, indent=2), "json", word_wrap=True))
        result = DemoResult(batch_id=batch_id, detail=detail, notification=notification)
        verdict = "[bold green]completed[/bold green]" if result.succeeded else "[bold red]did not complete[/bold red]"
        console.print(f"batch {batch_id} {verdict}")
        return result
