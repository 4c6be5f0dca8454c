"""HTTP/1.1 JSON RPC of a node, served by aiohttp's low-level server.

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
- `GET /balance/<HEX>`  a sender's balance in the lanes' ledger after the tracker height
                        (`balance`, `funded`: it has a genesis allocation, `height`);
                        404 when the chain has no `[ledger]`.
- `GET /executions?from=A&to=B[&data=1]`  payloads the decode tracker decided at heights
                        A..B in execution order (at most 20,000; `next` says where to go on).
- `GET /lanes[?at=H]`   lane and tracker state; with `at`, the stored execution-order hash
                        after height H.
- `GET /stats`          mergeable latency histograms and counters (used by `sedna testnet`).
- `GET /metrics`        Prometheus text format.
- `GET /health`         200 "ok".
- `POST /admin/isolate` `{"isolated": bool}`: transport isolation. Admin endpoints (every
                        path under `/admin/`) need `network.admin_rpc = true` and the header
                        `Authorization: Bearer <token>` with the token of
                        `network.admin_token_file` (401 without it, 403 when disabled).

Limits (docs/operations.md, "RPC under abuse"): every bad input is a 4xx, never a 500;
a request's headers must arrive within `header_timeout_s` of the connection's start or of
the previous response (else the connection is closed); a body within `body_timeout_s`;
a body is at most `max_body_bytes`, and all bodies being received at once at most
`max_inflight_body_bytes` (the body budget: a request that does not fit is answered 503
before its body is read); at most `max_connections` connections, `max_client_connections`
from one address. A new connection over a cap closes the longest-idle connection in that
scope (one not inside a request) or, if none is idle, is itself closed. Each refusal is
counted in `sedna_rpc_refused_total{reason}`; a client refused or dropped is logged at most
once per minute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from node.logs import WarningLimiter

if TYPE_CHECKING:  # pragma: no cover
    from node.metrics import NodeMetrics

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_LINE_BYTES = 8190  # one header line (aiohttp's limit); at most MAX_HEADERS of them
MAX_HEADERS = 64
MAX_TXS_PER_REQUEST = 100_000
MAX_BUNDLES_PER_REQUEST = 4096
MAX_BUNDLE_REQUEST_BYTES = 8 * 1024 * 1024
MAX_QUERY_INTEGER = 2**63 - 1  # SQLite's INTEGER
CLIENT_LOG_INTERVAL_S = 60.0

# Refusal reason (sedna_rpc_refused_total) of each status a request can be refused with.
_STATUS_REASON = {
    400: "bad_request",
    401: "unauthorized",
    403: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    411: "bad_request",
    413: "body_too_large",
    500: "internal_error",
    501: "bad_request",
    503: "body_budget",
}


class RpcBackend(Protocol):
    """What the RPC server needs from the node."""

    def rpc_submit(self, txs: list[bytes]) -> dict[str, Any]: ...
    def rpc_status(self) -> dict[str, Any]: ...
    def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]: ...
    def rpc_payload(self, ident: bytes) -> dict[str, Any] | None: ...

    def rpc_balance(self, sender: bytes) -> dict[str, Any] | None: ...
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
    text = values[0]
    # Rule: query integers are decimal, non-negative and fit SQLite's INTEGER.
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise HttpError(
            400, f"query parameter {name!r} is not an integer in 0..{MAX_QUERY_INTEGER}"
        )
    value = int(text)
    if value > MAX_QUERY_INTEGER:
        raise HttpError(
            400, f"query parameter {name!r} is not an integer in 0..{MAX_QUERY_INTEGER}"
        )
    return value


def _json_body(body: bytes) -> Any:
    """Decode a JSON body; malformed or too deeply nested input is a 400."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "body is not valid JSON (or nested too deeply)") from None


def load_admin_token(path: Path) -> str:
    """Read an admin token file (hex, at least 32 characters). Raises ValueError."""
    token = path.read_text().strip()
    if len(token) < 32 or not all(c in "0123456789abcdef" for c in token):
        raise ValueError(f"{path}: expected at least 32 lower-case hex characters")
    return token


