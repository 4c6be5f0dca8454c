"""Node transports: `tcp` (asyncio) and `libp2p` (py-libp2p in a trio thread).

`create_transport(kind, **kwargs)` builds one; libp2p and trio are imported only when the
`libp2p` kind is asked for (importing libp2p takes ~0.7 s).
"""

from __future__ import annotations

from typing import Any

from node.transport.base import (
    PeerAddress,
    Transport,
    TransportKind,
    TransportLimits,
)

__all__ = ["PeerAddress", "Transport", "TransportKind", "TransportLimits", "create_transport"]

KINDS: tuple[str, ...] = ("tcp", "libp2p")


def create_transport(kind: TransportKind, **kwargs: Any) -> Transport:
    """Build a transport of `kind` ("tcp" or "libp2p"); kwargs are the Transport's."""
    if kind == "tcp":
        from node.transport.tcp import TcpTransport

        return TcpTransport(**kwargs)
    if kind == "libp2p":
        from node.transport.libp2p_transport import Libp2pTransport

        return Libp2pTransport(**kwargs)
    raise ValueError(f"unknown transport {kind!r}; choose one of {list(KINDS)}")
