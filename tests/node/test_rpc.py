"""The HTTP/JSON RPC server on real sockets: routes, keep-alive, limits and bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from node.metrics import NodeMetrics
from node.rpc import HttpClient, HttpError, RpcServer, encode_binary_txs, parse_binary_txs

TOKEN = "ab" * 32


class Backend:
    """A minimal node stand-in that records what the server hands it."""

    def __init__(self) -> None:
        self.submitted: list[bytes] = []
        self.isolated: bool | None = None
        self.full = False

    def rpc_submit(self, txs: list[bytes]) -> dict[str, Any]:
        if self.full:
            return {"accepted": 0, "duplicate": 0, "full": len(txs), "txids": []}
        self.submitted.extend(txs)
        return {"accepted": len(txs), "duplicate": 0, "full": 0, "txids": ["ab"] * len(txs)}

    def rpc_status(self) -> dict[str, Any]:
        return {"height": 3}

    def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]:
        return [{"height": h, "txids": with_txids} for h in range(first, last + 1)]

    def rpc_payload(self, ident: bytes) -> dict[str, Any] | None:
        return {"id": ident.hex()} if ident[0] == 1 else None

    def rpc_stats(self) -> dict[str, Any]:
        return {"ok": True}

    def rpc_metrics(self) -> str:
        return "m 1\n"

    def rpc_set_isolated(self, isolated: bool) -> None:
        self.isolated = isolated


async def _server(admin: bool = False, **kwargs: Any) -> tuple[RpcServer, Backend]:
    backend = Backend()
    token_file = None
    if admin:
        token_file = Path(tempfile.mkdtemp()) / "admin.token"
        token_file.write_text(TOKEN + "\n")
    server = RpcServer(
        backend, "127.0.0.1", 0, admin_enabled=admin, admin_token_file=token_file, **kwargs
    )
    await server.start()
    return server, backend


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return response


def test_routes_over_one_keep_alive_connection() -> None:
    async def scenario() -> None:
        server, backend = await _server()
        client = HttpClient("127.0.0.1", server.port)
        assert await client.get_json("/status") == {"height": 3}
        blocks = await client.get_json("/blocks?from=2&to=4&txids=1")
        assert [b["height"] for b in blocks["blocks"]] == [2, 3, 4]
        assert blocks["blocks"][0]["txids"] is True
        status, body = await client.post_json("/tx", {"txs": ["0102", "ff"]})
        assert status == 200 and body["accepted"] == 2 and body["txids"] == ["ab", "ab"]
        status, raw = await client.request(
            "POST", "/tx", encode_binary_txs([b"x" * 10, b"y"]), "application/octet-stream"
        )
        assert status == 200 and "txids" not in json.loads(raw)
        assert backend.submitted == [b"\x01\x02", b"\xff", b"x" * 10, b"y"]
        status, text = await client.request("GET", "/metrics")
        assert status == 200 and text == b"m 1\n"
        assert await client.get_json("/payload/" + "01" * 32) == {"id": "01" * 32}
        assert server.requests_served == 6
        await client.close()
        await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("GET", "/nope", b"", 404, "no route"),
        ("DELETE", "/status", b"", 405, "not allowed"),
        ("POST", "/tx", b"{not json", 400, "not valid JSON"),
        ("POST", "/tx", b'{"tx": "zz"}', 400, "not valid hex"),
        ("POST", "/tx", b'{"txs": []}', 400, "no transactions"),
        ("POST", "/tx", b"[1, 2]", 400, "expected"),
        ("GET", "/blocks?from=5&to=2", b"", 400, "below"),
        ("GET", "/blocks?from=x", b"", 400, "not an integer"),
        ("GET", "/payload/abcd", b"", 400, "32 bytes"),
        ("GET", "/payload/" + "02" * 32, b"", 404, "unknown"),
        ("POST", "/admin/isolate", b'{"isolated": true}', 403, "disabled"),
        ("GET", "/blocks?from=" + "9" * 30, b"", 400, "not an integer"),
        ("POST", "/tx", b"[" * 100_000, 400, "nested too deeply"),
    ],
)
def test_bad_requests_get_clear_errors(method, path, body, status, error) -> None:
    async def scenario() -> None:
        server, backend = await _server()
        client = HttpClient("127.0.0.1", server.port)
        got, payload = await client.request(method, path, body)
        assert got == status
        assert error in json.loads(payload)["error"]
        assert backend.submitted == [] and backend.isolated is None  # nothing changed
        assert await client.get_json("/status") == {"height": 3}  # the server lives on
        await client.close()
        await server.stop()

    asyncio.run(scenario())


def test_protocol_level_limits() -> None:
    async def scenario() -> None:
        server, _ = await _server(max_body_bytes=100, max_inflight_body_bytes=200)
        head = b"POST /tx HTTP/1.1\r\nHost: x\r\n"
        too_big = head + b"Content-Length: 101\r\n\r\n" + b"x" * 101
        assert b" 413 " in await _raw(server.port, too_big)
        assert b" 411 " in await _raw(server.port, head + b"\r\n")
        assert b" 411 " in await _raw(server.port, head + b"Transfer-Encoding: chunked\r\n\r\n")
        assert b" 400 " in await _raw(server.port, b"GARBAGE\r\n\r\n")
        huge_header = b"GET /status HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        assert (await _raw(server.port, huge_header)).split(b" ")[1].startswith(b"4")
        await server.stop()

    asyncio.run(scenario())


def test_admin_endpoints_need_the_token() -> None:
    async def scenario() -> None:
        server, backend = await _server(admin=True, metrics=NodeMetrics())
        anonymous = HttpClient("127.0.0.1", server.port)
        status, body = await anonymous.post_json("/admin/isolate", {"isolated": True})
        assert status == 401 and "Bearer" in body["error"] and backend.isolated is None
        forged = HttpClient("127.0.0.1", server.port, token="cd" * 32)
        status, _ = await forged.post_json("/admin/isolate", {"isolated": True})
        assert status == 401 and backend.isolated is None
        admin = HttpClient("127.0.0.1", server.port, token=TOKEN)
        status, _ = await admin.post_json("/admin/isolate", {"isolated": True})
        assert status == 200 and backend.isolated is True
        assert server.metrics is not None
        assert server.metrics.rpc_refused.value(reason="unauthorized") == 2
        for client in (anonymous, forged, admin):
            await client.close()
        await server.stop()

    asyncio.run(scenario())


def test_full_mempool_is_503_and_admin_isolation_works() -> None:
    async def scenario() -> None:
        server, backend = await _server(admin=True)
        backend.full = True
        client = HttpClient("127.0.0.1", server.port, token=TOKEN)
        status, body = await client.post_json("/tx", {"tx": "01"})
        assert status == 503 and body["full"] == 1
        status, body = await client.post_json("/admin/isolate", {"isolated": True})
        assert status == 200 and backend.isolated is True
        status, _ = await client.post_json("/admin/isolate", {"isolated": "yes"})
        assert status == 400 and backend.isolated is True
        await client.close()
        await server.stop()

    asyncio.run(scenario())


def test_idle_connections_yield_to_new_clients() -> None:
    """256 connections that never send a byte (the cap is 64) do not lock anyone out:
    over the cap the longest-idle connection is closed, and each client is logged once."""

    async def scenario() -> None:
        metrics = NodeMetrics()
        server, _ = await _server(metrics=metrics, max_connections=64, max_client_connections=64)
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(256)]
        await asyncio.sleep(0.2)
        client = HttpClient("127.0.0.1", server.port, timeout_s=2.0)
        started = time.monotonic()
        assert await client.get_json("/status") == {"height": 3}
        assert time.monotonic() - started < 2.0
        evicted = metrics.rpc_refused.value(reason="too_many_client_connections")
        assert evicted >= 256 - 64  # non-vacuous: the cap was reached and enforced
        assert metrics.rpc_connections.value() <= 64
        dropped = [r for r in records if getattr(r, "event", "") == "rpc_client_dropped"]
        assert len(dropped) == 1  # one line for the one client address, not one per socket
        await client.close()
        for _, writer in idle:
            writer.close()
        await server.stop()

    records = _capture_node_log()
    asyncio.run(scenario())


def test_a_busy_connection_is_never_evicted() -> None:
    async def scenario() -> None:
        server, _ = await _server(max_connections=1, max_client_connections=1, body_timeout_s=5)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.sleep(0.1)  # the first request is inside its handler, reading its body
        try:
            refused = await _raw(server.port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        except ConnectionResetError:
            refused = b""
        assert refused == b""
        writer.write(b"defghij")  # the busy request completes normally
        response = await asyncio.wait_for(reader.read(65536), 5)
        assert response.startswith(b"HTTP/1.1 400 ")  # its 10 bytes are not a valid body
        writer.close()
        await server.stop()

    asyncio.run(scenario())


def test_headers_must_arrive_within_the_header_timeout() -> None:
    """A slowloris client (a header byte every 100 ms) is closed at the header timeout."""

    async def scenario() -> None:
        metrics = NodeMetrics()
        server, _ = await _server(header_timeout_s=0.5, metrics=metrics)
        silent = await asyncio.open_connection("127.0.0.1", server.port)  # never sends a byte
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        closed_after = None
        for byte in b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
            if reader.at_eof() or writer.transport.is_closing():
                closed_after = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
            if reader._buffer or reader.at_eof():  # closed: EOF or a response
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None and closed_after < 3.0, closed_after
        assert await asyncio.wait_for(silent[0].read(), 3) == b""  # closed too
        assert metrics.rpc_refused.value(reason="header_timeout") == 2
        silent[1].close()
        writer.close()
        await server.stop()

    asyncio.run(scenario())


def test_body_budget_answers_503_before_reading_more_bodies() -> None:
    """Bodies held one byte short: those that fit the budget wait (bounded by the body
    timeout); the rest are answered 503 at once, without reading their bodies."""

    async def scenario() -> None:
        metrics = NodeMetrics()
        server, _ = await _server(
            metrics=metrics, max_body_bytes=1000, max_inflight_body_bytes=2000, body_timeout_s=2
        )
        held = []
        for _ in range(6):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            writer.write(b"x" * 999)
            await writer.drain()
            held.append((reader, writer))
        await asyncio.sleep(0.3)
        assert server.budget.in_flight_bytes == 2000  # two bodies admitted, none beyond
        assert metrics.rpc_refused.value(reason="body_budget") == 4
        answers = [await asyncio.wait_for(r.read(65536), 5) for r, _ in held]
        assert sum(a.startswith(b"HTTP/1.1 503 ") for a in answers) == 4
        assert sum(a.startswith(b"HTTP/1.1 408 ") for a in answers) == 2  # body timeout
        assert server.budget.in_flight_bytes == 0
        for _, writer in held:
            writer.close()
        await server.stop()

    asyncio.run(scenario())


BAD_INPUTS = [
    ("POST", "/tx", b"[" * 100_000 + b"]" * 100_000),
    ("POST", "/tx", b'{"txs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", "/bundle", b"[" * 100_000),
    ("POST", "/admin/isolate", b"[" * 100_000),
    ("GET", "/blocks?from=" + "9" * 30, b""),
    ("GET", "/blocks?from=" + "9" * 5000, b""),
    ("GET", "/blocks?from=1&to=" + "9" * 19, b""),
    ("GET", "/blocks?from=-1", b""),
    ("GET", "/blocks?from=%00", b""),
    ("GET", "/blocks?from=\u0661", b""),
    ("GET", "/executions?from=" + "9" * 25, b""),
    ("GET", "/executions?from=9223372036854775808", b""),
    ("GET", "/lanes?at=" + "9" * 40, b""),
    ("GET", "/lanes?at=-5", b""),
    ("GET", "/payload/" + "zz" * 32, b""),
    ("GET", "/payload/" + "ab" * 5000, b""),
    ("POST", "/tx", b'{"tx": ' + b"1" * 5000 + b"}"),
    ("POST", "/tx", b'{"txs": [1e999999]}'),
    ("POST", "/bundle", b'{"bundles": ["!!"]}'),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_bad_input_is_a_4xx_never_a_500(method: str, path: str, body: bytes) -> None:
    class StrictBackend(Backend):
        def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]:
            assert 0 <= first <= last < 2**63  # what SQLite can bind
            return []

        def rpc_executions(self, first: int, last: int, with_data: bool) -> dict[str, Any]:
            assert 0 <= first <= last < 2**63
            return {"events": [], "next": last + 1}

        def rpc_lanes(self, at_height: int | None) -> dict[str, Any]:
            assert at_height is None or 0 <= at_height < 2**63
            return {}

    async def scenario() -> None:
        server = RpcServer(StrictBackend(), "127.0.0.1", 0)
        await server.start()
        client = HttpClient("127.0.0.1", server.port)
        status, _ = await client.request(method, path, body)
        assert 400 <= status < 500, status
        assert await client.get_json("/status") == {"height": 3}  # the server lives on
        await client.close()
        await server.stop()

    asyncio.run(scenario())


def test_reset_or_malformed_connections_log_no_traceback() -> None:
    """Clients that reset mid-request or mid-response (RST), or send garbage, leave no
    traceback in any log, under uvloop as in production; one line per client at most."""
    import uvloop

    async def reset_after(port: int, data: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(data)
        await asyncio.sleep(0.01)
        sock.close()  # RST

    async def scenario() -> None:
        server, _ = await _server()
        head = b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        garbage = b"GET / HTTP/1.1\r\n\r\n"  # no Host: aiohttp answers 400 and logs it
        for data in (
            head,
            head + b"x" * 50,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GE",
            garbage,
        ):
            for _ in range(5):
                await reset_after(server.port, data)
        await asyncio.sleep(0.3)
        client = HttpClient("127.0.0.1", server.port)
        assert await client.get_json("/status") == {"height": 3}
        await client.close()
        await server.stop()

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    node_records = _capture_node_log()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(scenario())
    finally:
        root.removeHandler(handler)
    noisy = [r for r in records + node_records if r.levelno >= logging.WARNING and r.exc_info]
    assert noisy == []
    assert sum(getattr(r, "event", "") == "rpc_bad_http" for r in node_records) <= 1


def _capture_node_log() -> list[logging.LogRecord]:
    """Records of the node's structured logger from here on (one line per event)."""
    from node.logs import get_logger

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = get_logger()
    for old in [h for h in logger.handlers if getattr(h, "_capture", False)]:
        logger.removeHandler(old)
    handler._capture = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return records


def test_binary_tx_records() -> None:
    txs = [b"a", b"bc" * 100]
    assert parse_binary_txs(encode_binary_txs(txs)) == txs
    assert parse_binary_txs(b"") == []
    for bad in (b"\x00\x00", struct.pack(">I", 0), struct.pack(">I", 5) + b"abc"):
        with pytest.raises(HttpError):
            parse_binary_txs(bad)
    with pytest.raises(HttpError, match="more than 2"):
        parse_binary_txs(encode_binary_txs([b"a"] * 3), max_txs=2)