class BodyBudget:
    """Bytes of request bodies being received at once, across all connections (bounded)."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.in_flight_bytes = 0

    def reserve(self, size_bytes: int) -> bool:
        if self.in_flight_bytes + size_bytes > self.limit_bytes:
            return False
        self.in_flight_bytes += size_bytes
        return True

    def release(self, size_bytes: int) -> None:
        self.in_flight_bytes -= size_bytes
        assert self.in_flight_bytes >= 0


@dataclass(eq=False)
class _Connection:
    client: str
    transport: Any
    last_active_s: float
    busy: int = 0  # requests of this connection inside a handler right now
    deadline: asyncio.TimerHandle | None = field(default=None)  # for the next request's headers


class _GatedServer(web.Server):
    """aiohttp's low-level server plus connection caps (global and per client address).

    aiohttp calls `connection_made` / `connection_lost` for every connection its protocol
    accepts; over a cap, the longest-idle connection of that scope is closed to make room,
    or the new one is closed when every connection is inside a request.
    """

    def __init__(self, owner: RpcServer, **kwargs: Any):
        super().__init__(owner._handle, **kwargs)
        self.owner = owner
        self.open: dict[RequestHandler, _Connection] = {}
        self.by_client: dict[str, set[RequestHandler]] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        owner = self.owner
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        mine = self.by_client.get(client, set())
        # Rule: bounded connections, per client address and in total; idle ones yield.
        if len(mine) >= owner.max_client_connections:
            scope, reason = mine, "too_many_client_connections"
        elif len(self.open) >= owner.max_connections:
            scope, reason = set(self.open), "too_many_connections"
        else:
            scope, reason = set(), ""
        if reason and not self._evict(scope, reason, client):
            owner.refuse_connection(transport, reason, client)
            return
        conn = _Connection(client, transport, time.monotonic())
        self.open[handler] = conn
        self.by_client.setdefault(client, set()).add(handler)
        self._arm_header_deadline(handler, conn)
        owner.gauge_connections(len(self.open))

    def _arm_header_deadline(self, handler: RequestHandler, conn: _Connection) -> None:
        """Rule: a request's headers arrive within header_timeout_s of the connection's
        start or of the previous response (slow or silent clients do not hold slots)."""
        loop = asyncio.get_running_loop()
        conn.deadline = loop.call_later(self.owner.header_timeout_s, self._header_deadline, handler)

    def _header_deadline(self, handler: RequestHandler) -> None:
        conn = self.open.get(handler)
        if conn is None or conn.busy:
            return
        self._forget(handler)
        self.owner.drop_client(conn.client, "header_timeout")
        conn.transport.close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._forget(handler)

    def _forget(self, handler: RequestHandler) -> _Connection | None:
        conn = self.open.pop(handler, None)
        if conn is not None:
            if conn.deadline is not None:
                conn.deadline.cancel()
            mine = self.by_client.get(conn.client)
            if mine is not None:
                mine.discard(handler)
                if not mine:
                    del self.by_client[conn.client]
        self.owner.gauge_connections(len(self.open))
        return conn

    def _evict(self, scope: set[RequestHandler], reason: str, newcomer: str) -> bool:
        """Close the longest-idle connection in `scope`; False when all are busy."""
        idle = [(self.open[h].last_active_s, id(h), h) for h in scope if not self.open[h].busy]
        if not idle:
            return False
        _, _, victim = min(idle)
        conn = self._forget(victim)
        assert conn is not None
        self.owner.drop_client(conn.client, reason, evicted_for=newcomer)
        conn.transport.close()
        return True

    def begin(self, handler: RequestHandler | None) -> None:
        conn = self.open.get(handler) if handler is not None else None  # type: ignore[arg-type]
        if conn is not None:
            conn.busy += 1
            if conn.deadline is not None:
                conn.deadline.cancel()
                conn.deadline = None

    def end(self, handler: RequestHandler | None) -> None:
        conn = self.open.get(handler) if handler is not None else None  # type: ignore[arg-type]
        if conn is not None and handler is not None:
            conn.busy -= 1
            conn.last_active_s = time.monotonic()
            if not conn.busy:
                self._arm_header_deadline(handler, conn)


class RpcServer:
    def __init__(
        self,
        backend: RpcBackend,
        host: str,
        port: int,
        *,
        admin_enabled: bool = False,
        admin_token_file: Path | None = None,
        metrics: NodeMetrics | None = None,
        max_body_bytes: int = 32 * 1024 * 1024,
        max_bundle_request_bytes: int = MAX_BUNDLE_REQUEST_BYTES,
        max_inflight_body_bytes: int = 64 * 1024 * 1024,
        max_connections: int = 512,
        max_client_connections: int = 128,
        header_timeout_s: float = 10.0,
        body_timeout_s: float = 30.0,
    ):
        if max_inflight_body_bytes < max_body_bytes:
            raise ValueError("max_inflight_body_bytes must hold at least one largest body")
        self.backend = backend
        self.host = host
        self.port = port
        self.admin_enabled = admin_enabled
        self.admin_token_file = admin_token_file
        self._admin_token: str | None = None
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_bundle_request_bytes = max_bundle_request_bytes
        self.budget = BodyBudget(max_inflight_body_bytes)
        self.max_connections = max_connections
        self.max_client_connections = max_client_connections
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self._warnings = WarningLimiter(CLIENT_LOG_INTERVAL_S)
        self._server: _GatedServer | None = None
        self._listener: asyncio.AbstractServer | None = None
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
            ("GET", "/metrics"): self._metrics,
            ("GET", "/health"): lambda r: Response(200, b"ok\n", "text/plain"),
            ("POST", "/admin/isolate"): self._isolate,
        }

    async def start(self) -> None:
        if self.admin_enabled:
            if self.admin_token_file is None:
                raise ValueError("the admin RPC needs an admin token file")
            self._admin_token = load_admin_token(self.admin_token_file)
        self._server = _GatedServer(
            self,
            handler_cancellation=True,
            # aiohttp's own idle timer, a backstop behind the header deadline above
            keepalive_timeout=2 * self.header_timeout_s,
            max_line_size=MAX_HEADER_LINE_BYTES,
            max_field_size=MAX_HEADER_LINE_BYTES,
            max_headers=MAX_HEADERS,
            access_log=None,
            auto_decompress=False,  # a compressed body is bytes like any other (no zip bombs)
            logger=_ProtocolLog(self._warnings).logger,
        )
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(self._server, self.host, self.port)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"network.rpc_port: cannot listen on {self.host}:{self.port}: {exc.strerror}",
            ) from None
        if self.port == 0:
            self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown(timeout=2.0)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.wait_closed(), 2.0)

    # ------------------------------------------------------------------ accounting

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rpc_refused.inc(reason=reason)

    def gauge_connections(self, count: int) -> None:
        if self.metrics is not None:
            self.metrics.rpc_connections.set(count)

    def refuse_connection(self, transport: asyncio.Transport, reason: str, client: str) -> None:
        self.drop_client(client, reason)
        transport.close()

    def drop_client(self, client: str, reason: str, **fields: Any) -> None:
        """Count a refused or evicted connection; log it at most once a minute per client."""
        self._count(reason)
        self._warnings.warn("rpc_client_dropped", client, client=client, reason=reason, **fields)

    def _gauge_budget(self) -> None:
        if self.metrics is not None:
            self.metrics.rpc_body_bytes.set(self.budget.in_flight_bytes)

    # ------------------------------------------------------------------ request handling

    async def _handle(self, http: web.BaseRequest) -> web.StreamResponse:
        server = self._server
        assert server is not None
        protocol = http.protocol
        server.begin(protocol)
        try:
            response, close = await self._respond(http)
        finally:
            server.end(protocol)
        self.requests_served += 1
        out = web.Response(
            status=response.status,
            body=response.body,
            headers={"Content-Type": response.content_type},
        )
        if close:
            out.force_close()
        return out

    async def _respond(self, http: web.BaseRequest) -> tuple[Response, bool]:
        """The response and whether to close the connection after it."""
        reserved = 0
        try:
            length = self._body_length(http)
            if length:
                # Rule: bodies being received at once stay within the body budget.
                if not self.budget.reserve(length):
                    self.drop_client(_client(http), "body_budget", body_bytes=length)
                    return json_response(
                        {"error": "server busy: too many request bodies in flight; retry later"},
                        503,
                    ), True
                reserved = length
                self._gauge_budget()
                try:
                    async with asyncio.timeout(self.body_timeout_s):
                        body = await http.content.readexactly(length)
                except TimeoutError:
                    raise HttpError(
                        408, f"body not received within {self.body_timeout_s:g} s"
                    ) from None
                except asyncio.IncompleteReadError:
                    raise HttpError(400, "connection closed inside the body") from None
            else:
                body = b""
            request = Request(
                method=http.method,
                path=http.path,
                query={k: http.query.getall(k) for k in set(http.query)},
                headers={k.lower(): v for k, v in http.headers.items()},
                body=body,
            )
            return await self._dispatch(request), False
        except HttpError as exc:
            self.errors += 1
            self._count(_STATUS_REASON.get(exc.status, "bad_request"))
            return json_response({"error": exc.message}, exc.status), exc.status in (
                408,
                411,
                413,
                501,
            )
        except Exception as exc:  # a handler bug must not kill the server
            self.errors += 1
            self._count("internal_error")
            self._warnings.warn(
                "rpc_internal_error",
                http.path,
                path=http.path,
                error=f"{type(exc).__name__}: {exc}",
            )
            return json_response({"error": "internal error"}, 500), True
        finally:
            if reserved:
                self.budget.release(reserved)
                self._gauge_budget()

    def _body_length(self, http: web.BaseRequest) -> int:
        """The declared body size, checked against the limits before any byte is read."""
        if "Transfer-Encoding" in http.headers:
            raise HttpError(411, "chunked bodies are not supported; send Content-Length")
        length = http.content_length
        if length is None:
            if http.method == "POST":
                raise HttpError(411, "POST needs a Content-Length")
            return 0
        # Rule: request bodies are bounded (bundle requests more tightly).
        limit = self.max_body_bytes
        if http.method == "POST" and http.path == "/bundle":
            limit = min(limit, self.max_bundle_request_bytes)
            if length > limit:
                self.backend.rpc_bundle_refused("oversized")
        if length > limit:
            raise HttpError(413, f"body of {length} bytes exceeds {limit}")
        return length

    async def _dispatch(self, request: Request) -> Response:
        if request.path.startswith("/admin/"):
            self._authorize(request)
        handler = self._routes.get((request.method, request.path))
        if handler is None and request.method == "GET" and request.path.startswith("/payload/"):
            return self._payload(request)
        if handler is None and request.method == "GET" and request.path.startswith("/balance/"):
            return self._balance(request)
        if handler is None:
            if any(path == request.path for _, path in self._routes):
                raise HttpError(405, f"{request.method} not allowed on {request.path}")
            raise HttpError(404, f"no route {request.path}")
        result = handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, Response)
        return result

    def _authorize(self, request: Request) -> None:
        """Rule: admin endpoints need the admin RPC enabled and its bearer token."""
        if not self.admin_enabled or self._admin_token is None:
            raise HttpError(403, "admin RPC is disabled (network.admin_rpc = false)")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self._admin_token.encode()
        ):
            raise HttpError(401, "admin endpoints need 'Authorization: Bearer <admin token>'")

    # ------------------------------------------------------------------ handlers

    def _metrics(self, request: Request) -> Response:
        from node.metrics import CONTENT_TYPE

        return Response(200, self.backend.rpc_metrics().encode(), CONTENT_TYPE)

    def _submit(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json")
        with_ids = False
        if content_type.startswith("application/octet-stream"):
            txs = parse_binary_txs(request.body)
        elif content_type.startswith("application/json"):
            data = _json_body(request.body)
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
            raise HttpError(400, f"unsupported Content-Type {content_type[:100]!r}")
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
        last = _int_param(request.query, "to", min(first + 99, MAX_QUERY_INTEGER))
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

    def _balance(self, request: Request) -> Response:
        sender = _parse_hex(request.path.removeprefix("/balance/"), "sender")
        if len(sender) != 32:
            raise HttpError(400, "sender must be a 32-byte public key (64 hex digits)")
        state = self.backend.rpc_balance(sender)
        if state is None:
            raise HttpError(404, "this chain has no ledger (no [ledger] in the node config)")
        return json_response(state)

    def _bundle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json")
        if content_type.startswith("application/octet-stream"):
            records = parse_binary_txs(request.body, MAX_BUNDLES_PER_REQUEST)
        elif content_type.startswith("application/json"):
            data = _json_body(request.body)
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
            raise HttpError(400, f"unsupported Content-Type {content_type[:100]!r}")
        if not records:
            raise HttpError(400, "no bundles in the request")
        result = self.backend.rpc_bundles(records)
        return json_response(result, 200 if result.get("accepted", 0) else 400)

    def _executions(self, request: Request) -> Response:
        first = _int_param(request.query, "from", 1)
        last = _int_param(request.query, "to", min(first + 999, MAX_QUERY_INTEGER))
        if last < first:
            raise HttpError(400, "'to' is below 'from'")
        with_data = request.query.get("data", ["0"])[0] in ("1", "true")
        return json_response(self.backend.rpc_executions(first, last, with_data))

    def _lanes(self, request: Request) -> Response:
        at = request.query.get("at")
        height = None if not at else _int_param(request.query, "at")
        return json_response(self.backend.rpc_lanes(height))

    def _isolate(self, request: Request) -> Response:
        data = _json_body(request.body)
        if not isinstance(data, dict) or not isinstance(data.get("isolated"), bool):
            raise HttpError(400, 'expected {"isolated": true|false}')
        self.backend.rpc_set_isolated(data["isolated"])
        return json_response({"isolated": data["isolated"]})


class _ProtocolLog(logging.Handler):
    """Where aiohttp's protocol reports malformed requests and dropped connections: one
    warning line per client a minute (no traceback), instead of a traceback each time."""

    def __init__(self, warnings: WarningLimiter):
        super().__init__(logging.WARNING)
        self.warnings = warnings
        self.logger = logging.Logger("sedna.rpc.http", logging.WARNING)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        client = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        error = record.exc_info[1] if record.exc_info else None
        detail = str(error).splitlines()[0][:200] if error is not None else record.getMessage()
        self.warnings.warn("rpc_bad_http", client, client=client, error=detail)


def _client(http: web.BaseRequest) -> str:
    return http.remote or "?"


# --------------------------------------------------------------------------- client


class HttpClient:
    """Minimal keep-alive HTTP/1.1 client for the RPC (used by the launcher and loadgen)."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0, token: str | None = None):
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""  # admin endpoints
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
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self._auth}"
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
