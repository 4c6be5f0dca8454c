"""The pending block tree above the finalized head, the QCs seen, and the commit rule.

Every block here entered with a verified tip and a body whose id matches its header (the
core checks before `add`). The tree is rooted at the finalized head; a block is *connected*
when its parent chain reaches the root. A bounded window of finalized blocks is kept to serve
block sync.

Rule names:
- C-TWO-CHAIN: a QC on Y with `qc.round == Y.qc.round + 1` commits Y's parent X and its
  uncommitted ancestors (reference §3, `get_committable_id`).
- C-RETRY: a commit whose blocks were missing is retried when they arrive (the QCs seen are
  kept by the block they certify, `get_high_committable_qc`).
- T-SEQ: a block's `seq_num` is its parent's plus one.
- T-PRUNE: on commit, blocks at or below the new root's height and forks off it are dropped.
- T-ROOM: when the tree is full, a block that would be connected displaces the highest
  block that is not (a node catching up fills its tree with far-ahead blocks it cannot
  connect yet; the blocks that connect them must still fit).
- T-CONNECTED: which pending blocks are connected is kept up to date as blocks arrive (each
  block is connected once, through an index of children), so asking costs O(1) and a block
  that arrives only re-examines the blocks it connects: catching up on n blocks is linear.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from consensus.messages import GENESIS_BLOCK_ID, BlockBody, BlockHeader, QuorumCertificate, Tip

MAX_PENDING_BLOCKS = 4096
MAX_FINALIZED_KEPT = 256
MAX_PENDING_QCS = 4096


@dataclass(frozen=True, slots=True)
class TreeBlock:
    block_id: bytes
    tip: Tip
    body: BlockBody

    @property
    def header(self) -> BlockHeader:
        return self.tip.header

    @property
    def seq_num(self) -> int:
        return self.tip.header.seq_num

    @property
    def block_round(self) -> int:
        return self.tip.header.block_round

    @property
    def parent_id(self) -> bytes:
        return self.tip.header.qc.block_id


class BlockTree:
    def __init__(
        self,
        root_id: bytes = GENESIS_BLOCK_ID,
        root_seq: int = 0,
        root_round: int = 0,
        root_timestamp_ns: int = 0,
    ):
        self.root_id = root_id
        self.root_seq = root_seq
        self.root_round = root_round
        self.root_timestamp_ns = root_timestamp_ns
        self._pending: dict[bytes, TreeBlock] = {}
        self._finalized: OrderedDict[bytes, TreeBlock] = OrderedDict()
        self._qcs: dict[bytes, QuorumCertificate] = {}  # certified block id -> highest QC
        self._children: dict[bytes, list[bytes]] = {}  # parent id -> pending children
        self._connected: set[bytes] = set()  # pending blocks whose chain reaches the root
        self._arrived: list[bytes] = []  # became connected since the last `drain_connected`
        self._missing_memo: dict[bytes, bytes] = {}  # pending block -> an ancestor to jump to

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, block_id: bytes) -> TreeBlock | None:
        block = self._pending.get(block_id)
        return block if block is not None else self._finalized.get(block_id)

    def is_pending(self, block_id: bytes) -> bool:
        return block_id in self._pending

    def is_finalized(self, block_id: bytes) -> bool:
        return block_id == self.root_id or block_id in self._finalized

    def is_connected(self, block_id: bytes) -> bool:
        """The root, or a pending block whose parent chain reaches the root (T-CONNECTED)."""
        return block_id == self.root_id or block_id in self._connected

    def drain_connected(self) -> list[bytes]:
        """Pending blocks that became connected since the last call, parents first."""
        arrived = [b for b in self._arrived if b in self._connected]
        self._arrived = []
        return arrived

    def qc_for(self, block_id: bytes) -> QuorumCertificate | None:
        """The highest QC seen on this block (C-RETRY keeps them)."""
        return self._qcs.get(block_id)

    def finalized_after(self, block_id: bytes, count: int) -> list[TreeBlock]:
        """Up to `count` kept finalized blocks directly above `block_id`, oldest first (for
        chain sync; empty unless `block_id` is genesis or in the kept finalized window)."""
        kept = list(self._finalized.values())
        if block_id == GENESIS_BLOCK_ID and kept and kept[0].parent_id == GENESIS_BLOCK_ID:
            return kept[:count]
        for position, block in enumerate(kept):
            if block.block_id == block_id:
                return kept[position + 1 : position + 1 + count]
        return []

    def is_full(self) -> bool:
        return len(self._pending) >= MAX_PENDING_BLOCKS

    def parent_seq_and_timestamp(self, parent_id: bytes) -> tuple[int, int] | None:
        """Height and timestamp of a block a new block may extend: the root or a pending one."""
        if parent_id == self.root_id:
            return self.root_seq, self.root_timestamp_ns
        parent = self._pending.get(parent_id)
        if parent is None:
            return None
        return parent.seq_num, parent.header.timestamp_ns

    def path_from_root(self, block_id: bytes) -> list[TreeBlock] | None:
        """Pending blocks from just above the root up to `block_id`; None if not connected."""
        if block_id == self.root_id:
            return []
        path: list[TreeBlock] = []
        current = block_id
        for _ in range(len(self._pending) + 1):  # bounded walk
            if current == self.root_id:
                path.reverse()
                return path
            block = self._pending.get(current)
            if block is None:
                return None
            path.append(block)
            current = block.parent_id
        return None

    def missing_ancestor(self, block_id: bytes) -> bytes | None:
        """The first block on the way from `block_id` to the root that is not held (or None).

        Returns None too when the chain ends below the root (a fork off finalized history).
        A walk remembers its answer for the blocks it crossed (an ancestor stays an
        ancestor), so asking again for blocks above the same gap does not walk again.
        """
        visited: list[bytes] = []
        current = block_id
        missing: bytes | None = None
        for _ in range(len(self._pending) + 1):
            if self.is_connected(current) or current in self._finalized:
                break
            block = self._pending.get(current)
            if block is None:
                missing = current
                break
            if block.seq_num <= self.root_seq:
                break
            visited.append(current)
            current = self._missing_memo.get(current, block.parent_id)
        if missing is not None:
            for crossed in visited:
                self._missing_memo[crossed] = missing
        return missing

    def chain(self, block_id: bytes, count: int) -> list[TreeBlock]:
        """Up to `count` held blocks starting at `block_id`, newest first (for block sync)."""
        blocks: list[TreeBlock] = []
        current = block_id
        for _ in range(count):
            block = self.get(current)
            if block is None:
                break
            blocks.append(block)
            current = block.parent_id
        return blocks

    def qcs_by_round_desc(self) -> list[QuorumCertificate]:
        return sorted(self._qcs.values(), key=lambda qc: qc.round, reverse=True)

    def committable(self, qc: QuorumCertificate, *, consecutive_only: bool = True):
        """C-TWO-CHAIN: the pending blocks the QC commits, oldest first ([] if none yet).

        `consecutive_only=False` is the TEST-ONLY mutation "commit_non_consecutive".
        """
        child = self._pending.get(qc.block_id)
        if child is None:
            return []
        if consecutive_only and qc.round != child.header.qc.round + 1:
            return []
        if not self.is_connected(child.parent_id):
            return []  # C-RETRY: tried again when it connects (no walk until then)
        path = self.path_from_root(child.parent_id)
        return path or []

    # ------------------------------------------------------------------ mutations

    def add(self, block: TreeBlock) -> bool:
        """Insert a verified block above the root. Returns whether it is new."""
        if block.block_id in self._pending or self.is_finalized(block.block_id):
            return False
        if block.seq_num <= self.root_seq:
            return False
        if self.is_full() and not (
            self.is_connected(block.parent_id) and self._evict_highest_unconnected()
        ):
            return False
        self._pending[block.block_id] = block
        self._children.setdefault(block.parent_id, []).append(block.block_id)
        if self.is_connected(block.parent_id):
            self._connect(block.block_id)
        return True

    def _evict_highest_unconnected(self) -> bool:
        """T-ROOM: a full tree makes room for a connected block by dropping the highest
        block that is not connected (it can be fetched again); False if there is none."""
        waiting = [b for b in self._pending.values() if b.block_id not in self._connected]
        if not waiting:
            return False
        victim = max(waiting, key=lambda b: (b.seq_num, b.block_id))
        del self._pending[victim.block_id]
        self._missing_memo.pop(victim.block_id, None)
        siblings = self._children.get(victim.parent_id, [])
        siblings.remove(victim.block_id)
        if not siblings:
            self._children.pop(victim.parent_id, None)
        return True

    def _connect(self, block_id: bytes) -> None:
        """T-CONNECTED: mark a block and every waiting descendant connected (each once)."""
        stack = [block_id]
        while stack:  # bound: each pending block is pushed at most once per connection
            current = stack.pop()
            if current in self._connected:
                continue
            self._connected.add(current)
            self._arrived.append(current)
            stack.extend(self._children.get(current, ()))

    def add_qc(self, qc: QuorumCertificate) -> bool:
        """Remember the highest QC per certified block (C-RETRY). Returns whether it is new."""
        if qc.round <= self.root_round or self.is_finalized(qc.block_id):
            return False
        known = self._qcs.get(qc.block_id)
        if known is not None and known.round >= qc.round:
            return False
        if known is None and len(self._qcs) >= MAX_PENDING_QCS:
            return False
        self._qcs[qc.block_id] = qc
        return True

    def commit(self, path: list[TreeBlock]) -> None:
        """Make the last block of `path` (a connected path from the root) the new root."""
        if not path:
            return
        assert path[0].parent_id == self.root_id, "commit path must start at the root"
        for block in path:
            self._finalized[block.block_id] = block
            del self._pending[block.block_id]
        while len(self._finalized) > MAX_FINALIZED_KEPT:
            self._finalized.popitem(last=False)
        head = path[-1]
        self.root_id, self.root_seq = head.block_id, head.seq_num
        self.root_round, self.root_timestamp_ns = head.block_round, head.header.timestamp_ns
        self._prune()

    def _prune(self) -> None:
        """T-PRUNE: drop blocks at or below the root's height, blocks just above it that do
        not extend it, blocks on finalized blocks other than the root, and every descendant
        of a dropped block (through the children index: no sort of the whole tree)."""
        root_seq, root_id = self.root_seq, self.root_id
        dropped: set[bytes] = set()
        stack: list[bytes] = []
        for block in self._pending.values():
            seq, parent = block.seq_num, block.parent_id
            if (
                seq <= root_seq
                or (seq == root_seq + 1 and parent != root_id)
                or (seq > root_seq + 1 and self.is_finalized(parent))
            ):
                stack.append(block.block_id)
        while stack:  # bound: each pending block is dropped at most once
            block_id = stack.pop()
            if block_id in dropped:
                continue
            dropped.add(block_id)
            stack.extend(self._children.get(block_id, ()))
        for block_id in dropped:
            self._pending.pop(block_id, None)
        self._connected &= self._pending.keys()  # a kept block's path runs via the new root
        self._children = {}
        for block in self._pending.values():
            self._children.setdefault(block.parent_id, []).append(block.block_id)
        # a remembered gap that was filled or finalized is no longer a gap
        self._missing_memo = {
            b: m
            for b, m in self._missing_memo.items()
            if b in self._pending and m not in self._pending and not self.is_finalized(m)
        }
        self._qcs = {
            block_id: qc
            for block_id, qc in self._qcs.items()
            if qc.round > self.root_round and block_id not in dropped
        }
