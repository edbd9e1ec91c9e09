"""The provider simulator's HTTP server: Anthropic, Bedrock and Vertex wire formats on loopback, with faults.

Control plane (JSON): `GET|POST|DELETE /_sim/faults`, `GET|DELETE /_sim/requests`, `POST /_sim/sts/trust`
(`{"role_arn", "external_id"}`: that role's trust policy then requires the ExternalId, as AWS enforces it). Providers:
`/anthropic/v1/messages`, `/anthropic/v1/models`, `/bedrock/{region}/model/{id}/invoke[-with-response-stream]`,
`/vertex/v1/projects/{p}/locations/{region}/publishers/anthropic/models/{model}:rawPredict|:streamRawPredict`.
Also `/sts/` (AssumeRole) and `/google/token` (service-account token exchange) so every credential mode can be
exercised without leaving the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from inference.simulator import content, eventstream, features

PROVIDERS = ("anthropic", "bedrock", "vertex")
BEDROCK_PATH = re.compile(
    r"^/bedrock/(?P<region>[a-z0-9-]+)/model/(?P<model>[^/]+)/(?P<op>invoke|invoke-with-response-stream|count-tokens)$"
)
VERTEX_PATH = re.compile(
    r"^/vertex(/(?P<host_region>[a-z0-9-]+))?/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[a-z0-9-]+)"
    r"/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<op>rawPredict|streamRawPredict)$"
)
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[a-z0-9-]+)/bedrock/aws4_request"
)
HANG_LIMIT_S = 300.0
# Bedrock and Vertex take the API version in the body (`bedrock-2023-05-31`, `vertex-2023-10-16`, or a dated
# version as newer SDKs send).
VERSION = re.compile(r"^((bedrock|vertex)-)?\d{4}-\d{2}-\d{2}$")


@dataclass
class Fault:
    """What to do to matching requests. `count` limits it to the next N requests (None: until cleared)."""

    provider: str
    region: str = ""
    status: int | None = None
    latency_ms: int = 0
    drop: bool = False
    hang: bool = False
    error_after_events: int | None = None
    count: int | None = None


class Faults:
    """Thread-safe fault table keyed by provider and region ("" for Anthropic, "*" for every region)."""

    def __init__(self, released: threading.Event) -> None:
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str], Fault] = {}
        self._released = released

    def set(self, provider: str, region: str = "", *, status: int | None = None, latency_ms: int = 0,
            drop: bool = False, hang: bool = False, error_after_events: int | None = None,
            count: int | None = None) -> Fault:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
        fault = Fault(provider, region, status, int(latency_ms), bool(drop), bool(hang), error_after_events, count)
        with self._lock:
            self._faults[(provider, region)] = fault
            self._released.clear()
        return fault

    def clear(self, provider: str | None = None, region: str | None = None) -> None:
        with self._lock:
            if provider is None:
                self._faults.clear()
            else:
                self._faults = {k: v for k, v in self._faults.items()
                                if not (k[0] == provider and (region is None or k[1] == region))}
            hanging = any(f.hang for f in self._faults.values())
        if not hanging:
            self._released.set()  # wake every hung request

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults.values()]

    def peek(self, provider: str, region: str) -> Fault | None:
        with self._lock:
            return self._faults.get((provider, region)) or self._faults.get((provider, "*"))

    def take(self, provider: str, region: str) -> Fault | None:
        """The fault for this request, consuming one use of a counted fault."""
        with self._lock:
            fault = self._faults.get((provider, region)) or self._faults.get((provider, "*"))
            if fault is None:
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults = {k: v for k, v in self._faults.items() if v is not fault}
            return fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout, a dropped-connection test) is normal here, not an error to print.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle's algorithm and the client's delayed
        # ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are recorded in the request log, not printed

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def sim(self) -> Simulator:
        return self.server.simulator

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_sim_{uuid.uuid4().hex[:20]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_sim_{uuid.uuid4().hex[:20]}")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_sim/faults":
            self._send(200, {"faults": self.sim.faults.list()})
        elif path == "/_sim/requests":
            self._send(200, {"requests": self.sim.requests()})
        elif path == "/anthropic/v1/models":
            if not self._anthropic_auth():
                return
            data = [{"type": "model", "id": m, "display_name": n, "created_at": "2026-09-01T00:00:00Z"}
                    for m, n in content.LISTED_MODELS]
            self._send(200, {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        elif path in ("/healthz", "/"):
            self._send(200, {"status": "ok", "simulator": True})
        else:
            self._send(404, content.anthropic_error(404, f"Not found: {path}"))

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_sim/faults":
            self.sim.faults.clear()
            self._send(200, {"faults": []})
        elif path == "/_sim/requests":
            self.sim.reset_requests()
            self._send(200, {"requests": []})
        else:
            self._send(404, content.anthropic_error(404, f"Not found: {path}"))

    def do_POST(self) -> None:
        path = unquote(urlsplit(self.path).path)
        raw = self._body()
        if path == "/_sim/faults":
            self._control_faults(raw)
        elif path == "/_sim/sts/trust":
            spec = self._parse(raw) or {}
            if not spec.get("role_arn") or not spec.get("external_id"):
                self._send(400, {"error": "role_arn and external_id are required"})
                return
            self.sim.trust_role(str(spec["role_arn"]), str(spec["external_id"]))
            self._send(200, {"trust": self.sim.role_trust})
        elif path in ("/anthropic/v1/messages", "/anthropic/v1/messages/count_tokens"):
            self._anthropic(path, raw)
        elif match := BEDROCK_PATH.match(path):
            self._bedrock(match, raw)
        elif match := VERTEX_PATH.match(path):
            self._vertex(match, raw)
        elif path.rstrip("/") == "/sts":
            self._sts(raw)
        elif path == "/google/token":
            self._google_token()
        else:
            self._send(404, content.anthropic_error(404, f"Not found: {path}"))

    def _control_faults(self, raw: bytes) -> None:
        try:
            spec = json.loads(raw or b"{}")
            items = spec if isinstance(spec, list) else [spec]
            created = [asdict(self.sim.faults.set(**item)) for item in items]
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": f"bad fault: {exc}"})
            return
        self._send(200, {"faults": created})

    # --- providers -----------------------------------------------------------------------------

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _anthropic_auth(self) -> bool:
        if self.headers.get("x-api-key") or (self.headers.get("authorization") or "").startswith("Bearer "):
            return True
        self._send(401, content.anthropic_error(401, "x-api-key header is required"))
        return False

    def _anthropic(self, path: str, raw: bytes) -> None:
        if not self._anthropic_auth():
            return
        body = self._parse(raw)
        model = (body or {}).get("model")
        key = self.headers.get("x-api-key") or (self.headers.get("authorization") or "")[7:]
        header = self.headers.get("anthropic-beta")
        self.sim.record("anthropic", "", path, model, bool((body or {}).get("stream")), body, key[:12],
                        [b.strip() for b in header.split(",")] if header else None)
        if not self._apply_pre_faults("anthropic", ""):
            return
        if body is None:
            self._send(400, content.anthropic_error(400, "There was an error parsing the body of your request."))
            return
        if not isinstance(model, str) or not model:
            self._send(400, content.anthropic_error(400, "model: Field required"))
            return
        if "anthropic_beta" in body:  # the Anthropic API takes betas as the header only
            self._send(400, content.anthropic_error(400, "anthropic_beta: Extra inputs are not permitted"))
            return
        if path.endswith("count_tokens"):
            self._count("anthropic", body)
            return
        self._messages("anthropic", "", model, body, stream=bool(body.get("stream")), sse=True,
                       model_ok=bool(content.ANTHROPIC_MODEL.match(model)))

    def _bedrock(self, match: re.Match[str], raw: bytes) -> None:
        region, model, op = match["region"], match["model"], match["op"]
        stream = op == "invoke-with-response-stream"
        body = self._parse(raw)
        auth = self.headers.get("authorization") or ""
        signed = SIGV4.match(auth)
        credential = signed["key"] if signed else auth[7:19]
        if self.headers.get("x-amz-security-token"):
            credential += "+session"
        self.sim.record("bedrock", region, self.path, model, stream, body, credential)
        if not auth.startswith("Bearer ") and (signed is None or signed["region"] != region):
            self._aws_error(403, "MissingAuthenticationTokenException" if not auth else "InvalidSignatureException",
                            "Missing Authentication Token" if not auth else
                            "Credential should be scoped to a valid region.")
            return
        if signed is not None and self.sim.expired(signed["key"]):
            self._aws_error(403, "ExpiredTokenException", "The security token included in the request is expired")
            return
        if not self._apply_pre_faults("bedrock", region):
            return
        if body is None:
            self._aws_error(400, "ValidationException", "Malformed input request, please reformat your input.")
            return
        if op == "count-tokens":
            self._bedrock_count(model, body)
            return
        if not VERSION.match(str(body.get("anthropic_version") or "")):
            self._aws_error(400, "ValidationException", "anthropic_version: a version such as bedrock-2023-05-31 "
                                                        "is required")
            return
        if "model" in body:
            self._aws_error(400, "ValidationException", "extraneous key [model] is not permitted")
            return
        self._messages("bedrock", region, model, body, stream=stream, sse=False,
                       model_ok=bool(content.BEDROCK_MODEL.match(model)))

    def _vertex(self, match: re.Match[str], raw: bytes) -> None:
        region, model, op = match["region"], match["model"], match["op"]
        stream = op == "streamRawPredict"
        body = self._parse(raw)
        token = (self.headers.get("authorization") or "")[7:]
        self.sim.record("vertex", region, self.path, model, stream, body, token[:20])
        if not (self.headers.get("authorization") or "").startswith("Bearer "):
            self._send(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                       "message": "Request is missing required authentication credential."}})
            return
        if self.sim.expired(token):
            self._send(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                       "message": "Request had invalid authentication credentials. Expected OAuth 2 "
                                                  "access token; the token has expired."}})
            return
        if match["host_region"] and match["host_region"] != region:
            # Regional endpoints ({region}-aiplatform.googleapis.com) serve their own location only.
            self._send(400, content.anthropic_error(400, f"Location {region} is not served by the "
                                                         f"{match['host_region']} endpoint."))
            return
        if not self._apply_pre_faults("vertex", region):
            return
        if body is None:
            self._send(400, content.anthropic_error(400, "There was an error parsing the body of your request."))
            return
        if not VERSION.match(str(body.get("anthropic_version") or "")):
            self._send(400, content.anthropic_error(400, "anthropic_version: a version such as vertex-2023-10-16 "
                                                         "is required"))
            return
        if model == "count-tokens" and op == "rawPredict":
            self._count("vertex", body)
            return
        self._messages("vertex", region, model, body, stream=stream or bool(body.get("stream")), sse=True,
                       model_ok=bool(content.ANTHROPIC_MODEL.match(model)))

    def _messages(self, provider: str, region: str, model: str, body: dict[str, Any], *, stream: bool, sse: bool,
                  model_ok: bool) -> None:
        aws = provider == "bedrock"
        try:
            content.validate(body, model=model)
        except content.InvalidRequest as exc:
            if aws:
                self._aws_error(exc.status, "ValidationException", exc.message)
            else:
                self._send(exc.status, content.anthropic_error(exc.status, exc.message))
            return
        if not model_ok:
            message = f"model: {model}"
            if aws:
                self._aws_error(404, "ResourceNotFoundException", f"Could not resolve the foundation model {model}")
            else:
                self._send(404, content.anthropic_error(404, message))
            return
        msg_id = f"msg_sim_{uuid.uuid4().hex[:24]}"
        # A mid-stream fault applies to streams only, and is used up by the stream it breaks.
        fault = self.sim.faults.take(provider, region) if stream and self._pending_stream_fault else None
        variant = self.sim.variant(model, body)
        if not stream:
            self._send(200, content.message_json(body, provider=provider, region=region, model=model, msg_id=msg_id,
                                                 variant=variant, cache=self.sim.prompt_cache))
            return
        events = content.stream_events(body, provider=provider, region=region, model=model, msg_id=msg_id,
                                       variant=variant, cache=self.sim.prompt_cache)
        self._stream(provider, events, fault.error_after_events if fault else None)

    def _count(self, provider: str, body: dict[str, Any]) -> None:
        """count_tokens as the Anthropic API and Vertex answer it: the model in the body, {"input_tokens": N}."""
        model = body.get("model")
        try:
            content.validate_count(body)
        except content.InvalidRequest as exc:
            self._send(exc.status, content.anthropic_error(exc.status, exc.message))
            return
        if not isinstance(model, str) or not content.ANTHROPIC_MODEL.match(model):
            self._send(404 if isinstance(model, str) else 400,
                       content.anthropic_error(404 if isinstance(model, str) else 400, f"model: {model}"))
            return
        self._send(200, {"input_tokens": content.input_tokens(body)})

    def _bedrock_count(self, model: str, body: dict[str, Any]) -> None:
        """Bedrock's CountTokens: {"input": {"invokeModel": {"body": <base64 InvokeModel body>}}} -> {"inputTokens"}."""
        import base64
        import binascii

        invoke = (body.get("input") or {}).get("invokeModel") if isinstance(body.get("input"), dict) else None
        try:
            inner = json.loads(base64.b64decode(str((invoke or {})["body"]), validate=True))
        except (KeyError, ValueError, TypeError, binascii.Error):
            self._aws_error(400, "ValidationException", "input.invokeModel.body: a base64-encoded InvokeModel "
                                                        "request body is required")
            return
        if not isinstance(inner, dict) or not VERSION.match(str(inner.get("anthropic_version") or "")):
            self._aws_error(400, "ValidationException", "anthropic_version: a version such as bedrock-2023-05-31 "
                                                        "is required")
            return
        try:
            content.validate_count(inner)
        except content.InvalidRequest as exc:
            self._aws_error(exc.status, "ValidationException", exc.message)
            return
        if not content.BEDROCK_MODEL.match(model):
            self._aws_error(404, "ResourceNotFoundException", f"Could not resolve the foundation model {model}")
            return
        self._send(200, {"inputTokens": content.input_tokens(inner)})

    def _stream(self, provider: str, events: list[dict[str, Any]], error_after: int | None) -> None:
        aws = provider == "bedrock"
        self._start_stream("application/vnd.amazon.eventstream" if aws else "text/event-stream")
        delay = self.sim.chunk_delay_s
        try:
            for index, event in enumerate(events):
                if error_after is not None and index >= error_after:
                    if aws:
                        self._chunk(eventstream.exception_event("serviceUnavailableException",
                                                                "Bedrock is unable to process your request."))
                    else:
                        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                        self._chunk(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
                    break
                if aws:
                    if event["type"] == "ping":
                        continue  # Bedrock does not relay pings
                    self._chunk(eventstream.chunk_event(event))
                else:
                    self._chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                if delay and event["type"] == "content_block_delta":
                    time.sleep(delay)
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- faults --------------------------------------------------------------------------------

    _pending_stream_fault = False

    def _apply_pre_faults(self, provider: str, region: str) -> bool:
        """Apply a fault before any answer. False when the request has been answered (or dropped) already."""
        self._pending_stream_fault = False
        fault = self.sim.faults.peek(provider, region)
        if fault is None:
            return True
        if fault.error_after_events is not None and fault.status is None and not (fault.drop or fault.hang):
            # A mid-stream fault is consumed when the stream is produced.
            if fault.latency_ms:
                time.sleep(fault.latency_ms / 1000)
            self._pending_stream_fault = True
            return True
        fault = self.sim.faults.take(provider, region)
        if fault is None:
            return True
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault.drop:
            self._drop()
            return False
        if fault.hang:
            self.sim.released.wait(HANG_LIMIT_S)
            self._drop()
            return False
        if fault.status is not None:
            self._error(provider, fault.status)
            return False
        return True

    def _error(self, provider: str, status: int) -> None:
        message = content.default_message(status)
        headers = {"retry-after": "1"} if status == 429 else {}
        if provider == "bedrock":
            self._aws_error(status, content.BEDROCK_ERROR_TYPES.get(status, "InternalServerException"), message,
                            headers)
        else:
            self._send(status, content.anthropic_error(status, message), headers)

    def _aws_error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"message": message}, {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/",
                                                  **(headers or {})})

    # --- credential endpoints ------------------------------------------------------------------

    def _sts(self, raw: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        self.sim.record("sts", "", self.path, "", False, None, form.get("ExternalId", ""))
        if form.get("Action") != "AssumeRole" or not form.get("RoleArn"):
            self._send(400, b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>",
                       content_type="text/xml")
            return
        required = self.sim.role_trust.get(form["RoleArn"])
        if required is not None and form.get("ExternalId") != required:
            # What AWS answers when the trust policy's sts:ExternalId condition does not match.
            self._send(403, b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>"
                            b"User is not authorized to perform: sts:AssumeRole</Message></Error></ErrorResponse>",
                       content_type="text/xml")
            return
        access_key = f"ASIASIMULATED{uuid.uuid4().hex[:7].upper()}"
        expires = self.sim.issue_session(access_key, int(form.get("DurationSeconds") or 3600))
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        xml = (
            '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
            f"<AccessKeyId>{access_key}</AccessKeyId>"
            "<SecretAccessKey>simulated-secret</SecretAccessKey><SessionToken>simulated-session-token</SessionToken>"
            f"<Expiration>{expiry}</Expiration></Credentials><AssumedRoleUser>"
            f"<AssumedRoleId>AROASIM:{form.get('RoleSessionName', 'atrium')}</AssumedRoleId>"
            f"<Arn>{form['RoleArn']}</Arn></AssumedRoleUser></AssumeRoleResult>"
            "<ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></AssumeRoleResponse>"
        )
        self._send(200, xml.encode(), content_type="text/xml")

    def _google_token(self) -> None:
        self.sim.record("google", "", self.path, "", False, None)
        token = f"ya29.simulated-{uuid.uuid4().hex[:12]}"
        lifetime = self.sim.issue_token(token)
        self._send(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})


