"""Node main: wire the rooms of one validator from its config, and run it.

`build_runtime(config, key)` opens storage, restores the core, and builds the rooms
(`node/runtime.py` lists them); `run_node` runs one validator in this process until
SIGTERM/SIGINT. Only the CLI (and tests and benchmarks) import this module, and only this
module imports the test-only faults (`node/faults.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from consensus.core import ConsensusCore, CoreConfig
from consensus.crypto import KeyPair, scheme_by_name
from consensus.lanes.chain import AggregatePoa, Ed25519Poa
from consensus.lanes.ledger import Ledger as LanesLedger
from consensus.lanes.ledger import LedgerParams
from consensus.validators import ValidatorSet, schedule_by_name
from node import faults
from node.api_view import NodeView
from node.availability_room import AvailabilityRoom
from node.config import (
    NODE_ONLY_BEHAVIOURS,
    ConfigError,
    NodeConfig,
    aggregate_key_set,
    parse_byzantine_options,
)
from node.lane_tracker import LaneTracker
from node.lanes_node import NodeBlockValidator, NodeLanes
from node.ledger import ChainValidator, Ledger
from node.logs import get_logger, log
from node.mempool import Mempool, PlainPayloadValidator
from node.metrics import NodeMetrics
from node.router import Router
from node.rpc import RpcServer
from node.runtime import MAX_INBOX_EVENTS, EventQueue, NodeRuntime
from node.storage import Storage
from node.sync_server import SyncServer
from node.timers import Timers
from node.transport import PeerAddress, create_transport
from node.txforward import TxForwarder
from node.txpool import TxPool


class _FrameHandlerSlot:
    """The transport's frame callback, bound to the runtime once it exists."""

    def __init__(self) -> None:
        self.handler: Callable[[int, bytes], None] | None = None

    def __call__(self, peer: int, frame: bytes) -> None:
        assert self.handler is not None, "frames before the runtime was built"
        self.handler(peer, frame)


def availability_signing(
    config: NodeConfig, key: KeyPair, validators: ValidatorSet, scheme: Any
) -> dict[str, Any]:
    """The PoA format of `[lanes] poa_signatures` and this node's vote-signing key: BLS
    (its key derived from the node's seed, every validator's proof of possession checked
    again here) or Ed25519 (the node's key)."""
    if not config.lanes.aggregate():
        return {"poa": Ed25519Poa(validators, scheme), "vote_key": key}
    keys = aggregate_key_set(config.validators, config.consensus)  # rule POP
    own = keys.scheme.keypair(key.seed)
    if own.public != keys.publics[config.index]:
        raise ConfigError(
            f"key_file.secret_seed: its BLS key does not match "
            f"validators[{config.index}].bls_public_key"
        )
    return {"poa": AggregatePoa(validators, keys), "vote_key": own}


