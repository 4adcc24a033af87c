"""Local endpoints: one convention for the CLI, the tests and the docs.

The AWS-compatible endpoint is LocalStack when one answers on the port, otherwise an embedded moto
server started by this process. Production code never imports this module: it reaches the endpoint
through ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_SAGEMAKER``, which botocore honours.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from moto.server import ThreadedMotoServer

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
AWS_PORT = 4566
GROUND_TRUTH_PORT = 4580
API_PORT = 3000

AWS_ENDPOINT_URL = f"http://{HOST}:{AWS_PORT}"
GROUND_TRUTH_URL = f"http://{HOST}:{GROUND_TRUTH_PORT}"
API_URL = f"http://{HOST}:{API_PORT}"

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's and LocalStack's default account
ACCESS_KEY_ID = "test"
SECRET_ACCESS_KEY = "test"

TEST_CREDENTIALS: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": "test",
}


class EndpointError(RuntimeError):
    """Something answers on a local port but it is not what we can use."""


@dataclass(frozen=True)
class AwsEndpoint:
    """The AWS-compatible endpoint in use and who provides it."""

    url: str
    kind: str  # "localstack" | "moto" (started here) | "moto-external" (found running)
    server: ThreadedMotoServer | None = None  # set when this process started it

    @property
    def started_here(self) -> bool:
        return self.server is not None


def url_for(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def _get(url: str, timeout: float) -> tuple[int, bytes] | None:
    """GET url; (status, body) if something answered over HTTP, None if nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read() if err.fp else b""
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError):
        return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def detect_localstack(url: str = AWS_ENDPOINT_URL, timeout: float = 1.0) -> bool:
    """True when a LocalStack answers ``GET /_localstack/health`` at url."""
    answer = _get(url.rstrip("/") + "/_localstack/health", timeout)
    if answer is None or answer[0] != 200:
        return False
    try:
        body = json.loads(answer[1] or b"{}")
    except ValueError:
        return False
    return isinstance(body, dict) and ("services" in body or "edition" in body or "version" in body)


def detect_moto(url: str, timeout: float = 1.0) -> bool:
    """True when a moto server answers at url (its ``/moto-api/`` dashboard API)."""
    answer = _get(url.rstrip("/") + "/moto-api/data.json", timeout)
    return answer is not None and answer[0] == 200


def start_moto_server(host: str = HOST, port: int = AWS_PORT, verbose: bool = False) -> ThreadedMotoServer:
    """Start an embedded moto server on host:port (port 0 = a free port) and return it, started.

    Use ``server.get_host_and_port()`` for the actual port.
    """
    from moto.server import ThreadedMotoServer

    if port and port_open(host, port):
        raise EndpointError(
            f"port {port} on {host} is already in use; stop what runs there or choose another with --port"
        )
    if not verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=verbose)
    server.start()
    wsgi = server._server  # werkzeug reads .app on every request
    if wsgi is not None:
        wsgi.app = _AtomicDynamoDB(wsgi.app)
    log.info("embedded moto server on %s:%s", *server.get_host_and_port())
    return server


class _AtomicDynamoDB:
    """Serve DynamoDB requests one at a time, as DynamoDB makes each request atomic.

    moto checks a write's condition and applies the write in separate steps with no lock, so two
    concurrent conditional writes could both succeed; the workflow's exactly-once counting relies
    on DynamoDB refusing the second. Other services (SQS long polls among them) stay concurrent.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


def ensure_aws_endpoint(host: str = HOST, port: int = AWS_PORT) -> AwsEndpoint:
    """LocalStack if it answers on host:port, a moto server already there, or a new embedded moto.

    Raises EndpointError when something else holds the port.
    """
    if port:
        url = url_for(host, port)
        if port_open(host, port):
            if detect_localstack(url):
                log.info("using LocalStack at %s", url)
                return AwsEndpoint(url=url, kind="localstack")
            if detect_moto(url):
                log.info("using the moto server already running at %s", url)
                return AwsEndpoint(url=url, kind="moto-external")
            raise EndpointError(
                f"something that is neither LocalStack nor an AWS emulator answers on {host}:{port}; "
                f"stop it or choose another port with --port"
            )
    server = start_moto_server(host, port)
    real_host, real_port = server.get_host_and_port()
    return AwsEndpoint(url=url_for(real_host, real_port), kind="moto", server=server)


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
