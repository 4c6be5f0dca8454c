"""The rule-coverage mutation matrix (netsim/mutants.py, `sedna sim mutants`).

Every TEST-ONLY rule switch must be killed: some test of the matrix selection fails when
its rule is off. CI runs a seeded sample of the switches; `-m slow` runs all of them
(about 30 minutes with two processes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consensus.mutations import CORE_SWITCHES, LEGACY, RULE_SWITCHES, VERIFIER_SWITCHES
from netsim.mutants import failed_tests, format_matrix, run_matrix, select
from node.cli import main as sedna

DOCS = Path(__file__).resolve().parents[2] / "docs"
CI_SAMPLE = 3
CI_SEED = 13


def test_every_switch_names_a_rule_of_the_protocol_docs_and_the_matrix_lists_it() -> None:
    protocol = (DOCS / "protocol.md").read_text()
    for name in (*VERIFIER_SWITCHES, *CORE_SWITCHES):
        assert f"**{name}**" in protocol, f"rule {name} is not named in docs/protocol.md"
    for name in LEGACY:
        assert f"`{name}`" in protocol
    matrix = (DOCS / "netsim.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", matrix, flags=re.MULTILINE))
    assert set(RULE_SWITCHES) <= listed, sorted(set(RULE_SWITCHES) - listed)


def test_selection_and_report_parsing() -> None:
    assert select(["T-SEQ", "TC9"]) == ["T-SEQ", "TC9"]
    sample = select(sample=5, seed=7)
    assert len(sample) == 5 == len(set(sample)) and sample == select(sample=5, seed=7)
    with pytest.raises(ValueError):
        select(["no-such-rule"])
    output = "x\nFAILED tests/a.py::test_b[p] - AssertionError: y\nERROR tests/c.py::test_d\n"
    assert failed_tests(output) == ["tests/a.py::test_b[p]", "tests/c.py::test_d"]


def test_a_seeded_sample_of_rule_switches_is_killed(capsys: pytest.CaptureFixture[str]) -> None:
    # The CI sample, through the command line (`sedna sim mutants`).
    args = ["sim", "mutants", "--sample", str(CI_SAMPLE), "--seed", str(CI_SEED), "--jobs", "2"]
    assert sedna([*args, "--json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["name"] for r in results] == select(sample=CI_SAMPLE, seed=CI_SEED)
    assert all(r["status"] == "killed" and r["killed_by"] for r in results), results
    assert f"[{CI_SAMPLE}/{CI_SAMPLE}]" in captured.err  # progress lines


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert sedna(["sim", "mutants", "--only", "no-such-rule"]) == 2
    assert sedna(["sim", "mutants", "--jobs", "0"]) == 2
    assert sedna(["sim", "mutants", "--sample", "0"]) == 2
    assert capsys.readouterr().err.count("error:") == 3
    assert sedna(["sim", "mutants", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(RULE_SWITCHES) and listed[0].split("\t")[0] in RULE_SWITCHES


@pytest.mark.slow
def test_every_rule_switch_is_killed() -> None:
    results = run_matrix(select(), jobs=2)
    survivors = [r for r in results if r.status != "killed"]
    assert survivors == [], format_matrix(survivors)