def build_runtime(
    config: NodeConfig,
    key: KeyPair,
    *,
    max_inbox_events: int = MAX_INBOX_EVENTS,
    exit_process: Callable[[int], None] = os._exit,
) -> NodeRuntime:
    """Every room of one validator, wired from its config (nothing started yet)."""
    index = config.index
    logger = get_logger()
    metrics = NodeMetrics()
    validators = ValidatorSet.from_keys(
        [v.public_key for v in config.validators], [v.stake for v in config.validators]
    )
    schedule = schedule_by_name(config.consensus.schedule, validators)
    # rule: every signature this node makes or checks is for its chain (consensus/crypto.py)
    scheme = scheme_by_name(config.consensus.signature_scheme, config.consensus.chain_id)
    m = config.mempool
    storage = Storage(config.node.data_dir)
    # A restarted lane never re-seals a slot it may have sealed before: sealing runs
    # at most SEAL_AHEAD_SLOTS past a voted block, and voted blocks are stored first.
    certified = config.lanes.dissemination == "certified"
    lanes = NodeLanes(
        index=index,
        key=key,
        scheme=scheme,
        validators=validators,
        schedule=schedule,
        # certified: the layer reopens the slots after its own chain's last block itself
        first_open_slot=storage.max_block_seq() + (1 if certified else 3),
        certified=certified,
        ledger=lanes_ledger(config),
    )
    recovered = storage.load_recovered()
    ledger = Ledger(
        storage,
        metrics,
        logger,
        max_block_txs=m.max_block_txs,
        max_tx_bytes=m.max_tx_bytes,
        persisted_safety=None if recovered is None else recovered.safety,
    )
    indexed = ledger.index_backlog()
    if indexed:
        log(logger, "tx_index_backfilled", heights=indexed)
    if recovered is not None:
        ledger.remember_recovered(recovered.blocks)
    mempool = Mempool(  # after the index: restored txs that are final are dropped
        max_txs=m.max_txs,
        max_tx_bytes=m.max_tx_bytes,
        max_block_txs=m.max_block_txs,
        max_block_bytes=m.max_block_bytes,
        storage=storage,
    )
    if mempool.restored_already_final:
        log(logger, "mempool_restored_final_dropped", txs=mempool.restored_already_final)
    on_frame = _FrameHandlerSlot()
    peers = {v.index: PeerAddress(v.index, v.host, v.port, v.public_key) for v in config.validators}
    transport = create_transport(
        config.network.transport,  # type: ignore[arg-type]
        index=index,
        key=key,
        listen_host=config.network.listen_host,
        listen_port=config.network.listen_port,
        peers=peers,
        on_frame=on_frame,
        chain_id=config.consensus.chain_id,
    )
    queue = EventQueue(metrics, logger, max_inbox_events)
    forwarder = TxForwarder(  # its router and round are wired once they exist
        index=index,
        leader_of=schedule.leader,
        validators=len(validators),
        send_frame=None,
        transport=transport,
        metrics=metrics,
        fanout=m.forward_fanout,
        max_frame_txs=m.max_block_txs,
    )
    txpool = TxPool(
        mempool=mempool,
        lanes=lanes,
        ledger=ledger,
        metrics=metrics,
        logger=logger,
        push_internal=queue.push_internal,
        forwarder=forwarder,
    )
    router = Router(
        index=index,
        transport=transport,
        metrics=metrics,
        logger=logger,
        push_internal=queue.push_internal,
        before_vote=txpool.lane_blocks_before_vote,
        log_votes=config.test.log_votes,
    )
    room = (
        AvailabilityRoom(
            lanes=lanes,
            key=key,
            scheme=scheme,
            validators=validators,
            storage=storage,
            router=router,
            metrics=metrics,
            logger=logger,
            **availability_signing(config, key, validators, scheme),
        )
        if certified
        else None
    )
    txpool.room = room
    # certified: cuts (CUT-FORM/POA/SLOT, CUT-MONOTONE as B-APP-LINK); carried: lane blocks
    lane_rules = room.cut_validator if room is not None else lanes.validator
    block_validator = ChainValidator(
        NodeBlockValidator(
            PlainPayloadValidator(
                m.max_block_txs, m.max_tx_bytes, m.max_block_bytes, lanes=lane_rules
            ),
            lanes,
        ),
        ledger,
    )
    c = config.consensus
    core_config = CoreConfig(
        protocol=c.protocol,  # type: ignore[arg-type]
        delta_ms=c.delta_ms,
        vote_pace_ms=c.vote_pace_ms,
        round_timeout_ms=c.round_timeout_ms,
        timeout_backoff=c.timeout_backoff,
        max_round_timeout_ms=c.max_round_timeout_ms,
        epoch=c.epoch,
    )
    core = ConsensusCore(
        config=core_config,
        validators=validators,
        schedule=schedule,
        index=index,
        key=key,
        scheme=scheme,
        block_validator=block_validator,
        recovered=recovered,
    )
    lanes.finalized_height = ledger.finalized_height
    lane_tracker = LaneTracker(
        lanes=lanes,
        storage=storage,
        metrics=metrics,
        logger=logger,
        finalized_height=ledger.finalized_height,
        room=room,
    )
    timers = Timers(queue.push_internal)
    sync_server = SyncServer(
        answer=ledger.answer_sync, send_frame=router.send_frame, metrics=metrics
    )
    runtime = NodeRuntime(
        config=config,
        core=core,
        queue=queue,
        ledger=ledger,
        txpool=txpool,
        lanes=lanes,
        lane_tracker=lane_tracker,
        room=room,
        router=router,
        timers=timers,
        sync_server=sync_server,
        transport=transport,
        metrics=metrics,
        logger=logger,
        recovered=recovered is not None,
    )
    on_frame.handler = runtime.on_frame
    forwarder.send_frame = router.send_frame
    forwarder.current_round = lambda: runtime.current_round
    view = NodeView(
        index=index,
        chain_id=config.consensus.chain_id,
        transport_name=config.network.transport,
        validators=len(validators),
        ledger=ledger,
        txpool=txpool,
        lanes=lanes,
        lane_tracker=lane_tracker,
        room=room,
        router=router,
        metrics=metrics,
        current_round=lambda: runtime.current_round,
        inbox_depth=lambda: len(queue.inbox),
        recovered=recovered is not None,
    )
    rpc = RpcServer(
        view,
        config.network.rpc_host,
        config.network.rpc_port,
        admin_enabled=config.network.admin_rpc,
        admin_token_file=config.network.admin_token_file,
        metrics=metrics,
    )
    runtime.attach_api(view, rpc)
    _install_faults(runtime, config, key, scheme, exit_process)
    return runtime


