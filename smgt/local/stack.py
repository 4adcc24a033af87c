"""The whole local stack in one context manager: endpoint, resources, Ground Truth, runner, HTTP API.

    with LocalStack() as stack:          # 127.0.0.1:4566 / :4580 / :3000
        print(stack.api_url, stack.provisioned.outputs)
        stack.wait_idle()

``LocalStack(port=0, api_port=0, gt_port=0)`` picks free ports (tests). ``run_forever()`` blocks until
Ctrl-C or SIGTERM and stops everything this object started.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Self

from smgt.local import endpoints
from smgt.local.http_api import HttpApiServer
from smgt.local.provision import ProvisionedStack, provision
from smgt.local.runner import Handler, HandlerResolver, Runner, import_handler
from smgt.local.template import TEMPLATE_PATH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    aws: str
    aws_kind: str  # localstack | moto | moto-external
    ground_truth: str | None
    api: str


class LocalStack:
    def __init__(
        self,
        *,
        host: str = endpoints.HOST,
        port: int = endpoints.AWS_PORT,
        api_port: int = endpoints.API_PORT,
        gt_port: int = endpoints.GROUND_TRUTH_PORT,
        template_path: str | Path = TEMPLATE_PATH,
        parameters: Mapping[str, Any] | None = None,
        region: str = endpoints.REGION,
        ground_truth: bool = True,
        ground_truth_options: Mapping[str, Any] | None = None,
        resolve_handler: HandlerResolver = import_handler,
        handlers: Mapping[str, Handler] | None = None,
        schedule_interval: float | None = 5.0,
        failure_visibility_timeout: int | None = None,
        skip_missing_handlers: bool = True,
        serve_api: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.api_port = api_port
        self.gt_port = gt_port
        self.template_path = template_path
        self.parameters = parameters
        self.region = region
        self.want_ground_truth = ground_truth
        self.ground_truth_options = dict(ground_truth_options or {})
        self.resolve_handler = resolve_handler
        self.handlers = handlers
        self.schedule_interval = schedule_interval
        self.failure_visibility_timeout = failure_visibility_timeout
        self.skip_missing_handlers = skip_missing_handlers
        self.serve_api = serve_api

        self.aws: endpoints.AwsEndpoint | None = None
        self.provisioned: ProvisionedStack | None = None
        self.ground_truth: Any = None
        self.ground_truth_url: str | None = None
        self.runner: Runner | None = None
        self.api: HttpApiServer | None = None
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalStack:
        try:
            self.aws = endpoints.ensure_aws_endpoint(self.host, self.port)
            self.provisioned = provision(
                self.aws.url, template_path=self.template_path, parameters=self.parameters, region=self.region
            )
            if self.want_ground_truth:
                self._start_ground_truth()
            self.runner = Runner(
                self.provisioned,
                resolve_handler=self.resolve_handler,
                handlers=self.handlers,
                schedule_interval=self.schedule_interval,
                ground_truth_url=self.ground_truth_url,
                skip_missing=self.skip_missing_handlers,
                failure_visibility_timeout=self.failure_visibility_timeout,
            ).start()
            if self.serve_api:
                self.api = HttpApiServer(
                    self.provisioned,
                    resolve_handler=self.resolve_handler,
                    handlers=self.handlers,
                    host=self.host,
                    port=self.api_port,
                    skip_missing=self.skip_missing_handlers,
                )
                self.api.start()
                self.provisioned.outputs["ApiUrl"] = self.api.url
        except BaseException:
            self.stop()
            raise
        return self

    def _start_ground_truth(self) -> None:
        try:
            module = importlib.import_module("smgt.local.groundtruth")
        except ImportError as err:
            warnings.warn(
                f"simulated Ground Truth not available ({err}); SageMaker calls are not served",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        assert self.aws is not None
        self.ground_truth = module.SimulatedGroundTruth(
            self.aws.url, self.region, **self.ground_truth_options
        )
        self.ground_truth_url = self.ground_truth.start(host=self.host, port=self.gt_port)

    def stop(self) -> None:
        """Stop everything this object started (in reverse order); safe to call twice."""
        for name, stopper in (
            ("HTTP API", lambda: self.api and self.api.stop()),
            ("runner", lambda: self.runner and self.runner.stop()),
            ("Ground Truth", lambda: self.ground_truth and self.ground_truth.stop()),
            ("moto", lambda: self.aws and self.aws.server and self.aws.server.stop()),
        ):
            try:
                stopper()
            except Exception:
                log.exception("stopping the %s failed", name)
        self.api = None
        self.runner = None
        self.ground_truth = None
        if self.aws is not None and self.aws.server is not None:
            self.aws = None
        self._stopped.set()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Start if needed, block until Ctrl-C or SIGTERM, then stop everything (main thread only)."""
        if self.runner is None:
            self.start()
        self._stopped.clear()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stopped.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    # ------------------------------------------------------------------ what callers need

    @property
    def aws_endpoint_url(self) -> str:
        assert self.aws is not None, "not started"
        return self.aws.url

    @property
    def api_url(self) -> str:
        assert self.api is not None, "HTTP API not started"
        return self.api.url

    @property
    def endpoints(self) -> Endpoints:
        assert self.aws is not None, "not started"
        return Endpoints(
            aws=self.aws.url,
            aws_kind=self.aws.kind,
            ground_truth=self.ground_truth_url,
            api=self.api.url if self.api else "",
        )

    @property
    def environment(self) -> dict[str, str]:
        """What a client process needs to talk to this stack (and what the handlers see)."""
        assert self.provisioned is not None, "not started"
        from smgt.local.runner import local_environment

        env = local_environment(self.provisioned, self.ground_truth_url)
        if self.api:
            env["SMGT_API_URL"] = self.api.url
        return env

    def wait_idle(self, timeout: float = 30.0) -> bool:
        assert self.runner is not None, "not started"
        return self.runner.wait_idle(timeout)

    def describe(self) -> str:
        e = self.endpoints
        lines = [
            f"AWS endpoint          {e.aws} ({e.aws_kind})",
            f"Ground Truth          {e.ground_truth or 'not running'}",
            f"HTTP API              {e.api or 'not running'}",
        ]
        if self.api:
            lines += [f"  {key}" for key in self.api.route_keys]
        if self.provisioned:
            for key in (
                "EventBusName",
                "TableName",
                "InputBucketName",
                "ProcessingBucketName",
                "StatusTopicArn",
            ):
                if key in self.provisioned.outputs:
                    lines.append(f"{key:<22}{self.provisioned.outputs[key]}")
        if self.runner:
            lines.append("functions             " + ", ".join(sorted(self.runner.handlers)))
        return "\n".join(lines)
