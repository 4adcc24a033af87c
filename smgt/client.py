"""A small client of the batch HTTP API: create, show, list, cancel and watch batches.

The deployed API (API Gateway HTTP API) uses IAM authorization, so every request to a non-loopback
URL is signed with SigV4 (service ``execute-api``) through botocore. The local API on
http://127.0.0.1:3000 checks no authorization, so loopback URLs are sent unsigned.

Only the standard library (urllib) carries the requests; botocore is used for signing only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

DEFAULT_API_URL = "http://127.0.0.1:3000"
API_URL_ENV = "SMGT_API_URL"
SERVICE = "execute-api"
USER_AGENT = "smgt-cli"

CREATE_PATH = "/batch/create"
SHOW_PATH = "/batch/show"
CANCEL_PATH = "/batch/cancel"

IN_PROGRESS = "IN_PROGRESS"

_EXECUTE_API_HOST = re.compile(r"^[^.]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$", re.IGNORECASE)

Detail = dict[str, Any]


class ApiError(Exception):
    """The API answered with an error status (or did not answer at all: see ``ApiConnectionError``).

    ``status`` is the HTTP status, ``body`` the parsed JSON answer when it was JSON (else its text).
    The message lists the API's ``errors[]`` as ``field: rule`` lines when present.
    """

    def __init__(
        self, status: int | None, body: Any, message: str | None = None, *, method: str = "", url: str = ""
    ):
        self.status = status
        self.body = body
        self.method = method
        self.url = url
        super().__init__(message or _describe(status, body, method, url))

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The API's ``errors[]`` (``{"field": ..., "rule": ...}``), empty when the answer had none."""
        if isinstance(self.body, Mapping) and isinstance(self.body.get("errors"), list):
            return [e for e in self.body["errors"] if isinstance(e, Mapping)]
        return []


class ApiConnectionError(ApiError):
    """No HTTP answer: the connection was refused, the host unknown, or the request timed out."""

    def __init__(self, message: str, *, method: str = "", url: str = ""):
        super().__init__(None, None, message, method=method, url=url)


class WatchTimeout(TimeoutError):
    """``watch`` gave up before the batch ended; ``detail`` is the last detail seen."""

    def __init__(self, batch_id: str, timeout: float, detail: Detail | None):
        self.batch_id = batch_id
        self.detail = detail
        status = detail.get("status") if detail else "unknown"
        super().__init__(f"batch {batch_id!r} still {status} after {timeout:g} s")


def _describe(status: int | None, body: Any, method: str, url: str) -> str:
    where = f"{method} {urllib.parse.urlsplit(url).path}" if method else "the API"
    head = f"{where} answered HTTP {status}"
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("Message")
        if message:
            head += f": {message}"
        problems = body.get("errors")
        if isinstance(problems, list) and problems:
            lines = []
            for problem in problems:
                if isinstance(problem, Mapping):
                    lines.append(f"  - {problem.get('field', '?')}: {problem.get('rule', '?')}")
                else:
                    lines.append(f"  - {problem}")
            head += "\n" + "\n".join(lines)
    elif isinstance(body, str) and body.strip():
        head += f": {body.strip()[:500]}"
    return head


