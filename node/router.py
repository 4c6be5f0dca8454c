"""The router room: frames to peers (and the node's own messages back to its inbox).

`Send` and `Broadcast` become frames on the transport; a `Send` to this node itself is
pushed back as a `MessageReceived` event. Before a vote leaves, `before_vote` returns the
frames that must precede it on the same connections (this lane's sealed lane block, see
`node/lanes_node.py`). Isolation (`POST /admin/isolate`) is the transport's; the router
remembers the flag for `/status`.

Test-only fault hooks (set by `node/faults.py` through the assembly, never otherwise):
`silent` drops every outgoing consensus message, `after_vote_sent(peer, vote)` runs after
each vote frame is handed to the transport.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consensus.codec import encode_message
from consensus.events import Broadcast, Event, MessageReceived, Send
from consensus.messages import Message, VoteMessage
from node.logs import log
from node.metrics import NodeMetrics
from node.transport import Transport

VoteRelay = Callable[[VoteMessage], list[tuple[int, bytes]]]


class Router:
    """Encodes the core's messages and hands them to the transport."""

    def __init__(
        self,
        *,
        index: int,
        transport: Transport,
        metrics: NodeMetrics,
        logger: logging.Logger,
        push_internal: Callable[[Event], None],
        before_vote: VoteRelay,
        log_votes: bool = False,
    ):
        self.index = index
        self.transport = transport
        self.metrics = metrics
        self.log = logger
        self._push_internal = push_internal
        self._before_vote = before_vote
        self._log_votes = log_votes
        self.isolated = False
        # TEST ONLY hooks (node/faults.py)
        self.silent = False
        self.after_vote_sent: Callable[[int, VoteMessage], None] | None = None

    # ------------------------------------------------------------------ commands

    def send(self, command: Send) -> None:
        if self.silent:
            return
        message = command.message
        if isinstance(message, VoteMessage):
            for peer, frame in self._before_vote(message):
                self.send_frame(peer, frame, "LaneBlock")
        if command.to == self.index:
            self._push_internal(
                MessageReceived(now_ns=time.time_ns(), sender=self.index, message=message)
            )
            return
        self.send_frame(command.to, encode_message(message), type(message).__name__)
        if isinstance(message, VoteMessage):
            if self._log_votes:
                self.log_vote("vote_sent", command.to, message)
            if self.after_vote_sent is not None:
                self.after_vote_sent(command.to, message)

    def broadcast(self, command: Broadcast) -> None:
        if self.silent:
            return
        message = command.message
        self.transport.broadcast(encode_message(message))
        self.metrics.sent.inc(peer="all", type=type(message).__name__)
        if isinstance(message, VoteMessage) and self._log_votes:
            self.log_vote("vote_sent", -1, message)

    # ------------------------------------------------------------------ frames

    def send_frame(self, peer: int, frame: bytes, type_name: str) -> None:
        self.transport.send(peer, frame)
        self.metrics.sent.inc(peer=peer, type=type_name)

    def send_message(self, peer: int, message: Message) -> None:
        """A message that does not come from the core (e.g. a sync response)."""
        self.send_frame(peer, encode_message(message), type(message).__name__)

    def set_isolated(self, isolated: bool) -> None:
        self.isolated = isolated
        self.transport.set_isolated(isolated)
        log(self.log, "isolation", isolated=isolated)

    def log_vote(self, event: str, peer: int, message: VoteMessage) -> None:
        log(
            self.log,
            event,
            peer=peer,
            author=message.author,
            round=message.vote.round,
            block_id=message.vote.block_id.hex(),
        )
