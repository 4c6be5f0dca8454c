"""Sedna lanes inside netsim (issue 4): the [lanes] contract, report, invariants, behaviours."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consensus.events import CommitBlocks
from mechanism.delay import p_delay
from mechanism.params import SednaParams
from netsim.engine import Observer, Simulator
from netsim.lanes import ExecutionOrderChecker, LaneSim
from netsim.runner import Run, run_scenario
from netsim.scenario import LanesConfig, ScenarioError, load_scenario, parse_scenario_text
from node.cli import main
from tests.netsim.lane_modes import in_mode, modes, scenario_in_mode

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
LANE_REPORT_KEYS = {
    "payloads_submitted",
    "payloads_decoded",
    "execution_order_hash",
    "decode_slot_delay",
    "tickets_redeemed",
    "bundles_rejected",
}

ISSUE_EXAMPLE = """
validators = 4
[lanes]
payloads = 20          # payloads each sender submits over the run
payload_bytes = 2048
kappa = 8
bundles_per_slot = 4   # m
policy = "fresh"       # "all" | "fresh" | "fixed"
ratchet = false
"""

SMALL = """
validators = 4
seed = 5
until_ms = 30000
until_blocks = 22
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
payloads = 6
payload_bytes = 1024
kappa = 6
bundles_per_slot = 3
senders = 2
"""


def lanes_run(text: str, **kwargs: Any) -> Run:
    return run_scenario(parse_scenario_text(text), **kwargs)


def same_height_same_hash(report: dict[str, Any]) -> bool:
    """Nodes that executed the same number of heights report the same hash and count."""
    by_height: dict[int, set[tuple[str, int]]] = {}
    for node, height in report["lanes"]["execution_height"].items():
        entry = (report["execution_order_hash"][node], report["payloads_decoded"][node])
        by_height.setdefault(height, set()).add(entry)
    return all(len(entries) == 1 for entries in by_height.values())


# ----------------------------------------------------------------------------- contract


def test_the_issue_example_parses_and_defaults_are_the_documented_ones() -> None:
    lanes = parse_scenario_text(ISSUE_EXAMPLE).lanes
    assert lanes == LanesConfig(
        payloads=20,
        payload_bytes=2048,
        kappa=8,
        bundles_per_slot=4,
        policy="fresh",
        ratchet=False,
    )
    assert parse_scenario_text("validators = 4\n[lanes]\n").lanes == LanesConfig()
    assert parse_scenario_text("validators = 4").lanes is None
    params = lanes.lane_params()
    assert params.symbols_per_bundle >= 3  # κ = 8 needs s_b > h = 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[lanes]\ncolour = 1", "lanes.colour: unknown key"),
        ("[lanes]\npolicy = 'some'", "lanes.policy: unknown value 'some'"),
        ("[lanes]\nratchet = 1", "lanes.ratchet: expected a boolean"),
        ("[lanes]\nkappa = 0", "lanes.kappa: must be in [1, 4096]"),
        ("[lanes]\nbundles_per_slot = 5", "lanes.bundles_per_slot: must be in [1, 4]"),
        ("[lanes]\npayload_bytes = 2048\nkappa = 4000", "lanes.kappa: no symbol/bundle size"),
        ("[lanes]\nsending = 'twice'", "lanes.sending: unknown value"),
        ("[lanes]\nlookahead_slots = 8", "lanes.lookahead_slots: must be in [1, 7]"),
        ("[lanes]\nloss = 1.5", "lanes.loss: must be >= 0.0 and <= 1"),
        ("[lanes]\ndissemination = 'gossip'", "lanes.dissemination: unknown value 'gossip'"),
        ("[lanes]\ncorrupt_senders = [1]", "lanes.corrupt_senders[0]: must be in [0, 0]"),
        ("lanes = 3", "lanes: expected a table"),
        (
            "[[byzantine]]\nnode = 1\nbehaviour = 'withhold_bundles'",
            "byzantine[0].behaviour: 'withhold_bundles' needs [lanes]",
        ),
        (
            "[lanes]\n[[byzantine]]\nnode = 1\nbehaviour = 'withhold_bundles'\nrounds = [2]",
            "byzantine[0].rounds: not used by 'withhold_bundles'",
        ),
        (
            "[lanes]\nsenders = 2\n[[byzantine]]\nnode = 1\nbehaviour = 'withhold_bundles'\n"
            "target_senders = [2]",
            "byzantine[0].target_senders[0]: must be in [0, 1]",
        ),
        (
            "[lanes]\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'\ntarget_senders = [0]",
            "byzantine[0].target_senders: unknown key",
        ),
    ],
)
def test_bad_lanes_input_names_the_key(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario_text("validators = 4\n" + text)
    assert expected in str(error.value)


def test_default_m_must_fit_the_lane_count() -> None:
    with pytest.raises(ScenarioError, match=r"lanes\.bundles_per_slot: 4 is more than the 3"):
        parse_scenario_text("validators = 3\n[lanes]\n")
    assert parse_scenario_text("validators = 3\n[lanes]\npolicy = 'all'\n").lanes is not None


def test_shipped_lane_scenarios_parse() -> None:
    for name in ("lanes_honest", "lanes_withholding", "lanes_ratchet"):
        scenario = load_scenario(SCENARIOS / f"{name}.toml")
        assert scenario.lanes is not None
    cartel = load_scenario(SCENARIOS / "lanes_withholding.toml").byzantine
    assert {spec.behaviour for spec in cartel} == {"withhold_bundles"}


# ----------------------------------------------------------------------------- honest


@modes
def test_honest_lanes_decode_everything_at_t_star_cli_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "honest.toml"
    path.write_text(in_mode((SCENARIOS / "lanes_honest.toml").read_text(), mode))
    code = main(["sim", "run", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["lanes"]["dissemination"] == mode
    assert code == 0 and report["violations"] == []
    assert set(report) >= LANE_REPORT_KEYS
    lanes = report["lanes"]
    assert lanes["slack"] > 0  # Δ > 0, q = 1, no cartel
    submitted = report["payloads_submitted"]
    assert submitted == 40
    assert set(report["decode_slot_delay"].values()) == {0}
    assert set(report["payloads_decoded"].values()) == {submitted}
    assert len(set(report["execution_order_hash"].values())) == 1
    assert report["bundles_rejected"] == {"insufficient_balance": 0}
    # every bundle sent was redeemed in its slot (senders keep sending during the lag)
    assert report["tickets_redeemed"] == lanes["bundles_sent"] > submitted * lanes["kappa"]
    if mode == "certified":  # every lane block was cut 2 or 3 heights after its slot
        assert report["poa_formed"] > 0 and set(lanes["lane_block_cut_delay"]) <= {"2", "3"}
        assert set(report["cut_delay_slots"].values()) <= {2, 3}
    else:
        assert report["poa_formed"] == 0 and set(report["cut_delay_slots"].values()) == {0}


@modes
def test_same_seed_same_trace_hash_with_lanes(mode: str) -> None:
    first = lanes_run(in_mode(SMALL, mode)).report()
    again = lanes_run(in_mode(SMALL, mode)).report()
    other = lanes_run(in_mode(SMALL, mode), seed=6).report()
    assert first == again
    assert first["trace_hash"] == again["trace_hash"]
    assert other["trace_hash"] != first["trace_hash"]
    assert other["execution_order_hash"] != first["execution_order_hash"]  # other payloads


@modes
def test_late_bundles_are_rejected_as_expired_and_not_redeemed(mode: str) -> None:
    # Slot 1 is sealed at t = 0 by its leader (carried) or when block 1 reaches a lane
    # (certified), before most bundles can arrive.
    run = lanes_run(in_mode(SMALL.replace("senders = 2", "senders = 2\nfirst_slot = 1"), mode))
    report = run.report()
    assert report["violations"] == []
    assert report["bundles_rejected"].get("expired_ticket", 0) > 0
    lanes = report["lanes"]
    assert report["tickets_redeemed"] < lanes["bundles_sent"]
    assert set(report["payloads_decoded"].values()) == {report["payloads_submitted"]}


# ----------------------------------------------------------------------------- determinism


class TamperAt(Observer):
    """Mutation: corrupts one node's execution-order chain once it finalized `height`."""

    def __init__(self, node: int, height: int):
        self.node, self.height = node, height

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        if node != self.node or type(command) is not CommitBlocks:
            return
        if any(b.header.seq_num == self.height for b in command.blocks):
            lanes = next(o for o in sim.observers if isinstance(o, LaneSim))
            lanes.nodes[node].tracker.execution_order_hash = bytes(32)