def is_loopback_url(url: str) -> bool:
    """True for http(s)://localhost, 127.0.0.0/8 and [::1] URLs (the local API, sent unsigned)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_from_host(url: str) -> str | None:
    """The region of an ``<api-id>.execute-api.<region>.amazonaws.com`` URL, else None."""
    host = urllib.parse.urlsplit(url).hostname or ""
    match = _EXECUTE_API_HOST.match(host)
    return match.group(1).lower() if match else None


class SmgtClient:
    """Client of the batch API at ``api_url`` (default ``$SMGT_API_URL``, else the local API).

    ``region`` (used only to sign requests to a deployed API) defaults to the one in an
    ``*.execute-api.<region>.amazonaws.com`` host, then ``$AWS_REGION``, ``$AWS_DEFAULT_REGION`` and
    the botocore profile's region. ``credentials`` (botocore credentials) default to botocore's chain.
    """

    def __init__(
        self,
        api_url: str | None = None,
        region: str | None = None,
        timeout: float = 30,
        *,
        credentials: Any = None,
    ) -> None:
        url = (api_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).strip()
        if "://" not in url:
            url = f"https://{url}"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL of the API: {api_url!r}")
        self.api_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout
        self.signed = not is_loopback_url(self.api_url)
        self._region = region
        self._credentials = credentials
        self._session: Any = None
        # Loopback requests never go through a proxy from the environment; others use urllib's default.
        handlers = [urllib.request.ProxyHandler({})] if not self.signed else []
        self._opener = urllib.request.build_opener(*handlers)
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"SmgtClient({self.api_url!r}, signed={self.signed})"

    # ---- signing ---------------------------------------------------------------------------

    @property
    def region(self) -> str:
        if self._region:
            return self._region
        region = (
            region_from_host(self.api_url)
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or self._botocore_session().get_config_variable("region")
        )
        if not region:
            raise ApiError(
                None,
                None,
                f"cannot sign requests to {self.api_url}: no AWS region "
                "(pass --region, or set AWS_REGION / AWS_DEFAULT_REGION)",
            )
        self._region = region
        return region

    def _botocore_session(self) -> Any:
        import botocore.session

        if self._session is None:
            self._session = botocore.session.Session()
        return self._session

    def _frozen_credentials(self) -> Any:
        if self._credentials is None:
            self._credentials = self._botocore_session().get_credentials()
        if self._credentials is None:
            raise ApiError(
                None,
                None,
                f"cannot sign requests to {self.api_url}: no AWS credentials found "
                "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
            )
        freeze = getattr(self._credentials, "get_frozen_credentials", None)
        return freeze() if freeze else self._credentials

    # ---- requests --------------------------------------------------------------------------

    def url_for(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        url = self.api_url + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="-_.~")
        return url

    def prepare_request(
        self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> AWSRequest:
        """The request as it will be sent: URL with query, JSON body, headers, SigV4 when not loopback."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method.upper(), url=self.url_for(path, query), data=data, headers=headers)
        if self.signed:
            SigV4Auth(self._frozen_credentials(), SERVICE, self.region).add_auth(request)
        return request

    def request(
        self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        """Send one request; the parsed JSON answer, or ApiError / ApiConnectionError."""
        prepared = self.prepare_request(method, path, query, body)
        outgoing = urllib.request.Request(
            prepared.url,
            data=prepared.data or None,
            headers=dict(prepared.headers.items()),
            method=prepared.method,
        )
        try:
            with self._opener.open(outgoing, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raw = error.read() if error.fp is not None else b""
            raise ApiError(error.code, _parse(raw), method=prepared.method, url=prepared.url) from None
        except (urllib.error.URLError, OSError) as error:
            raise self._connection_error(error, prepared.method, prepared.url) from None
        parsed = _parse(raw)
        return {} if parsed in (None, "") else parsed

    def _connection_error(self, error: Exception, method: str, url: str) -> ApiConnectionError:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        hint = "run `smgt local start`, or point --api / $SMGT_API_URL at a deployed API"
        if isinstance(reason, ConnectionRefusedError):
            message = f"no API answers at {self.api_url} (connection refused): {hint}"
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            message = f"the API at {self.api_url} did not answer within {self.timeout:g} s"
        elif isinstance(reason, socket.gaierror):
            message = f"cannot resolve the API host of {self.api_url} ({reason}): {hint}"
        else:
            message = f"cannot reach the API at {self.api_url}: {reason}"
        return ApiConnectionError(message, method=method, url=url)

    # ---- the API ---------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /batch/create -> ``{"batchId", "status", "created"}`` (201 new, 200 same request again)."""
        return self.request("POST", CREATE_PATH, body=body)

    def show(self, batch_id: str) -> Detail:
        """GET /batch/show?batchId= -> the batch detail (``BatchDetail`` wire shape)."""
        return self.request("GET", SHOW_PATH, query={"batchId": batch_id})

    def list(
        self, status: str | None = None, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        """GET /batch/show -> ``{"batches": [...], "nextToken"}`` (the API defaults: IN_PROGRESS, 25)."""
        query = {"status": None if status is None else str(status), "limit": limit, "nextToken": next_token}
        return self.request("GET", SHOW_PATH, query=query)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """POST /batch/cancel -> ``{"batchId", "status"}``."""
        return self.request("POST", CANCEL_PATH, body={"batchId": batch_id})

    def watch(
        self,
        batch_id: str,
        interval: float = 2.0,
        timeout: float | None = None,
        on_update: Callable[[Detail], None] | None = None,
        *,
        max_transient_errors: int = 3,
    ) -> Detail:
        """Poll ``show`` every ``interval`` s until the batch status is not IN_PROGRESS; the final detail.

        ``on_update`` is called with every detail polled (the final one included). A 429/5xx answer
        is retried up to ``max_transient_errors`` times in a row; other errors end the watch.
        ``timeout`` (s) raises ``WatchTimeout`` carrying the last detail.
        """
        deadline = None if timeout is None else self._clock() + timeout
        last: Detail | None = None
        transient = 0
        while True:
            try:
                detail = self.show(batch_id)
                transient = 0
            except ApiError as error:
                retryable = error.status is not None and (error.status == 429 or error.status >= 500)
                transient += 1
                if not retryable or transient > max_transient_errors:
                    raise
                detail = None
            if detail is not None:
                last = detail
                if on_update is not None:
                    on_update(detail)
                if is_terminal(detail):
                    return detail
            if deadline is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise WatchTimeout(batch_id, timeout or 0, last)
                self._sleep(min(interval, remaining))
            else:
                self._sleep(interval)


def is_terminal(detail: Mapping[str, Any]) -> bool:
    """A batch has ended when its status is anything but IN_PROGRESS."""
    return str(detail.get("status", IN_PROGRESS)) != IN_PROGRESS


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace") if raw else ""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
