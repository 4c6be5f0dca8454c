"""The HTTP/JSON RPC server on real sockets: routes, keep-alive, limits and bad input."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest

from node.rpc import HttpClient, HttpError, RpcServer, encode_binary_txs, parse_binary_txs


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
    server = RpcServer(backend, "127.0.0.1", 0, admin_enabled=admin, **kwargs)
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
        server, _ = await _server(max_body_bytes=100)
        too_big = b"POST /tx HTTP/1.1\r\nContent-Length: 101\r\n\r\n" + b"x" * 101
        assert b" 413 " in await _raw(server.port, too_big)
        assert b" 411 " in await _raw(server.port, b"POST /tx HTTP/1.1\r\n\r\n")
        assert b" 501 " in await _raw(
            server.port, b"POST /tx HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        assert b" 400 " in await _raw(server.port, b"GARBAGE\r\n\r\n")
        huge_header = b"GET /status HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        assert b" 431 " in await _raw(server.port, huge_header)
        await server.stop()

    asyncio.run(scenario())


def test_full_mempool_is_503_and_admin_isolation_works() -> None:
    async def scenario() -> None:
        server, backend = await _server(admin=True)
        backend.full = True
        client = HttpClient("127.0.0.1", server.port)
        status, body = await client.post_json("/tx", {"tx": "01"})
        assert status == 503 and body["full"] == 1
        status, body = await client.post_json("/admin/isolate", {"isolated": True})
        assert status == 200 and backend.isolated is True
        status, _ = await client.post_json("/admin/isolate", {"isolated": "yes"})
        assert status == 400 and backend.isolated is True
        await client.close()
        await server.stop()

    asyncio.run(scenario())


def test_connection_cap_refuses_extra_connections() -> None:
    async def scenario() -> None:
        server, _ = await _server(max_connections=1)
        holder = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        try:
            refused = await _raw(server.port, b"GET /status HTTP/1.1\r\n\r\n")
        except ConnectionResetError:
            refused = b""
        assert refused == b""
        holder[1].close()
        await server.stop()

    asyncio.run(scenario())


def test_binary_tx_records() -> None:
    txs = [b"a", b"bc" * 100]
    assert parse_binary_txs(encode_binary_txs(txs)) == txs
    assert parse_binary_txs(b"") == []
    for bad in (b"\x00\x00", struct.pack(">I", 0), struct.pack(">I", 5) + b"abc"):
        with pytest.raises(HttpError):
            parse_binary_txs(bad)
    with pytest.raises(HttpError, match="more than 2"):
        parse_binary_txs(encode_binary_txs([b"a"] * 3), max_txs=2)
