"""HTTP/1.1 JSON RPC on asyncio streams (no framework).

Endpoints
- `POST /tx`            submit txs. JSON `{"tx": HEX}` or `{"txs": [HEX, ...]}`, or
                        `application/octet-stream`: records of 4-byte big-endian length + tx.
                        200 with counts (`accepted`, `duplicate`, `already_final`, `too_large`,
                        `full`); JSON submissions also get the accepted `txids`. 503 when
                        nothing was accepted because the mempool is full, 409 when every tx
                        is already finalized, 400 for bad input.
- `GET /status`         height, round, peers, mempool, rates.
- `GET /blocks?from=A&to=B[&txids=1]`  finalized blocks A..B (at most 1000 per call).
- `POST /bundle`        Sedna bundles (lane entry + signed ticket) for this node's lane.
                        `application/octet-stream`: records of 4-byte big-endian length +
                        msgpack `LaneEntry` (the same framing as /tx); or JSON
                        `{"bundle": BASE64}` / `{"bundles": [BASE64, ...]}`. 200 with
                        `accepted`, `rejected` (reason -> count), per-bundle `results`
                        (null or the reason) and the lane's `open_slot` when at least one
                        bundle was accepted, 400 (same body) when none was; bodies above
                        MAX_BUNDLE_REQUEST_BYTES are refused with 413 and counted as
                        `oversized`.
- `GET /payload/<HEX>`  state of a tx id or a Sedna payload id (submitted / pending with
                        finalized bundles / decoded / rejected / expired, height, position).
- `GET /executions?from=A&to=B[&data=1]`  payloads the decode tracker decided at heights
                        A..B in execution order (at most 20,000; `next` says where to go on).
- `GET /lanes[?at=H]`   lane and tracker state; with `at`, the stored execution-order hash
                        after height H.
- `GET /stats`          mergeable latency histograms and counters (used by `sedna testnet`).
- `GET /metrics`        Prometheus text format.
- `GET /health`         200 "ok".
- `POST /admin/isolate` `{"isolated": bool}`: transport isolation (only with `admin_rpc`).

Limits: header block <= 16 KiB, body <= `max_body_bytes`, at most `max_connections`
concurrent connections, idle connections closed after `idle_timeout_s`. Requests on one
connection are served in order (HTTP/1.1 keep-alive; no pipelining guarantees beyond that).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

MAX_HEADER_BYTES = 16 * 1024
MAX_TXS_PER_REQUEST = 100_000
MAX_BUNDLES_PER_REQUEST = 4096
MAX_BUNDLE_REQUEST_BYTES = 8 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class RpcBackend(Protocol):
    """What the RPC server needs from the node."""

    def rpc_submit(self, txs: list[bytes]) -> dict[str, Any]: ...
    def rpc_status(self) -> dict[str, Any]: ...
    def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]: ...
    def rpc_payload(self, ident: bytes) -> dict[str, Any] | None: ...
    def rpc_bundles(self, records: list[bytes]) -> dict[str, Any]: ...
    def rpc_bundle_refused(self, reason: str) -> None: ...
    def rpc_executions(self, first: int, last: int, with_data: bool) -> dict[str, Any]: ...
    def rpc_lanes(self, at_height: int | None) -> dict[str, Any]: ...
    def rpc_stats(self) -> dict[str, Any]: ...
    def rpc_metrics(self) -> str: ...
    def rpc_set_isolated(self, isolated: bool) -> None: ...


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def parse_binary_txs(body: bytes, max_txs: int = MAX_TXS_PER_REQUEST) -> list[bytes]:
    """Split length-prefixed tx records. Raises HttpError(400) on a malformed body."""
    txs: list[bytes] = []
    offset = 0
    view = memoryview(body)
    while offset < len(body):
        # Rule: every record has a complete 4-byte length and that many bytes.
        if offset + 4 > len(body):
            raise HttpError(400, "truncated length prefix")
        (length,) = struct.unpack_from(">I", body, offset)
        offset += 4
        if length == 0 or offset + length > len(body):
            raise HttpError(400, f"bad tx record length {length} at offset {offset - 4}")
        if len(txs) >= max_txs:
            raise HttpError(400, f"more than {max_txs} txs in one request")
        txs.append(bytes(view[offset : offset + length]))
        offset += length
    return txs


def encode_binary_txs(txs: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(tx)) + tx for tx in txs)


def _parse_hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise HttpError(400, f"{what} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise HttpError(400, f"{what} is not valid hex") from None


def _parse_base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise HttpError(400, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise HttpError(400, f"{what} is not valid base64") from None


def _int_param(query: dict[str, list[str]], name: str, default: int | None = None) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise HttpError(400, f"missing query parameter {name!r}")
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise HttpError(400, f"query parameter {name!r} is not an integer") from None
    if value < 0:
        raise HttpError(400, f"query parameter {name!r} must be >= 0")
    return value


class RpcServer:
    def __init__(
        self,
        backend: RpcBackend,
        host: str,
        port: int,
        *,
        admin_enabled: bool = False,
        max_body_bytes: int = 32 * 1024 * 1024,
        max_bundle_request_bytes: int = MAX_BUNDLE_REQUEST_BYTES,
        max_connections: int = 256,
        idle_timeout_s: float = 60.0,
    ):
        self.backend = backend
        self.host = host
        self.port = port
        self.admin_enabled = admin_enabled
        self.max_body_bytes = max_body_bytes
        self.max_bundle_request_bytes = max_bundle_request_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.requests_served = 0
        self.errors = 0
        self._routes: dict[tuple[str, str], Callable[[Request], Awaitable[Response] | Response]] = {
            ("POST", "/tx"): self._submit,
            ("POST", "/bundle"): self._bundle,
            ("GET", "/executions"): self._executions,
            ("GET", "/lanes"): self._lanes,
            ("GET", "/status"): lambda r: json_response(self.backend.rpc_status()),
            ("GET", "/blocks"): self._blocks,
            ("GET", "/stats"): lambda r: json_response(self.backend.rpc_stats()),
            ("GET", "/metrics"): lambda r: Response(
                200, self.backend.rpc_metrics().encode(), "text/plain; version=0.0.4"
            ),
            ("GET", "/health"): lambda r: Response(200, b"ok\n", "text/plain"),
            ("POST", "/admin/isolate"): self._isolate,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        # Abort the sockets rather than cancel the handlers: a handler then ends on its own
        # read error (asyncio 3.11 logs cancelled stream-server handlers as errors).
        for writer in list(self._connections.values()):
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=2.0)

    # ------------------------------------------------------------------ connection handling

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections:
            # Bound: refuse connections beyond the cap.
            writer.close()
            return
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await asyncio.wait_for(
                    reader.readuntil(b"\r\n\r\n"), timeout=self.idle_timeout_s
                )
            except asyncio.LimitOverrunError:
                await self._write(writer, json_response({"error": "headers too large"}, 431), False)
                return
            except asyncio.IncompleteReadError:
                return
            keep_alive = True
            try:
                request, keep_alive = await self._read_request(head, reader)
                response = await self._dispatch(request)
            except HttpError as exc:
                self.errors += 1
                response = json_response({"error": exc.message}, exc.status)
                if exc.status in (411, 413, 431, 501):
                    keep_alive = False
            except Exception as exc:  # a handler bug must not kill the server
                self.errors += 1
                response = json_response({"error": f"internal error: {exc}"}, 500)
            self.requests_served += 1
            await self._write(writer, response, keep_alive)
            if not keep_alive:
                return

    async def _read_request(
        self, head: bytes, reader: asyncio.StreamReader
    ) -> tuple[Request, bool]:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise HttpError(400, "undecodable header") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise HttpError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if "transfer-encoding" in headers:
            raise HttpError(501, "chunked bodies are not supported; send Content-Length")
        body = b""
        length_text = headers.get("content-length")
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError:
                raise HttpError(400, "Content-Length is not an integer") from None
            if length < 0:
                raise HttpError(400, "negative Content-Length")
            # Rule: request bodies are bounded (bundle requests more tightly).
            limit = self.max_body_bytes
            if method == "POST" and urlsplit(target).path == "/bundle":
                limit = min(limit, self.max_bundle_request_bytes)
                if length > limit:
                    self.backend.rpc_bundle_refused("oversized")
            if length > limit:
                raise HttpError(413, f"body of {length} bytes exceeds {limit}")
            body = await asyncio.wait_for(reader.readexactly(length), timeout=self.idle_timeout_s)
        elif method == "POST":
            raise HttpError(411, "POST needs a Content-Length")
        split = urlsplit(target)
        request = Request(
            method=method,
            path=split.path,
            query=parse_qs(split.query),
            headers=headers,
            body=body,
        )
        return request, keep_alive

    async def _dispatch(self, request: Request) -> Response:
        handler = self._routes.get((request.method, request.path))
        if handler is None and request.method == "GET" and request.path.startswith("/payload/"):
            return self._payload(request)
        if handler is None:
            if any(path == request.path for _, path in self._routes):
                raise HttpError(405, f"{request.method} not allowed on {request.path}")
            raise HttpError(404, f"no route {request.path}")
        result = handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Response)
        return result

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
        reason = _REASONS.get(response.status, "Unknown")
        head = (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode()
        writer.write(head + response.body)
        await writer.drain()

    # ------------------------------------------------------------------ handlers

    def _submit(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json")
        with_ids = False
        if content_type.startswith("application/octet-stream"):
            txs = parse_binary_txs(request.body)
        elif content_type.startswith("application/json"):
            try:
                data = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                raise HttpError(400, "body is not valid JSON") from None
            if not isinstance(data, dict):
                raise HttpError(400, 'expected {"tx": HEX} or {"txs": [HEX, ...]}')
            if "tx" in data:
                txs = [_parse_hex(data["tx"], "tx")]
            elif "txs" in data and isinstance(data["txs"], list):
                if len(data["txs"]) > MAX_TXS_PER_REQUEST:
                    raise HttpError(400, f"more than {MAX_TXS_PER_REQUEST} txs in one request")
                txs = [_parse_hex(v, "txs[]") for v in data["txs"]]
            else:
                raise HttpError(400, 'expected {"tx": HEX} or {"txs": [HEX, ...]}')
            with_ids = True
        else:
            raise HttpError(400, f"unsupported Content-Type {content_type!r}")
        if not txs:
            raise HttpError(400, "no transactions in the request")
        result = self.backend.rpc_submit(txs)
        if not with_ids:
            result = {k: v for k, v in result.items() if k != "txids"}
        status = 200
        if result.get("accepted", 0) == 0 and result.get("duplicate", 0) == 0:
            if result.get("full", 0):
                status = 503
            elif result.get("too_large", 0):
                status = 400
            elif result.get("already_final", 0):
                status = 409  # every tx is already in the finalized chain (TX-ONCE)
        return json_response(result, status)

    def _blocks(self, request: Request) -> Response:
        first = _int_param(request.query, "from", 1)
        last = _int_param(request.query, "to", first + 99)
        if last < first:
            raise HttpError(400, "'to' is below 'from'")
        with_txids = request.query.get("txids", ["0"])[0] in ("1", "true")
        return json_response({"blocks": self.backend.rpc_blocks(first, last, with_txids)})

    def _payload(self, request: Request) -> Response:
        ident = _parse_hex(request.path.removeprefix("/payload/"), "payload id")
        if len(ident) != 32:
            raise HttpError(400, "payload id must be 32 bytes (64 hex digits)")
        state = self.backend.rpc_payload(ident)
        if state is None:
            raise HttpError(404, "unknown payload or tx id")
        return json_response(state)

    def _bundle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json")
        if content_type.startswith("application/octet-stream"):
            records = parse_binary_txs(request.body, MAX_BUNDLES_PER_REQUEST)
        elif content_type.startswith("application/json"):
            try:
                data = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                raise HttpError(400, "body is not valid JSON") from None
            if isinstance(data, dict) and "bundle" in data:
                values = [data["bundle"]]
            elif isinstance(data, dict) and isinstance(data.get("bundles"), list):
                values = data["bundles"]
            else:
                raise HttpError(400, 'expected {"bundle": BASE64} or {"bundles": [BASE64, ...]}')
            if len(values) > MAX_BUNDLES_PER_REQUEST:
                raise HttpError(400, f"more than {MAX_BUNDLES_PER_REQUEST} bundles in one request")
            records = [_parse_base64(v, "bundle") for v in values]
        else:
            raise HttpError(400, f"unsupported Content-Type {content_type!r}")
        if not records:
            raise HttpError(400, "no bundles in the request")
        result = self.backend.rpc_bundles(records)
        return json_response(result, 200 if result.get("accepted", 0) else 400)

    def _executions(self, request: Request) -> Response:
        first = _int_param(request.query, "from", 1)
        last = _int_param(request.query, "to", first + 999)
        if last < first:
            raise HttpError(400, "'to' is below 'from'")
        with_data = request.query.get("data", ["0"])[0] in ("1", "true")
        return json_response(self.backend.rpc_executions(first, last, with_data))

    def _lanes(self, request: Request) -> Response:
        at = _int_param(request.query, "at", -1)
        return json_response(self.backend.rpc_lanes(None if at < 0 else at))

    def _isolate(self, request: Request) -> Response:
        if not self.admin_enabled:
            raise HttpError(403, "admin RPC is disabled (network.admin_rpc = false)")
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "body is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("isolated"), bool):
            raise HttpError(400, 'expected {"isolated": true|false}')
        self.backend.rpc_set_isolated(data["isolated"])
        return json_response({"isolated": data["isolated"]})


# --------------------------------------------------------------------------- client


class HttpClient:
    """Minimal keep-alive HTTP/1.1 client for the RPC (used by the launcher and loadgen)."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0):
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """One request; reconnects once if a kept-alive connection went stale."""
        for attempt in range(2):
            try:
                return await asyncio.wait_for(
                    self._request_once(method, path, body, content_type), self.timeout_s
                )
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                await self.close()
                if attempt == 1:
                    raise
            except TimeoutError:
                await self.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(
        self, method: str, path: str, body: bytes, content_type: str
    ) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._writer.write(head + body)
        await self._writer.drain()
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        payload = await self._reader.readexactly(length)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def get_json(self, path: str) -> Any:
        status, payload = await self.request("GET", path)
        if status != 200:
            raise HttpError(status, payload.decode(errors="replace"))
        return json.loads(payload)

    async def post_json(self, path: str, data: Any) -> tuple[int, Any]:
        status, payload = await self.request("POST", path, json.dumps(data).encode())
        return status, json.loads(payload) if payload else None