class Simulator:
    """The provider simulator: start it, point the SDK clients' base URLs at it, inject faults."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, chunk_delay_ms: int = 0) -> None:
        self.released = threading.Event()
        self.released.set()
        self.faults = Faults(self.released)
        self.chunk_delay_s = chunk_delay_ms / 1000
        self._asked: dict[str, int] = {}  # how often each conversation was asked (sampling variants)
        self._requests: list[dict[str, Any]] = []
        self._requests_lock = threading.Lock()
        # role ARN -> the ExternalId its trust policy requires (sts:ExternalId); roles not listed trust anyone.
        self.role_trust: dict[str, str] = {}
        # Lifetimes of what /sts/ and /google/token issue: STS grants the DurationSeconds asked for, at most
        # `sts_session_s` when set (AWS's own minimum is 900 s; the simulator issues shorter sessions so tests can
        # see one expire); Google tokens last `google_token_s`. Requests signed with an expired one are refused.
        self.sts_session_s: int | None = None
        self.google_token_s = 3600
        self._expiry: dict[str, float] = {}  # session access key id / access token -> when it expires
        self.prompt_cache = features.PromptCache()  # cache_control prefixes written and read (prompt caching)
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    def variant(self, model: str, body: dict[str, Any]) -> int:
        """0, or for a sampling request (temperature > 0) how often this exact conversation was asked before."""
        key = hashlib.sha256(json.dumps([model, body.get("system"), body.get("messages")], sort_keys=True,
                                        default=str).encode()).hexdigest()
        with self._requests_lock:
            if len(self._asked) > 10_000:
                self._asked.clear()
            seen = self._asked.get(key, 0)
            self._asked[key] = seen + 1
        temperature = body.get("temperature")
        return seen if isinstance(temperature, int | float) and temperature > 0 else 0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="provider-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def issue_session(self, access_key: str, duration_s: int) -> float:
        """Record an STS session's expiry (epoch seconds) and return it."""
        if self.sts_session_s is not None:
            duration_s = min(duration_s, self.sts_session_s)
        expires = time.time() + duration_s
        with self._requests_lock:
            self._expiry[access_key] = expires
        return expires

    def issue_token(self, token: str) -> int:
        """Record a Google access token's expiry; its lifetime in seconds."""
        with self._requests_lock:
            self._expiry[token] = time.time() + self.google_token_s
        return self.google_token_s

    def expired(self, credential: str) -> bool:
        """Whether `credential` is a session key or token this simulator issued and that has expired."""
        with self._requests_lock:
            expires = self._expiry.get(credential)
        return expires is not None and time.time() >= expires

    def trust_role(self, role_arn: str, external_id: str) -> None:
        """Give `role_arn` a trust policy that requires `external_id` on AssumeRole, as AWS would enforce it."""
        self.role_trust[role_arn] = external_id

    def record(self, provider: str, region: str, path: str, model: Any, stream: bool,
               body: dict[str, Any] | None, credential: str = "", betas: list[str] | None = None) -> None:
        """Log a request; `credential` identifies which credentials signed it (key id, token prefix)."""
        in_body = (body or {}).get("anthropic_beta")
        if isinstance(body, dict) and isinstance((body.get("input") or {}), dict):  # Bedrock CountTokens
            in_body = in_body or _count_invoke_betas(body)
        entry = {"provider": provider, "region": region, "path": path, "model": model, "stream": stream,
                 "max_tokens": (body or {}).get("max_tokens"), "time": time.time(), "credential": credential,
                 "system": (body or {}).get("system"), "betas": list(in_body or betas or []),
                 "beta_in_body": in_body is not None}
        with self._requests_lock:
            self._requests.append(entry)
            if len(self._requests) > 50_000:
                del self._requests[:10_000]

    def requests(self, provider: str | None = None, region: str | None = None) -> list[dict[str, Any]]:
        with self._requests_lock:
            return [dict(r) for r in self._requests
                    if (provider is None or r["provider"] == provider) and (region is None or r["region"] == region)]

    def reset_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()


def _count_invoke_betas(body: dict[str, Any]) -> list[str] | None:
    """The anthropic_beta inside a Bedrock CountTokens request's base64 InvokeModel body."""
    import base64
    import binascii

    try:
        inner = json.loads(base64.b64decode(str(body["input"]["invokeModel"]["body"])))
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    betas = inner.get("anthropic_beta") if isinstance(inner, dict) else None
    return list(betas) if isinstance(betas, list) else None


def iter_lines(sim: Simulator) -> Iterator[str]:  # pragma: no cover - convenience for the CLI banner
    yield f"provider simulator listening on {sim.url}"
    yield f"  Anthropic  {sim.url}/anthropic"
    yield f"  Bedrock    {sim.url}/bedrock/{{region}}"
    yield f"  Vertex     {sim.url}/vertex/v1"
    fault = '{"provider": "bedrock", "region": "us-east-1", "status": 503}'
    yield f"  faults     curl -X POST {sim.url}/_sim/faults -d '{fault}'"
