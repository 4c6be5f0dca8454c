"""The scenario TOML contract: every key of issue 3, the documented extras, strict errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from netsim.faults import ClockOffset, Crash, Pause
from netsim.network import Latency
from netsim.scenario import ScenarioError, load_scenario, parse_scenario_text

ISSUE_EXAMPLE = """
protocol = "monadbft"
validators = 4
seed = 1
until_ms = 20000
until_blocks = 50
[network]
latency_ms = [1, 20]
loss = 0.0
delta_ms = 100
[[partition]]
groups = [[0, 1], [2, 3]]
from_ms = 1000
to_ms = 4000
[[crash]]
node = 2
at_ms = 0
restart_ms = 5000
[[byzantine]]
node = 1
behaviour = "equivocate"
rounds = [5]
"""


def test_the_issue_example_parses_to_what_it_says() -> None:
    s = parse_scenario_text(ISSUE_EXAMPLE)
    assert (s.protocol, s.validators, s.seed, s.until_ms, s.until_blocks) == (
        "monadbft",
        4,
        1,
        20000.0,
        50,
    )
    assert s.stakes == (1, 1, 1, 1)
    assert s.network.latency == Latency("uniform", 1.0, 20.0)
    assert s.network.loss == 0.0 and s.delta_ms == 100.0
    (partition,) = s.network.partitions
    assert partition.groups == (frozenset({0, 1}), frozenset({2, 3}))
    assert (partition.from_ms, partition.to_ms) == (1000.0, 4000.0)
    assert s.faults == (Crash(node=2, at_ms=0.0, restart_ms=5000.0),)
    (byz,) = s.byzantine
    assert (byz.node, byz.behaviour, byz.rounds) == (1, "equivocate", frozenset({5}))


def test_extras_parse() -> None:
    s = parse_scenario_text(
        """
        validators = 7
        stake = [1, 2, 3, 4, 5, 6, 7]
        protocol = "vanilla"
        scheme = "ed25519"
        schedule = "weighted"
        payload_bytes = 64
        tie_break = "random"
        liveness_ms = 9000
        description = "x"
        [core]
        vote_pace_ms = 50
        round_timeout_ms = 700
        timeout_backoff = 1.5
        max_round_timeout_ms = 5000
        [network]
        latency_ms = [2, 400]
        latency_model = "pareto"
        latency_shape = 1.3
        duplicate = 0.1
        reorder = 0.2
        reorder_ms = 30
        [[link]]
        src = 1
        message = "vote"
        loss = 1.0
        to_ms = 500
        [[link]]
        dst = 3
        latency_ms = 50
        [[crash]]
        node = 2
        at_round = 5
        restart_after_ms = 300
        [[pause]]
        node = 3
        from_ms = 10
        to_ms = 20
        [[clock]]
        node = 4
        offset_ms = -25
        [[byzantine]]
        node = 0
        behaviour = "equivocate"
        targets = [3, 4]
        """
    )
    assert s.stakes == (1, 2, 3, 4, 5, 6, 7) and s.scheme == "ed25519"
    assert (s.vote_pace_ms, s.round_timeout_ms, s.timeout_backoff) == (50, 700, 1.5)
    assert s.network.latency == Latency("pareto", 2, 400, 1.3)
    assert s.network.links[0].message == "vote" and s.network.links[0].to_ms == 500
    assert s.network.links[1].latency == Latency("constant", 50, 50)
    assert s.network.links[1].to_ms == math.inf
    assert Crash(node=2, at_round=5, restart_after_ms=300) in s.faults
    assert Pause(3, 10, 20) in s.faults and ClockOffset(4, -25) in s.faults
    assert s.byzantine[0].targets == (3, 4) and s.byzantine[0].rounds is None


def test_minimal_scenario_takes_defaults() -> None:
    s = parse_scenario_text("validators = 1")
    assert (s.protocol, s.seed, s.until_ms, s.until_blocks, s.scheme) == (
        "monadbft",
        1,
        20000.0,
        None,
        "trusted",
    )
    assert s.network.latency == Latency("constant", 1, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "validators: required key is missing"),
        ("validators = 4\ncolour = 1", "colour: unknown key"),
        ("validators = 4\n[network]\njitter = 1", "network.jitter: unknown key"),
        ("validators = 4\n[lanes]\nk = 1", "lanes.k: unknown key"),
        ("validators = 0", "validators: must be in [1, 1024]"),
        ("validators = 'four'", "validators: expected an integer, got a string"),
        ("validators = true", "validators: expected an integer, got a boolean"),
        ("validators = 4\nprotocol = 'pbft'", "protocol: unknown value 'pbft'"),
        ("validators = 4\nstake = [1, 1]", "stake: has 2 entries but validators = 4"),
        ("validators = 2\nstake = [1, 0]", "stake[1]: must be in"),
        ("validators = 4\nuntil_ms = 0", "until_ms: must be > 0"),
        ("validators = 4\nuntil_ms = -5", "until_ms: must be > 0"),
        ("validators = 4\nuntil_blocks = 0", "until_blocks: must be in [1,"),
        ("validators = 4\nseed = -1", "seed: must be in [0,"),
        ("validators = 4\nnetwork = 3", "network: expected a table, got int"),
        ("validators = 4\n[network]\nlatency_ms = [5, 1]", "network.latency_ms: needs lo <= hi"),
        ("validators = 4\n[network]\nlatency_ms = [1, 2, 3]", "network.latency_ms: expected one"),
        ("validators = 4\n[network]\nlatency_ms = 'fast'", "network.latency_ms: expected a number"),
        ("validators = 4\n[network]\nloss = 1.5", "network.loss: must be >= 0.0 and <= 1.0"),
        ("validators = 4\n[network]\ndelta_ms = 0", "network.delta_ms: must be > 0"),
        ("validators = 4\n[network]\nreorder = 0.5", "network.reorder_ms: must be > 0"),
        (
            "validators = 4\n[network]\nlatency_ms = 5\nlatency_model = 'pareto'",
            "needs [scale, cap]",
        ),
        (
            "validators = 4\n[[partition]]\ngroups = [[0, 9]]",
            "partition[0].groups[0][1]: must be in",
        ),
        (
            "validators = 4\n[[partition]]\ngroups = [[0, 1], [1]]",
            "partition[0].groups: node 1 is in two",
        ),
        (
            "validators = 4\n[[partition]]\ngroups = [[0]]\nfrom_ms = 5\nto_ms = 5",
            "partition[0].to_ms: must be later",
        ),
        (
            "validators = 4\n[[partition]]\nfrom_ms = 5",
            "partition[0].groups: required key is missing",
        ),
        (
            "validators = 4\n[[partition]]\ngroups = [[0]]\nuntil = 3",
            "partition[0].until: unknown key",
        ),
        ("validators = 4\npartition = 3", "partition: expected an array of tables"),
        ("validators = 4\n[[crash]]\nnode = 4\nat_ms = 1", "crash[0].node: must be in [0, 3]"),
        (
            "validators = 4\n[[crash]]\nnode = 1",
            "crash[0]: a crash needs exactly one of at_ms or at_round",
        ),
        (
            "validators = 4\n[[crash]]\nnode = 1\nat_ms = 10\nrestart_ms = 5",
            "crash[0]: restart_ms (5.0) must be later",
        ),
        (
            "validators = 4\n[[crash]]\nnode = 1\nat_round = 3\nrestart_ms = 50",
            "crash[0]: restart_ms needs at_ms",
        ),
        (
            "validators = 4\n[[pause]]\nnode = 1\nfrom_ms = 10\nto_ms = 1",
            "pause[0].to_ms: must be later",
        ),
        ("validators = 4\n[[clock]]\nnode = 1", "clock[0].offset_ms: required key is missing"),
        (
            "validators = 4\n[[byzantine]]\nnode = 1\nbehaviour = 'evil'",
            "byzantine[0].behaviour: unknown value 'evil'",
        ),
        (
            "validators = 4\n[[byzantine]]\nbehaviour = 'silent'",
            "byzantine[0].node: required key is missing",
        ),
        (
            "validators = 4\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'\nrounds = []",
            "byzantine[0].rounds: must not be empty",
        ),
        (
            "validators = 4\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'\nrounds = [2, 2]",
            "byzantine[0].rounds: entries must be distinct",
        ),
        (
            "validators = 4\n[[byzantine]]\nnode = 1\nbehaviour = 'equivocate'\ntargets = [1]",
            "byzantine[0].targets: must not contain",
        ),
        (
            "validators = 7\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'",
            "byzantine: node 1 lists behaviour 'silent' twice",
        ),
        (
            "validators = 4\n[[byzantine]]\nnode = 1\nbehaviour = 'silent'\n[[byzantine]]\nnode = 2\nbehaviour = 'silent'",
            "byzantine: Byzantine stake 2 of 4 is not below one third",
        ),
        ("validators = 4\n[[link]]\nmessage = 'gossip'", "link[0].message: unknown value 'gossip'"),
        ("validators = 4\n[[link]]\nloss = 2", "link[0].loss: must be >= 0.0 and <= 1.0"),
        ("validators = 4\n[core]\nvote_pace = 1", "core.vote_pace: unknown key"),
        ("validators = 4\n[core]\ntimeout_backoff = 0.5", "core.timeout_backoff: must be >= 1.0"),
        ("validators = 4\nscheme = 'rsa'", "scheme: unknown value 'rsa'"),
        ("validators = 4 = 5", "not valid TOML"),
    ],
)
def test_bad_scenarios_name_the_key_and_why(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario_text(text)
    assert expected in str(info.value)


def test_load_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(bad)


def test_shipped_scenarios_all_parse() -> None:
    folder = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
    paths = sorted(folder.glob("*.toml"))
    assert len(paths) >= 5
    for path in paths:
        assert load_scenario(path).validators >= 1