def test_execution_order_checker_flags_divergence() -> None:
    checker = ExecutionOrderChecker()
    checker.record(0, 1, b"a" * 32)
    checker.record(1, 1, b"a" * 32)
    assert checker.violations == [] and checker.compared == 1
    checker.record(2, 1, b"b" * 32)
    assert checker.violation_count == 1
    assert checker.violations[0].startswith("LANES execution order diverged at height 1")


@modes
def test_a_diverging_node_is_a_reported_violation(mode: str) -> None:
    report = lanes_run(in_mode(SMALL, mode), extra_observers=[TamperAt(1, 8)]).report()
    assert any(v.startswith("LANES execution order diverged") for v in report["violations"])
    assert report["violation_count"] >= 1
    clean = lanes_run(in_mode(SMALL, mode)).report()
    assert clean["violations"] == [] and clean["lanes"]["execution_heights_compared"] > 0


CHAOS = """
validators = 4
seed = 11
until_ms = 60000
until_blocks = 30
tie_break = "random"
[network]
latency_ms = [1, 40]
reorder = 0.3
reorder_ms = 60
delta_ms = 150
[[partition]]
groups = [[0, 1], [2, 3]]
from_ms = 400
to_ms = 1400
[[crash]]
node = 3
at_ms = 1600
restart_ms = 2600
[lanes]
payloads = 8
payload_bytes = 1024
kappa = 6
bundles_per_slot = 3
senders = 2
"""


