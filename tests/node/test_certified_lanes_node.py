"""Certified lanes in the node (issue 11): the availability room on real node runtimes
(real transport, storage and RPC, in one event loop), the certified-mode block validator
as the assembly wires it, and the `[lanes] dissemination` switch (config and CLI).

The lane tests of tests/node/test_lanes_node.py run in both modes too (restart without
double execution, a silent lane ratcheted out, the testnet run through a kill)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.codec import WIRE_VERSION
from consensus.crypto import KeyPair, derive_keys
from consensus.lanes.chain import (
    ZERO_DIGEST,
    LaneBlockMessage,
    LaneTip,
    LaneTipMessage,
    PoA,
    TipRef,
    chain_block_digest,
    decode_lane_message,
    sign_chain_block,
)
from consensus.lanes.cut import build_cut_payload
from consensus.lanes.encoding import encode_payload
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry
from consensus.messages import BlockBody
from node.assembly import build_runtime
from node.availability_room import AVAILABILITY_FRAME_TAG, encode_availability_frame
from node.config import ConfigError, aggregate_fields, load_config, load_key, parse_config
from node.lanes_node import LANE_FRAME_TAG, stand_in_header
from node.runtime import NodeRuntime
from node.storage import Storage
from node.tools.sedna_client import SednaClient, SednaPolicy
from node.tools.testnet import generate_network
from tests.node.helpers import send_payloads, wait_until

ROOT = Path(__file__).resolve().parents[2]
MODES = ("certified", "carried")


def _net(root: Path, dissemination: str = "certified", **kwargs) -> list:
    manifest = generate_network(
        root, 4, consensus={"delta_ms": 50.0}, dissemination=dissemination, **kwargs
    )
    return [load_config(root / m["config"]) for m in manifest["members"]]


def _same_order(nodes: list[NodeRuntime], ids: list[bytes]) -> None:
    """Every node executed every payload once, with one execution-order hash."""
    for n in nodes:
        events = n.ledger.storage.lane_events(1, 10**9)
        executed = [e.payload_id for e in events if e.status == "executed"]
        assert set(ids) <= set(executed) and len(executed) == len(set(executed))
    common = min(n.ledger.storage.lane_height() for n in nodes)
    hashes = {n.ledger.storage.lane_hash_at(common) for n in nodes}
    assert len(hashes) == 1 and None not in hashes


# --------------------------------------------------------------------------- fetch


def test_a_lane_block_missing_at_one_node_is_fetched_from_a_voter(tmp_path: Path) -> None:
    """Node 3 never receives lane 0's broadcasts: lane 0's blocks are certified by the
    others (f + 1 = 2 votes), cut, and node 3 fetches them from a PoA signer, stores them,
    and decodes every payload in the same order as everyone else."""

    async def scenario() -> None:
        configs = _net(tmp_path)
        nodes = [build_runtime(c, load_key(c)) for c in configs]
        room = nodes[3].room
        assert room is not None
        dropped = 0
        receive = room.on_frame

        def lossy(peer: int, frame: bytes) -> str | None:
            nonlocal dropped
            message = decode_lane_message(frame[2:], room.max_message_bytes)
            if peer == 0 and isinstance(message, LaneBlockMessage):
                dropped += 1
                return "dropped by the test"
            return receive(peer, frame)

        room.on_frame = lossy  # type: ignore[method-assign]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await wait_until(lambda: min(n.ledger.finalized_height for n in nodes) >= 3, 20)
            targets = [(n.index, "127.0.0.1", n.rpc.port) for n in nodes]
            client = SednaClient(targets, policy=SednaPolicy(lanes="all"))
            ids = await send_payloads(client, [b"fetch-%d" % i + bytes(400) for i in range(12)], 40)
            assert len(ids) == 12
            assert await wait_until(
                lambda: all(n.lanes.tracker.counts["executed"] >= 12 for n in nodes), 20
            )
            assert dropped > 0
            layer = room.layer
            assert layer.stats.fetches_sent > 0 and layer.stats.fetched_blocks > 0
            assert layer.finalized_cut[0].height > 0  # lane 0 was cut and finalized here
            # the fetched blocks are durable (served from storage to the next asker)
            tip = layer.finalized_cut[0]
            assert room.stored_block(tip.digest) is not None
            _same_order(nodes, ids)
            await client.close()
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- censoring leader


@pytest.mark.parametrize("mode", MODES)
def test_a_leader_that_omits_lane_tips_only_delays(tmp_path: Path, mode: str) -> None:
    """Node 2 leads every fourth round and leaves out every other lane (certified: keeps
    the parent's tips; carried: omits their lane blocks). Every payload still executes on
    every node, in one order."""

    async def scenario() -> None:
        configs = _net(
            tmp_path, dissemination=mode, node_test={2: {"byzantine": "drop_lane_blocks"}}
        )
        nodes = [build_runtime(c, load_key(c)) for c in configs]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await wait_until(lambda: min(n.ledger.finalized_height for n in nodes) >= 3, 20)
            targets = [(n.index, "127.0.0.1", n.rpc.port) for n in nodes]
            client = SednaClient(targets, policy=SednaPolicy(lanes="all"))
            censor = nodes[2]

            def omitted() -> int:
                if mode == "certified":
                    return censor.room.tips_omitted
                return censor.lanes.counters.lane_blocks_omitted

            ids: list[bytes] = []
            # batches until the censor has led with something to leave out (bounded)
            for batch in range(20):
                if batch >= 4 and omitted() > 0:
                    break
                payloads = [b"censor-%d-%d" % (batch, i) + bytes(300) for i in range(4)]
                ids += await send_payloads(client, payloads, 40)
            assert omitted() > 0
            assert await wait_until(
                lambda: all(n.lanes.tracker.counts["executed"] >= len(ids) for n in nodes), 20
            )
            if mode == "certified":
                assert all(n.room.tips_omitted == 0 for n in nodes if n is not censor)
            _same_order(nodes, ids)
            await client.close()
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- block validity


@pytest.mark.parametrize("poa_signatures", ["bls", "ed25519"])
def test_certified_nodes_refuse_a_cut_without_a_valid_poa_or_below_its_parent(
    tmp_path: Path, poa_signatures: str
) -> None:
    """The core's block validator as the assembly wires it (CUT-POA, CUT-SLOT, and
    CUT-MONOTONE through B-APP-LINK), and the availability frame tag on the wire, with
    either PoA format."""
    configs = _net(tmp_path, poa_signatures=poa_signatures)
    keys = [load_key(c) for c in configs]
    runtime = build_runtime(configs[0], keys[0])
    try:
        room = runtime.room
        assert room is not None
        core = runtime.core
        validate = core._block_validator.validate
        link = core._link_validator
        assert link is not None  # B-APP-LINK is wired: CUT-MONOTONE is enforced
        poa = room.cut_validator.poa
        assert poa is room.layer.poa and poa.name == poa_signatures
        if poa_signatures == "bls":
            vote_keys = [poa.scheme.keypair(k.seed) for k in keys]
            signature_bytes = 96
        else:
            vote_keys, signature_bytes = keys, 64

        def tip(height: int, slot: int) -> TipRef:
            return TipRef(lane=1, height=height, digest=bytes([height]) * 32, slot=slot)

        def certified(ref: TipRef, signers: tuple[int, ...]) -> LaneTip:
            votes = {i: poa.sign_vote(vote_keys[i], i, ref).signature for i in signers}
            return LaneTip(ref, poa.build(votes))

        def block(height: int, tips: list[LaneTip]):
            body = BlockBody(build_cut_payload([b"tx"], tips))
            return stand_in_header(height, 0, body), body

        good = certified(tip(1, 3), (1, 2))  # f + 1 = 2 of 4
        assert validate(*block(5, [good]))
        # rule CUT-POA: a PoA short of f + 1 stake, or with a forged signature
        assert not validate(*block(5, [certified(tip(1, 3), (1,))]))
        zeroed = (bytes(signature_bytes), *good.poa.signatures[1:])
        forged = LaneTip(good.tip, PoA(good.poa.signers, zeroed))
        assert not validate(*block(5, [forged]))
        # a PoA of the other format is refused
        other = LaneTip(good.tip, PoA(good.poa.signers, (bytes(160 - signature_bytes),) * 2))
        assert not validate(*block(5, [other]))
        # the PoA of another tip does not certify this one
        assert not validate(*block(5, [LaneTip(tip(2, 3), good.poa)]))
        # rule CUT-SLOT: contents fixed at slot s are cited from height s + 2 on
        assert not validate(*block(4, [good]))
        # rule CUT-MONOTONE (the parent's cut): never below, never a new tip without a PoA
        higher = certified(tip(2, 4), (2, 3))
        parent = block(6, [higher])[1]
        assert link(parent, *block(7, [good])) is False
        assert link(parent, *block(7, [LaneTip(higher.tip)])) is True
        assert link(parent, *block(7, [])) is False  # a lane of the parent's cut dropped
        assert link(block(6, [])[1], *block(7, [LaneTip(higher.tip)])) is False
        frame = encode_availability_frame(LaneTipMessage(good))
        assert frame[0] == AVAILABILITY_FRAME_TAG  # never a consensus or carried-lane frame
        assert AVAILABILITY_FRAME_TAG not in (WIRE_VERSION, LANE_FRAME_TAG)
    finally:
        runtime.ledger.storage.close()


# --------------------------------------------------------------------------- the switch


def test_dissemination_config_key_and_cli_flag(tmp_path: Path) -> None:
    configs = _net(tmp_path, dissemination="carried")
    assert configs[0].lanes.dissemination == "carried"
    assert _net(tmp_path / "default")[0].lanes.dissemination == "certified"
    base = {
        "node": {"index": 0, "data_dir": "d", "key_file": "k.toml"},
        "network": {"listen_port": 9000, "rpc_port": 9001},
        "consensus": {"vote_pace_ms": 20.0},
        "mempool": {},
        "validators": [
            {
                "index": 0,
                "public_key": "00" * 32,
                "host": "127.0.0.1",
                "port": 9000,
                **aggregate_fields(KeyPair.from_seed(bytes(32))),
            }
        ],
    }
    lanes = parse_config(base, tmp_path / "c.toml").lanes
    assert (lanes.dissemination, lanes.poa_signatures) == ("certified", "bls")
    with pytest.raises(ConfigError, match=r"lanes\.dissemination"):
        parse_config({**base, "lanes": {"dissemination": "relayed"}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"lanes\.mode"):
        parse_config({**base, "lanes": {"mode": "carried"}}, tmp_path / "c.toml")
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "testnet", "run", "--dissemination", "relayed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--dissemination must be one of certified, carried" in result.stderr


# --------------------------------------------------------------------------- restart


def test_a_restart_behind_the_finalized_chain_feeds_the_missing_cuts_to_the_layer(
    tmp_path: Path,
) -> None:
    """A node stopped when its tracker had recorded only up to R < F (the state a kill
    between finality and tracking leaves): on restart the layer starts from the cut of
    block R and stored lane blocks, heights R+1..F are fed to it as finalized cuts, and
    the tracker ends with the same decisions and hashes, none executed twice."""

    async def scenario() -> None:
        configs = _net(tmp_path)
        nodes = [build_runtime(c, load_key(c)) for c in configs]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await wait_until(lambda: min(n.ledger.finalized_height for n in nodes) >= 3, 20)
            targets = [(n.index, "127.0.0.1", n.rpc.port) for n in nodes]
            client = SednaClient(targets, policy=SednaPolicy(lanes="all"))
            ids: list[bytes] = []
            for batch in range(3):  # payloads spread over many heights
                ids += await send_payloads(
                    client, [b"late-%d-%d" % (batch, i) + bytes(200) for i in range(4)], 40
                )
            assert await wait_until(
                lambda: all(n.lanes.tracker.counts["executed"] >= len(ids) for n in nodes), 20
            )
            victim = nodes[1]
            victim.stop()
            await tasks[1]
            storage = Storage(victim.config.node.data_dir)
            decided = storage.lane_events(1, 10**9)
            full = storage.lane_height()
            first_decided = min(e.height for e in decided)
            back = first_decided - 1  # forget every decision: R below the first one
            storage._db.execute("DELETE FROM lane_heights WHERE height > ?", (back,))
            storage._db.execute("DELETE FROM lane_events WHERE height > ?", (back,))
            storage.close()
            restarted = build_runtime(victim.config, load_key(victim.config))
            assert restarted.room is not None and restarted.room.recovered_height == back
            tasks[1] = asyncio.create_task(restarted.run())
            nodes[1] = restarted
            assert await wait_until(lambda: restarted.lanes.tracker_height >= full, 30)
            assert restarted.lane_tracker.error is None
            assert restarted.room.layer.finalized_height >= full
            again = restarted.ledger.storage.lane_events(1, 10**9)
            assert [(e.payload_id, e.height, e.position) for e in again[: len(decided)]] == [
                (e.payload_id, e.height, e.position) for e in decided
            ]
            _same_order(nodes, ids)
            await client.close()
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- Byzantine lanes


def test_a_byzantine_lane_that_equivocates_or_forges_gets_no_second_vote(tmp_path: Path) -> None:
    """Lane 1's validator (its real authenticated connection) sends node 2 two different
    blocks at one height, a block signed with another key, and relays lane 0's block:
    node 2 votes for the first block only (AV-ONCE), counts the equivocation, drops the
    forgery (AV-VERIFY) and the relay (AV-FROM), and stores only what it voted for."""

    async def scenario() -> None:
        configs = _net(tmp_path)
        keys = [load_key(c) for c in configs]
        nodes = [build_runtime(c, k) for c, k in zip(configs, keys, strict=True)]
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await wait_until(lambda: min(n.ledger.finalized_height for n in nodes) >= 3, 20)
            target = nodes[2].room
            assert target is not None
            scheme = target.cut_validator.scheme
            params = nodes[2].lanes.params
            sender = derive_keys(1, b"tests/certified-node/sender")[0]
            slot = target.layer.known_height + 3
            encoded = encode_payload(
                params, bytes(900), bytes(32), sender.public, expiry_slot=slot + 100
            )

            def entry(bundle: int, lane: int, at: int) -> LaneEntry:
                ticket = make_ticket(encoded.commitment_id, lane, at, bundle, 1)
                return LaneEntry(encoded.bundles[bundle], sign_ticket(scheme, sender, ticket))

            def block(key_of: int, lane: int, height: int, bundle: int, parent=ZERO_DIGEST):
                return sign_chain_block(
                    scheme,
                    keys[key_of],
                    lane=lane,
                    height=height,
                    parent=parent,
                    slot=slot + height - 1,
                    entries=(entry(bundle, lane, slot + height - 1),),
                )

            first, second = block(1, 1, 1, 0), block(1, 1, 1, 1)
            # lane 1's next block, signed with validator 0's key
            forged = block(0, 1, 2, 2, parent=chain_block_digest(first))
            relayed = block(0, 0, 1, 3)  # lane 0's block, sent by validator 1
            for message in (first, second, forged, relayed):
                frame = encode_availability_frame(LaneBlockMessage(message))
                nodes[1].router.send_frame(2, frame, "LaneBlockMessage")
            layer = target.layer
            assert await wait_until(lambda: layer.stats.equivocations == 1, 10)
            assert await wait_until(lambda: sum(layer.stats.dropped.values()) >= 2, 10)
            assert layer.stats.dropped["invalid lane block: bad lane block signature"] == 1
            assert layer.stats.dropped["lane block relayed"] == 1
            digest = chain_block_digest(first)
            assert layer.lanes[1].voted[1] == digest  # AV-ONCE: the first block's vote only
            assert target.stored_block(digest) == first
            assert target.stored_block(chain_block_digest(second)) is None
            assert target.stored_block(chain_block_digest(forged)) is None
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
