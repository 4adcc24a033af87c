"""The template's HttpApi played locally: HTTP requests -> API Gateway payload format 2.0 events.

Routes come from the functions' ``HttpApi`` events in template.yaml. No authorization is checked
locally (the deployed API uses AWS_IAM); the event carries a local IAM caller in
``requestContext.authorizer.iam`` as API Gateway does for IAM-authorized routes.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from smgt.local import endpoints
from smgt.local.provision import ProvisionedStack
from smgt.local.runner import Handler, HandlerResolver, import_handler, make_context, resolve_handlers
from smgt.local.template import FunctionSpec, HttpRoute

log = logging.getLogger(__name__)

_TEXT_TYPES = re.compile(
    r"^(text/|application/(json|xml|x-www-form-urlencoded|javascript|[\w.+-]+\+json|[\w.+-]+\+xml))"
)


@dataclass(frozen=True)
class BoundRoute:
    route: HttpRoute
    spec: FunctionSpec
    handler: Handler
    pattern: re.Pattern[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.route.method not in ("ANY", method):
            return None
        m = self.pattern.fullmatch(path)
        return None if m is None else {k: v for k, v in m.groupdict().items()}


def _path_pattern(path: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            out += f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out)


def build_event(
    request: Request,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    *,
    account_id: str,
    api_id: str = "local",
) -> dict[str, Any]:
    """API Gateway HTTP API payload format 2.0 event for one request."""
    now = datetime.now(UTC)
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        k = key.lower()
        headers[k] = f"{headers[k]},{value}" if k in headers else value
    cookies = [f"{k}={v}" for k, v in request.cookies.items(multi=True)]
    headers.pop("cookie", None)
    query: dict[str, str] = {k: ",".join(v) for k, v in request.args.lists()}
    raw_body = request.get_data(cache=True)
    content_type = headers.get("content-type", "")
    is_text = not raw_body or not content_type or bool(_TEXT_TYPES.match(content_type))
    host = headers.get("host", f"{endpoints.HOST}")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": api_id,
            "authorizer": {
                "iam": {
                    "accessKey": endpoints.ACCESS_KEY_ID,
                    "accountId": account_id,
                    "callerId": "AIDALOCALCALLER",
                    "principalOrgId": None,
                    "userArn": f"arn:aws:iam::{account_id}:user/local",
                    "userId": "AIDALOCALCALLER",
                }
            },
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.user_agent.string or "",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if raw_body:
        text = None
        if is_text:
            try:
                text = raw_body.decode("utf-8")
            except UnicodeDecodeError:
                text = None  # as API Gateway does: bytes that are not UTF-8 travel base64-encoded
        event["isBase64Encoded"] = text is None
        event["body"] = text if text is not None else base64.b64encode(raw_body).decode()
    return event


def to_response(result: Any) -> Response:
    """Map a handler's return value to HTTP as API Gateway (payload 2.0) does."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        # 2.0 infers the response: 200, JSON body
        body = result if isinstance(result, str) else json.dumps(result)
        return Response(body, status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(result["statusCode"]))
    response.headers.pop("Content-Type", None)
    for key, value in (result.get("headers") or {}).items():
        response.headers[key] = str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(key, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    if "Content-Type" not in response.headers and data:
        response.headers["Content-Type"] = "application/json"
    return response


def _json(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, content_type="application/json")


class HttpApiServer:
    """A werkzeug server (thread) that plays the template's HttpApi routes."""

    def __init__(
        self,
        stack: ProvisionedStack,
        *,
        resolve_handler: HandlerResolver = import_handler,
        handlers: Mapping[str, Handler] | None = None,
        host: str = endpoints.HOST,
        port: int = endpoints.API_PORT,
        skip_missing: bool = False,
    ) -> None:
        self.stack = stack
        self.host = host
        self.port = port
        specs = [s for s in stack.template.functions().values() if s.http_routes]
        resolved = resolve_handlers(
            specs, resolve_handler=resolve_handler, handlers=handlers, skip_missing=skip_missing
        )
        self.routes: list[BoundRoute] = [
            BoundRoute(route, spec, resolved[spec.logical_id], _path_pattern(route.path))
            for spec in specs
            if spec.logical_id in resolved
            for route in spec.http_routes
        ]
        self.invocations: dict[str, int] = {spec.logical_id: 0 for spec in specs}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def route_keys(self) -> list[str]:
        return [r.route.route_key for r in self.routes]

    @property
    def url(self) -> str:
        if self._server is None:
            return endpoints.url_for(self.host, self.port)
        return endpoints.url_for(self.host, self._server.server_port)

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        path = request.path
        for bound in self.routes:
            params = bound.match(request.method, path)
            if params is None:
                continue
            event = build_event(request, bound.route, params, account_id=self.stack.account_id)
            started = time.monotonic()
            try:
                result = bound.handler(event, make_context(self.stack, bound.spec))
            except Exception:
                log.exception("%s raised on %s", bound.spec.logical_id, bound.route.route_key)
                return _json(500, "Internal Server Error")
            finally:
                with self._lock:
                    self.invocations[bound.spec.logical_id] += 1
            log.debug(
                "%s %s -> %s in %.0f ms",
                request.method,
                path,
                bound.spec.logical_id,
                (time.monotonic() - started) * 1000,
            )
            return to_response(result)
        return _json(404, "Not Found")

    def start(self) -> str:
        self._server = make_server(self.host, self.port, self.wsgi_app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="smgt-http-api", daemon=True)
        self._thread.start()
        log.info("HTTP API on %s: %s", self.url, ", ".join(self.route_keys))
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