@modes
def test_execution_order_is_identical_under_reordering_partitions_and_restarts(mode: str) -> None:
    run = lanes_run(in_mode(CHAOS, mode))
    report = run.report()
    assert report["violations"] == []
    lanes = report["lanes"]
    assert lanes["broken_trackers"] == {}
    assert lanes["execution_heights_compared"] >= 3 * 25
    decided = [v for v in lanes["payload_status"].values() if v == "executed"]
    assert len(decided) >= 8
    assert same_height_same_hash(report)
    # the restarted node rebuilt its tracker from its disk and caught up
    assert run.sim.hosts[3].restarts == 1
    assert lanes["execution_height"]["3"] >= 25


@modes
def test_corrupt_sender_is_rejected_identically_on_every_node_without_fork(mode: str) -> None:
    run = lanes_run(
        in_mode(SMALL.replace("senders = 2", "senders = 2\ncorrupt_senders = [1]"), mode)
    )
    report = run.report()
    assert report["violations"] == [] and report["agreement"] is True
    status = report["lanes"]["payload_status"]
    assert {v for k, v in status.items() if k.startswith("s1/")} == {"rejected"}
    assert {v for k, v in status.items() if k.startswith("s0/")} == {"executed"}
    assert all(report["decode_slot_delay"][k] is None for k in status if k.startswith("s1/"))
    counts = {i: dict(node.tracker.counts) for i, node in run.lanes.nodes.items()}
    assert set(map(str, counts.values())) == {str({"executed": 6, "rejected": 6, "expired": 0})}
    assert same_height_same_hash(report)
    assert report["bundles_rejected"] == {
        "insufficient_balance": 0
    }  # a valid commitment over junk passes admission


# ----------------------------------------------------------------------------- withholding


def cartel_holdings(run: Run) -> dict[str, int]:
    """Bundles the cartel withheld within each payload's honest horizon."""
    lanes = run.lanes
    per_cid = Counter()
    horizon = {r.cid: r.first_slot + lanes.t_star - 1 for r in lanes.records if r.cid}
    for _lane, slot, cid, _bundle in lanes.pool.withheld:
        if slot <= horizon.get(cid, -1):
            per_cid[cid] += 1
    return {r.label: per_cid[r.cid] for r in lanes.records if r.cid}


@modes
def test_withholding_delays_exactly_when_holdings_exceed_slack_and_matches_the_model(
    mode: str,
) -> None:
    base = scenario_in_mode(load_scenario(SCENARIOS / "lanes_withholding.toml"), mode)
    assert base.lanes is not None
    delayed = total = 0
    for seed in (1, 2, 3):
        run = run_scenario(base, seed=seed)
        report = run.report()
        assert report["violations"] == [] and same_height_same_hash(report)
        slack = report["lanes"]["slack"]
        holdings = cartel_holdings(run)
        for label, delay in report["decode_slot_delay"].items():
            # q = 1: the chain is behind at t* iff the cartel holds more than the slack
            assert (delay is None or delay > 0) == (holdings[label] > slack), label
            delayed += delay is None or delay > 0
            total += 1
    model = p_delay(SednaParams(kappa=6, m=4, beta=2 / 7, lanes=7))
    assert total == 120
    assert abs(delayed / total - model) < 0.12, (delayed / total, model)