def lanes_ledger(config: NodeConfig) -> LanesLedger | None:
    """The lanes' ledger at genesis from `[ledger]` (None: the lanes charge nothing). A
    restarted node starts here too: its tracker replays the finalized chain."""
    section = config.ledger
    if section is None:
        return None
    params = LedgerParams(fee=section.fee, bounty=section.bounty)
    return LanesLedger.from_genesis(params, section.allocation())


def _install_faults(
    runtime: NodeRuntime,
    config: NodeConfig,
    key: KeyPair,
    scheme,
    exit_process: Callable[[int], None],
) -> None:
    """TEST ONLY: the `[test]` section's faults (none for a real node)."""
    test = config.test
    options = parse_byzantine_options(
        test.byzantine, test.byzantine_options, len(config.validators)
    )
    if test.byzantine == "silent" and "targets" not in options:
        faults.make_silent(runtime.router)
    elif test.byzantine == "double_vote":
        faults.send_conflicting_votes(runtime.router, runtime.index, key, scheme)
    elif test.byzantine == "malformed":
        runtime.background.append(lambda: faults.spray_malformed(runtime.router))
    elif test.byzantine == "drop_lane_blocks":
        faults.drop_lane_blocks(runtime.lanes, runtime.room)
    elif test.byzantine == "replay_txs":
        faults.replay_txs(runtime.txpool.mempool)
    elif test.byzantine == "withhold_bundles":
        faults.join_cartel(runtime, options, test.cartel_pool)
    elif test.byzantine and test.byzantine not in NODE_ONLY_BEHAVIOURS:
        runtime.core = faults.wrap_core(
            runtime.core, test.byzantine, options, runtime.index, key, scheme
        )
        faults.skip_safety_cover_check(runtime.ledger)
    if test.core_error_after_events:
        runtime.core = faults.FaultyCore(runtime.core, test.core_error_after_events)
    if test.crash_after_proposing_txs:
        runtime.after_batch = faults.CrashAfterProposingTxs(
            test.crash_after_proposing_txs, runtime.halt, runtime.log, exit_process
        )
    if test.crash_after_persist_safety:
        runtime.after_persist_safety = faults.CrashAfterPersistSafety(
            test.crash_after_persist_safety, runtime.log, exit_process
        )


# --------------------------------------------------------------------------- process entry


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_node(config: NodeConfig, key: KeyPair) -> int:
    """Run one validator in this process until SIGTERM/SIGINT. Returns the exit code."""
    import signal
    import sys

    from node.logs import setup_logging
    from node.storage import StorageError

    logger = setup_logging(
        config.node.log_level, node_index=config.index, log_file=config.node.log_file
    )

    async def main() -> int:
        try:
            runtime = build_runtime(config, key)
        except StorageError as exc:
            log(logger, "storage_error", logging.ERROR, error=str(exc))
            print(f"sedna node: storage error: {exc}", file=sys.stderr)
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runtime.stop)
        try:
            await runtime.run()
        except OSError as exc:
            log(logger, "startup_failed", logging.ERROR, error=str(exc))
            print(f"sedna node: cannot start: {exc}", file=sys.stderr)
            return 1
        if runtime.exit_code:
            print(
                f"sedna node: stopped by a fatal error (exit {runtime.exit_code}); "
                f"see the fatal_error record in the log",
                file=sys.stderr,
            )
        return runtime.exit_code

    profile_dir = os.environ.get("SEDNA_PROFILE_DIR")  # benchmark aid: cProfile this node
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                return runner.run(main())
        finally:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"node{config.index}.prof"))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())
