"""A simulation whose network is driven step by step (for hypothesis stateful tests).

`SteppedSim` runs the real cores in the ordinary engine, but every message that would
cross the network is captured into a bounded pool of in-flight messages instead of being
scheduled. The caller then decides, one action at a time, what the network and the fault
injector do:

- `deliver(i)` / `deliver_oldest(k)`: hand in-flight message i (or the k oldest, in
  order) to its destination now;
- `drop(i)`: lose it; `delay(i)`: move it to the back of the pool (reordering);
- `advance()`: move the clock to the next queued engine event (a timer, a restart) and
  process everything due at that instant;
- `partition(groups)` / `heal()`: while partitioned, messages sent between different
  groups are lost at send time (messages already in flight stay in the pool);
- `crash(node)` / `restart(node)`: the engine's crash and restart-from-disk;
- `byzantine_replay(i, dst)`, `byzantine_vote(dst, block, round_offset)`,
  `byzantine_no_endorsement(dst)`: the Byzantine identity (key `byzantine`) sends a
  message it could really produce: a copy of anything it sent before to any instance
  (e.g. the other side of its equivocation), a signed vote for any block it has seen in
  any nearby round, a signed NoEndorsement for the receiver's current round.

Each action runs the engine up to the current instant, which also runs the checkers'
end-of-run checks (commit rule, P5 for finalized heights); liveness is never judged here
(`liveness_ms` is infinite), so `violations` holds safety failures only. The Byzantine
node also runs a real core wrapped in `netsim.byzantine.ByzantineMachine` (default
`equivocate`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from consensus import codec
from consensus.certificates import Signer
from consensus.messages import NoEndorsement, ProposalMessage, Vote
from netsim.driver import make_checker
from netsim.engine import Simulator
from netsim.invariants import certificates_in
from netsim.network import Network, NetworkConfig
from netsim.runner import build_world, make_factory
from netsim.scenario import ByzantineSpec, Scenario

MAX_PENDING = 256  # in-flight messages; beyond it the oldest is lost
MAX_BYZANTINE_LOG = 256  # messages the Byzantine node sent, kept for replays
MAX_KNOWN_BLOCKS = 64


@dataclass(frozen=True, slots=True)
class InFlight:
    src: int  # instance
    src_identity: int
    dst: int  # instance
    message: Any


class SteppedSim:
    def __init__(
        self,
        *,
        validators: int = 4,
        protocol: str = "monadbft",
        byzantine: int | None = 1,
        behaviour: str = "equivocate",
        test_mutations: frozenset[str] = frozenset(),
        seed: int = 1,
    ):
        specs = () if byzantine is None else (ByzantineSpec(byzantine, behaviour),)
        scenario = Scenario(
            validators=validators, protocol=protocol, seed=seed, byzantine=specs, source="<stepped>"
        )
        self.world = build_world(scenario, test_mutations)
        self.byzantine = byzantine
        byzantine_ids = frozenset() if byzantine is None else frozenset({byzantine})
        self.checker = make_checker(self.world, byzantine_ids, liveness_ms=math.inf)
        self.pending: deque[InFlight] = deque()
        self.groups: dict[int, int] | None = None
        self.lost = 0
        self.byzantine_log: deque[Any] = deque(maxlen=MAX_BYZANTINE_LOG)
        self.known_blocks: deque[bytes] = deque(maxlen=MAX_KNOWN_BLOCKS)
        self._signer = (
            None
            if byzantine is None
            else Signer(byzantine, self.world.keys[byzantine], self.world.scheme)
        )
        self.sim = Simulator(
            factory=make_factory(self.world, seed),
            network=Network(NetworkConfig()),
            seed=seed,
            identities=validators,
            observers=[self.checker],
            link_filter=self._capture,
        )
        self._settle()  # Start: every core enters round 1, the first leader proposes

    # ------------------------------------------------------------------ views

    @property
    def violations(self) -> list[str]:
        return self.checker.violations

    @property
    def now_ms(self) -> float:
        return self.sim.now_ms

    def finalized(self) -> dict[int, int]:
        return {h.index: h.disk.finalized_height for h in self.sim.hosts}

    # ------------------------------------------------------------------ network side

    def _capture(self, sim: Simulator, src: int, dst: int, message: Any) -> bool:
        host = sim.hosts[src]
        if host.identity == self.byzantine:
            self.byzantine_log.append(message)
        for certificate in certificates_in(message):
            if hasattr(certificate, "header"):  # a Tip: remember the block for forged votes
                block_id = codec.block_id(certificate.header)
                if block_id not in self.known_blocks:
                    self.known_blocks.append(block_id)
        if self.groups is not None and self.groups.get(src, -1) != self.groups.get(dst, -1):
            self.lost += 1
        else:
            if len(self.pending) >= MAX_PENDING:
                self.pending.popleft()
                self.lost += 1
            self.pending.append(InFlight(src, host.identity, dst, message))
        return False  # the engine never schedules it: this driver does

    def _settle(self) -> None:
        self.sim.run(self.sim.now_ms)

    def _take(self, pick: int) -> InFlight | None:
        if not self.pending:
            return None
        position = pick % len(self.pending)
        item = self.pending[position]
        del self.pending[position]
        return item

    def deliver(self, pick: int) -> None:
        item = self._take(pick)
        if item is not None:
            self.sim.inject(item.dst, item.src_identity, item.message)
            self._settle()

    def deliver_oldest(self, count: int = 1) -> None:
        """Deliver the `count` oldest in-flight messages, one after the other (messages
        they cause join the back of the pool)."""
        for _ in range(min(count, MAX_PENDING)):
            if not self.pending:
                return
            self.deliver(0)

    def down(self) -> list[int]:
        return [h.index for h in self.sim.hosts if not h.up]

    def drop(self, pick: int) -> None:
        if self._take(pick) is not None:
            self.lost += 1

    def delay(self, pick: int) -> None:
        item = self._take(pick)
        if item is not None:
            self.pending.append(item)

    def advance(self) -> None:
        at_ms = self.sim.next_event_ms()
        if at_ms is not None:
            self.sim.run(at_ms)

    def partition(self, groups: tuple[tuple[int, ...], ...]) -> None:
        self.groups = {node: position for position, group in enumerate(groups) for node in group}

    def heal(self) -> None:
        self.groups = None

    def crash(self, node: int) -> None:
        self.sim.schedule_control(self.sim.now_ms, "crash", node)
        self._settle()

    def restart(self, node: int) -> None:
        self.sim.schedule_control(self.sim.now_ms, "restart", node)
        self._settle()

    # ------------------------------------------------------------------ Byzantine injection

    def byzantine_replay(self, pick: int, dst: int) -> None:
        """Re-send anything the Byzantine node sent before, to any instance."""
        if self.byzantine is None or not self.byzantine_log:
            return
        message = self.byzantine_log[pick % len(self.byzantine_log)]
        self.sim.inject(dst, self.byzantine, message)
        self._settle()

    def byzantine_vote(self, dst: int, pick: int, round_offset: int) -> None:
        """A signed vote for a block seen anywhere, in the receiver's round + offset."""
        if self._signer is None or not self.known_blocks:
            return
        machine = self.sim.hosts[dst].machine
        if machine is None:
            return
        round_ = max(1, int(machine.current_round) + round_offset)
        block_id = self.known_blocks[pick % len(self.known_blocks)]
        vote = Vote(block_id=block_id, round=round_, epoch=self.world.config.epoch)
        self.sim.inject(dst, self.byzantine, self._signer.vote(vote))
        self._settle()

    def byzantine_no_endorsement(self, dst: int) -> None:
        """A signed NE for the receiver's current round, naming its high QC round."""
        if self._signer is None:
            return
        machine = self.sim.hosts[dst].machine
        if machine is None:
            return
        ne = NoEndorsement(
            epoch=self.world.config.epoch,
            round=int(machine.current_round),
            tip_qc_round=int(machine.high_qc.round),
        )
        self.sim.inject(dst, self.byzantine, self._signer.no_endorsement(ne))
        self._settle()

    def byzantine_proposals(self) -> list[ProposalMessage]:
        return [m for m in self.byzantine_log if isinstance(m, ProposalMessage)]
