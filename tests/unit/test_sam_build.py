"""`sam build` packages every function and the CommonLayer so that each handler imports as Lambda would."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from smgt.local.template import Template
from tests.conftest import ROOT

SAM = Path(sys.executable).with_name("sam")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAM.exists():
        pytest.skip(f"aws-sam-cli is not installed next to {sys.executable}")
    out = tmp_path_factory.mktemp("sam-build")
    result = subprocess.run(
        [str(SAM), "build", "--build-dir", str(out), "--template", str(ROOT / "template.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_sam_build_puts_the_domain_in_the_layer(build_dir: Path) -> None:
    layer = build_dir / "CommonLayer" / "python"
    for module in ("events.py", "store.py", "modalities.py", "manifests.py", "labeling.py"):
        assert (layer / "services" / "common" / module).is_file(), module
    assert (layer / "pydantic").is_dir() and (layer / "pynamodb").is_dir() and (layer / "aws_lambda_powertools").is_dir()


@pytest.mark.skipif(
    platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11),
    reason="the layer holds Lambda's x86_64 / Python 3.11 wheels",
)
def test_every_built_handler_imports_with_only_its_code_and_the_layer(build_dir: Path) -> None:
    layer = build_dir / "CommonLayer" / "python"
    template = Template.load()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TABLE_NAME": "t",
        "EVENT_BUS_NAME": "b",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    # Lambda's runtime provides boto3 after /var/task and /opt/python: the site directory goes last,
    # and -S keeps its .pth files (the editable install of this repository) out.
    runtime_site = [p for p in sys.path if p.endswith("site-packages")]
    python = sys.executable
    for logical_id, function in template.functions().items():
        code = build_dir / logical_id
        module, handler = function.handler.rsplit(".", 1)
        probe = f"import {module}; assert callable({module}.{handler})"
        result = subprocess.run(
            [python, "-S", "-E", "-c", f"import sys; sys.path[:0] = [{str(code)!r}, {str(layer)!r}]; sys.path += {runtime_site!r}; {probe}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{logical_id}: {result.stderr[-2000:]}"
