"""Helpers to run several transports on loopback (tests, benchmarks, the testnet's checks)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

from consensus.crypto import DEFAULT_CHAIN_ID, KeyPair, derive_keys
from node.transport import create_transport
from node.transport.base import PeerAddress, Transport, TransportKind, TransportLimits

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS just had free (racy by nature; fine on a quiet loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_peers(keys: list[KeyPair], ports: list[int]) -> dict[int, PeerAddress]:
    return {
        i: PeerAddress(index=i, host=LOOPBACK, port=ports[i], public_key=key.public)
        for i, key in enumerate(keys)
    }


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str = "condition"
) -> float:
    """Poll `predicate` until true; return the seconds it took; TimeoutError otherwise."""
    start = time.perf_counter()
    deadline = start + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - start


class Inbox:
    """Records frames per (receiver, sender); a ready-made on_frame for each node."""

    def __init__(self) -> None:
        self.frames: dict[int, list[tuple[int, bytes]]] = {}

    def handler(self, receiver: int) -> Callable[[int, bytes], None]:
        received = self.frames.setdefault(receiver, [])

        def on_frame(peer: int, frame: bytes) -> None:
            received.append((peer, frame))

        return on_frame

    def from_peer(self, receiver: int, sender: int) -> list[bytes]:
        return [frame for peer, frame in self.frames.get(receiver, []) if peer == sender]

    def count(self, receiver: int) -> int:
        return len(self.frames.get(receiver, []))


class LocalMesh:
    """N validators on loopback with deterministic keys and pre-chosen free ports."""

    def __init__(
        self,
        kind: TransportKind,
        size: int,
        *,
        limits: TransportLimits | None = None,
        limits_by_node: dict[int, TransportLimits] | None = None,
        seed: str = "transport-tests",
        on_frame: Callable[[int], Callable[[int, bytes], None]] | None = None,
        chain_id_by_node: dict[int, str] | None = None,
    ) -> None:
        self.kind = kind
        self.chain_id_by_node = chain_id_by_node or {}
        self.keys = derive_keys(size, seed)
        self.ports = [free_port() for _ in range(size)]
        self.peers = local_peers(self.keys, self.ports)
        self.limits = limits or TransportLimits()
        self.limits_by_node = limits_by_node or {}
        self.inbox = Inbox()
        self._on_frame = on_frame or self.inbox.handler
        self.nodes: dict[int, Transport] = {}

    def build(self, index: int) -> Transport:
        return create_transport(
            self.kind,
            index=index,
            key=self.keys[index],
            listen_host=LOOPBACK,
            listen_port=self.ports[index],
            peers=self.peers,
            on_frame=self._on_frame(index),
            limits=self.limits_by_node.get(index, self.limits),
            chain_id=self.chain_id_by_node.get(index, DEFAULT_CHAIN_ID),
        )

    async def start(self, indices: list[int] | None = None) -> None:
        for index in range(len(self.keys)) if indices is None else indices:
            node = self.build(index)
            await node.start()
            self.nodes[index] = node

    async def stop(self, indices: list[int] | None = None) -> None:
        for index in list(self.nodes) if indices is None else indices:
            node = self.nodes.pop(index)
            await node.stop()

    def fully_connected(self) -> bool:
        expected = set(self.nodes)
        return all(
            node.connected_peers() >= expected - {index} for index, node in self.nodes.items()
        )

    async def wait_connected(self, timeout_s: float) -> float:
        return await wait_until(self.fully_connected, timeout_s, "full mesh")

    def stats(self, index: int) -> dict[str, Any]:
        return self.nodes[index].stats()