@modes
def test_targeted_withholding_only_touches_the_target_sender(mode: str) -> None:
    text = SMALL + '[[byzantine]]\nnode = 1\nbehaviour = "withhold_bundles"\ntarget_senders = [0]\n'
    run = lanes_run(in_mode(text, mode))
    report = run.report()
    assert report["violations"] == []
    targeted = {r.cid for r in run.lanes.records if r.sender == 0}
    withheld = {cid for _lane, _slot, cid, _b in run.lanes.pool.withheld}
    assert withheld and withheld <= targeted
    assert {lane for lane, *_ in run.lanes.pool.withheld} == {1}
    assert report["lanes"]["bundles_withheld"] == len(run.lanes.pool.withheld)


@modes
def test_ratchet_excludes_the_withholding_lanes(mode: str) -> None:
    """The shipped keep_redeemed ratchet: a withholding lane is addressed for d =
    feedback_slots slots (until its first miss is known) and never again; no honest
    lane is ever excluded (q = 1); fewer bundles are withheld than without a ratchet."""
    base = scenario_in_mode(load_scenario(SCENARIOS / "lanes_ratchet.toml"), mode)
    assert base.lanes is not None and base.lanes.effective_ratchet == "keep_redeemed"
    cartel = {spec.node for spec in base.byzantine}
    ratchet = run_scenario(base)
    plain = run_scenario(
        base.with_(lanes=dataclasses.replace(base.lanes, ratchet_policy=None, ratchet=False))
    )
    d = base.lanes.effective_feedback_slots
    slots_addressed: Counter[tuple[bytes, int]] = Counter()
    for lane, _slot, cid, _bundle in ratchet.lanes.pool.withheld:
        slots_addressed[(cid, lane)] += 1
    assert slots_addressed and max(slots_addressed.values()) <= d
    excluded_any = False
    for record in ratchet.lanes.records:
        assert record.outgoing is not None and record.decided_height is not None
        payload = record.outgoing.payloads[record.cid]
        assert payload.excluded <= cartel, record.label  # never an honest lane
        excluded_any |= bool(payload.excluded)
    assert excluded_any
    r, p = ratchet.report(), plain.report()
    assert r["violations"] == [] and p["violations"] == []
    # what the senders really know: finality (carried), PoAs two slots later (certified)
    assert r["lanes"]["feedback_slots"] == d == base.lanes.knowledge_lag_slots
    assert d == base.lanes.lookahead_slots + (2 if mode == "certified" else 0)
    assert r["lanes"]["bundles_withheld"] < p["lanes"]["bundles_withheld"]
    assert None not in r["decode_slot_delay"].values()


# ----------------------------------------------------------------------------- PoA formats


@pytest.mark.parametrize(
    ("scheme", "poa_signatures"),
    [("trusted", "bls"), ("trusted", "ed25519"), ("ed25519", "bls"), ("ed25519", "ed25519")],
)
def test_certified_lanes_decode_everything_with_either_poa_format(
    scheme: str, poa_signatures: str
) -> None:
    """`[lanes] poa_signatures`: real BLS with real Ed25519, the stand-in of the same
    sizes with `trusted`; every payload decodes on every node, in one order."""
    text = SMALL.replace("seed = 5\n", f'seed = 5\nscheme = "{scheme}"\n').replace(
        "[lanes]\n", f'[lanes]\npoa_signatures = "{poa_signatures}"\n'
    )
    run = lanes_run(text)
    report = run.report()
    assert report["violations"] == []
    assert report["poa_formed"] > 0
    assert set(report["payloads_decoded"].values()) == {report["payloads_submitted"]}
    assert len(set(report["execution_order_hash"].values())) == 1
    poa = run.lanes.poa
    assert poa.name == poa_signatures
    if poa_signatures == "bls":
        assert poa.scheme.name == ("bls" if scheme == "ed25519" else "bls-stand-in")


def test_aggregate_poas_shrink_the_leaders_upload() -> None:
    """Same run, same seed: only the PoA format differs, and the cuts the leaders send
    carry one 96-byte aggregate per certified tip instead of f+1 = 3 signatures of 64."""
    text = SMALL.replace("validators = 4\n", "validators = 7\n")
    upload = {}
    for kind in ("bls", "ed25519"):
        report = lanes_run(text.replace("[lanes]\n", f'[lanes]\npoa_signatures = "{kind}"\n'))
        report = report.report()
        assert set(report["payloads_decoded"].values()) == {report["payloads_submitted"]}
        upload[kind] = sum(report["leader_upload_bytes"].values())
    assert upload["bls"] < upload["ed25519"]
