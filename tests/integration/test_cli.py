"""The `smgt` command against the local stack: create from a file, show, list, cancel."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from smgt.cli import main
from smgt.local.demo import reference_request
from smgt.local.synthetic import upload_reference_dataset
from tests.conftest import LocalStackSession

pytestmark = pytest.mark.integration


def test_create_show_list_and_cancel_from_the_command_line(
    local_stack: LocalStackSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = local_stack.environment
    dataset = upload_reference_dataset(local_stack.aws("s3"), env["INPUT_BUCKET"], prefix="cli", frames=2)
    batch_id = f"cli-{uuid.uuid4().hex[:6]}"
    local_stack.ground_truth.set_behaviour(f"{batch_id}-*", "stall")
    request = reference_request(batch_id, dataset, local_stack.stack.provisioned.account_id, local_stack.stack.region)
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(request))
    api = ["--api", local_stack.stack.api_url]

    assert main(["create", str(path), *api]) == 0
    assert json.loads(capsys.readouterr().out)["batchId"] == batch_id

    assert main(["show", batch_id, "--json", *api]) == 0
    assert json.loads(capsys.readouterr().out)["batchId"] == batch_id

    assert main(["show", "--status", "IN_PROGRESS", "--limit", "100", *api]) == 0
    assert batch_id in capsys.readouterr().out

    assert main(["cancel", batch_id, *api]) == 0
    assert json.loads(capsys.readouterr().out) == {"batchId": batch_id, "status": "CANCELLED"}


def test_errors_from_the_api_are_printed_with_their_fields(
    local_stack: LocalStackSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"batchId": "x", "labelingJobs": []}))
    assert main(["create", str(path), "--api", local_stack.stack.api_url]) == 1
    assert "labelingJobs" in capsys.readouterr().err
    assert main(["create", str(tmp_path / "missing.json"), "--api", local_stack.stack.api_url]) == 2
