"""`sedna sim run/sweep`: exit codes 0/1/2, JSON report keys, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli import main

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
REPORT_KEYS = {
    "agreement",
    "violations",
    "finalized",
    "tcs",
    "reproposals",
    "necs",
    "tail_forks",
    "speculative_reverts",
    "equivocations",
    "trace_hash",
    "rounds",
    "messages",
    "sim_time_ms",
}


def test_run_json_report_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "run", str(SCENARIOS / "happy_path.toml"), "--json", "--seed", "9"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(report) >= REPORT_KEYS
    assert report["seed"] == 9 and report["agreement"] is True and report["violations"] == []
    assert set(report["finalized"]) == {"0", "1", "2", "3"}


def test_run_protocol_override_and_plain_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "run", str(SCENARIOS / "s1_crashed_successor.toml"), "--protocol", "v1"])
    out = capsys.readouterr().out
    assert code == 0 and "protocol=v1" in out and "trace " in out


def test_run_with_a_violation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every message lost from the start: no finalization after the (non-)fault -> liveness.
    path = tmp_path / "dead.toml"
    path.write_text("validators = 4\nuntil_ms = 3000\nliveness_ms = 1000\n[network]\nloss = 1.0\n")
    code = main(["sim", "run", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["violations"] and report["violations"][0].startswith("liveness")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("validators = 4\nfoo = 1\n", "foo: unknown key"),
        ("validators = 4\n[network]\nlatency_ms = [9, 1]\n", "network.latency_ms"),
        ("validators = 4\n[lanes]\nx = 1\n", "lanes.x: unknown key"),
    ],
)
def test_bad_scenario_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sim", "run", str(path)]) == 2
    assert needle in capsys.readouterr().err
    assert main(["sim", "sweep", str(path), "--seeds", "2"]) == 2


def test_missing_file_and_bad_seed_count_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "/nonexistent/x.toml"]) == 2
    assert main(["sim", "sweep", str(SCENARIOS / "happy_path.toml"), "--seeds", "0"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "--seeds" in err


def test_sweep_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "sim",
            "sweep",
            str(SCENARIOS / "sweep_faults.toml"),
            "--seeds",
            "3",
            "--randomize",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["runs"] == 3 and summary["failed_seeds"] == []
    assert set(summary["trace_hashes"]) == {"1", "2", "3"}
