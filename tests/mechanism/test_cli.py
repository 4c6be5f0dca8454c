"""`sedna mech` command line: JSON keys, exit codes, files, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mechanism import cli, delay
from mechanism.params import SednaParams

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_delay_json_contract(capsys):
    code, out, err = run(capsys, "delay", "--kappa", "56", "--m", "16", "--beta", "0.1", "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("t_star", "slack", "p_delay", "kl_upper", "kl_lower"):
        assert key in data
    assert (data["t_star"], data["slack"]) == (4, 8)
    assert data["p_delay"] == pytest.approx(delay.p_delay(SednaParams(56, 16, 0.1)))
    assert data["kl_lower"] is None  # outside (L)'s regime: null
    assert data["kl_upper"] >= data["p_delay"]


def test_delay_default_model_uses_r(capsys):
    code, out, _ = run(
        capsys, "delay", "--kappa", "56", "--m", "16", "--beta", "0.1", "--q", "0.9", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["model"] == "binomial"
    assert data["r"] == pytest.approx(0.1 + 0.9 * 0.1)


def test_delay_ratchet_and_lanes(capsys):
    code, out, _ = run(
        capsys,
        "delay",
        "--kappa",
        "56",
        "--m",
        "16",
        "--beta",
        "0.1",
        "--lanes",
        "100",
        "--ratchet",
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["model"] == "ratchet-hypergeometric"
    assert data["p_delay"] < data["p_delay_no_ratchet"]


def test_montecarlo_json_contract(capsys):
    code, out, err = run(
        capsys,
        "montecarlo",
        "--kappa",
        "56",
        "--m",
        "16",
        "--beta",
        "0.1",
        "--trials",
        "20000",
        "--seed",
        "3",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    for key in ("p_delay", "p_delay_mc", "ci_low", "ci_high", "t_star", "slack"):
        assert key in data
    assert data["ci_low"] <= data["p_delay_mc"] <= data["ci_high"]
    _, out2, _ = run(
        capsys,
        "montecarlo",
        "--kappa",
        "56",
        "--m",
        "16",
        "--beta",
        "0.1",
        "--trials",
        "20000",
        "--seed",
        "3",
        "--json",
    )
    assert out2 == out


@pytest.mark.parametrize(
    "argv",
    [
        ["bounds", "--kappa", "64", "--m", "16", "--beta", "0.02"],
        ["bounty", "--kappa", "56", "--m", "16", "--beta", "0.1", "--fee", "0.01"],
        ["ratchet", "--kappa", "56", "--m", "16", "--beta", "0.2"],
        ["race", "--kappa", "56", "--m", "16", "--beta", "0.1"],
        [
            "guide",
            "--eps-delay",
            "1e-3",
            "--eps-race",
            "1e-2",
            "--beta-max",
            "0.1",
            "--m-max",
            "12",
            "--t-max",
            "3",
        ],
        [
            "montecarlo",
            "--kappa",
            "56",
            "--m",
            "16",
            "--beta",
            "0.1",
            "--trials",
            "1000",
            "--strategy",
            "partial",
            "--per-slot",
            "2",
        ],
    ],
    ids=lambda a: a[0],
)
def test_every_analysis_command_json_and_plain(capsys, argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert isinstance(json.loads(out), dict)
    code, plain, _ = run(capsys, *argv)
    assert code == 0
    assert not plain.lstrip().startswith("{")
    # Tables for people: a title, named columns, no Python or JSON literals.
    assert "=====" in plain and "-----" in plain
    for literal in ("True", "False", "None", "null", "nan"):
        assert literal not in plain.split(), literal


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delay", "--kappa", "0", "--m", "16", "--beta", "0.1"], "kappa must be >= 1"),
        (["delay", "--kappa", "56", "--m", "16", "--beta", "1"], "beta must be in [0, 1)"),
        (["delay", "--kappa", "56", "--m", "16", "--beta", "-0.2"], "beta must be in [0, 1)"),
        (
            ["delay", "--kappa", "56", "--m", "16", "--beta", "0.1", "--lanes", "8"],
            "m must be <= lanes",
        ),
        (["delay", "--kappa", "56", "--m", "16", "--beta", "0.1", "--q", "0"], "q must be in"),
        (["delay", "--kappa", "x", "--m", "16", "--beta", "0.1"], "invalid int value"),
        (["delay", "--m", "16", "--beta", "0.1"], "required"),
        (
            ["montecarlo", "--kappa", "56", "--m", "16", "--beta", "0.1", "--trials", "0"],
            "trials must be in",
        ),
        (
            ["montecarlo", "--kappa", "56", "--m", "16", "--beta", "0.1", "--strategy", "partial"],
            "per_slot",
        ),
        (["sweep", "--out", "{tmp}/s", "--slacks", "0,99"], "every slack must be in"),
        (["sweep", "--out", "{tmp}/s", "--beta-max", "1.5"], "beta_max"),
        (["report", "--out", "{tmp}/r", "--seed", "-1"], "seed must be >= 0"),
        (["guide", "--eps-delay", "0", "--eps-race", "0.1", "--beta-max", "0.1"], "eps_delay"),
        (
            ["bounty", "--kappa", "56", "--m", "16", "--beta", "0.1", "--ratchet",
             "--feedback-slots", "2", "--lanes", "100"],
            "reduction to the fixed lane set",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(capsys, tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_sweep_writes_files_and_is_byte_identical_for_a_seed(capsys, tmp_path):
    args = [
        "--m",
        "8",
        "--t-star",
        "3",
        "--slacks",
        "0,3",
        "--beta-steps",
        "6",
        "--trials",
        "3000",
        "--mc-every",
        "2",
        "--seed",
        "11",
    ]
    for d in ("a", "b"):
        code, _, err = run(capsys, "sweep", "--out", str(tmp_path / d), *args, "--json")
        assert code == 0, err
    a, b = ((tmp_path / d / "sweep.csv").read_bytes() for d in ("a", "b"))
    assert a == b
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"sweep.csv", "sweep.png", "sweep.pdf", "meta.json"}
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["seed"] == 11 and meta["version"] and meta["parameters"]["m"] == 8
    header = a.decode().splitlines()[0].split(",")
    assert header[:3] == ["slack", "kappa", "m"] and "p_delay_mc" in header
    # A different seed changes the Monte Carlo columns (same writer, no figures needed).
    from mechanism import output, sweep

    spec = sweep.SweepSpec(
        m=8, t_star=3, slacks=(0, 3), betas=sweep.beta_grid(0, 0.5, 6), trials=3000, mc_every=2
    )
    output.write_csv(tmp_path / "c.csv", sweep.DELAY_COLUMNS, sweep.delay_sweep(spec, 12))
    output.write_csv(tmp_path / "d.csv", sweep.DELAY_COLUMNS, sweep.delay_sweep(spec, 11))
    assert (tmp_path / "d.csv").read_bytes() == a
    assert (tmp_path / "c.csv").read_bytes() != a


@pytest.mark.slow
def test_plot_one_figure(capsys, tmp_path):
    code, _out, err = run(capsys, "plot", "bandwidth", "--out", str(tmp_path), "--quick", "--json")
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {
        "bandwidth.csv",
        "bandwidth.png",
        "bandwidth.pdf",
        "meta.json",
    }


def test_report_writes_every_file(capsys, tmp_path):
    from mechanism import report

    code, out, err = run(
        capsys, "report", "--out", str(tmp_path), "--quick", "--seed", "2", "--json"
    )
    assert code == 0, err
    names = {p.name for p in tmp_path.iterdir()}
    for fig in report.FIGURES:
        exts = ("csv", "md") if fig in report.TABLE_ONLY else ("csv", "png", "pdf")
        for ext in exts:
            assert f"{fig}.{ext}" in names
            assert (tmp_path / f"{fig}.{ext}").stat().st_size > 0
    assert {"meta.json", "report.md"} <= names
    assert set(json.loads(out)["files"]) == names
    text = (tmp_path / "report.md").read_text()
    # A paper section: one heading per figure, its file named, a real markdown table.
    for fig in report.FIGURES:
        assert f"{fig}." in text
    assert "| κ | m |" in text and "MEV cost" in text
    assert "is —" not in text and "= —" not in text  # every quoted number was found
    assert "needs —" not in text and "(bound —)" not in text and "sends —" not in text
    # A number quoted "at β = 0.1" is the table's value at β = 0.1, not at a neighbouring
    # grid point (the text once quoted β = 0.108 as 0.1).
    import csv

    from mechanism import output

    with (tmp_path / "feedback.csv").open() as fh:
        fresh = [r for r in csv.DictReader(fh) if r["policy"] == "fresh"]
    at = [float(r["p_delay"]) for r in fresh if float(r["beta"]) == 0.1]
    assert at, "the feedback grid has no β = 0.1"
    assert f"at β = 0.1, P(delay) is {output.fmt(at[0])} with fresh lanes" in text


@pytest.mark.parametrize("top", [0.3, 0.4, 0.5])
def test_report_beta_grids_hold_the_values_the_text_quotes(top):
    from mechanism import report

    for cfg in (report.ReportConfig(), report.ReportConfig(quick=True)):
        grid = cfg.betas(top)
        assert {0.0, 0.1, 0.2} <= set(grid) and max(grid) == top
        assert list(grid) == sorted(set(grid))
    rows = [{"beta": 0.1083, "x": 1}]
    assert report._one(rows, "x", beta=0.1) is None  # never the nearest grid point
    assert report._one(rows, "x", beta=0.1083) == 1


def test_cli_module_import_keeps_heavy_modules_out():
    code = (
        "import sys, mechanism.cli\n"
        "heavy = [m for m in ('numpy', 'scipy', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_registered_in_the_sedna_command(capsys):
    from node import cli as node_cli

    code = node_cli.main(["mech", "delay", "--kappa", "56", "--m", "16", "--beta", "0.1", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["t_star"] == 4


def test_without_the_analysis_extra_the_command_says_which_extra(capsys, monkeypatch):
    """The node image has no scipy: `sedna mech ...` names the extra instead of a traceback."""
    import sys

    from node import cli as node_cli

    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m == "mechanism" or m.startswith("mechanism.")]:
        monkeypatch.delitem(sys.modules, name)  # re-imported below, without scipy
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if not installed
    code = node_cli.main(["mech", "delay", "--kappa", "56", "--m", "16", "--beta", "0.1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "'analysis' extra" in err[0] and "sedna-bft[analysis]" in err[0]


def test_bounty_strategy_flag_reports_that_strategys_ex_ante_bounty(capsys):
    from mechanism import response
    from mechanism.params import EconParams

    base = ["bounty", "--kappa", "20", "--m", "6", "--beta", "0.3", "--json"]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    data = json.loads(out)
    p, e = SednaParams(20, 6, 0.3), EconParams(1.0)
    assert data["strategy"] == "best_response"  # the default
    assert data["bounty_ex_ante"] == pytest.approx(response.bounty(p, e).bounty, rel=1e-9)
    assert {r["strategy"] for r in data["strategies"]} == {
        "withhold_all", "threshold", "last_slot", "best_response"
    }
    for strategy in ("withhold_all", "threshold", "last_slot"):
        code, out, _ = run(capsys, *base, "--strategy", strategy)
        data = json.loads(out)
        assert data["strategy"] == strategy
        assert data["bounty_ex_ante"] == pytest.approx(
            response.bounty(p, e, strategy).bounty, rel=1e-12
        )
    code, _, err = run(capsys, *base, "--strategy", "nonsense")
    assert code == 2 and "invalid choice" in err


def test_bounty_with_the_shipped_ratchet_says_no_bounty_deters(capsys):
    # Feedback latency d = 2 (the DP's latency states): the best response is not deterred
    # by any bounty; JSON has no ∞, so it says so in a key; the text prints ∞, not —.
    base = ["bounty", "--kappa", "20", "--m", "6", "--beta", "0.3", "--ratchet",
            "--feedback-slots", "2"]
    code, out, err = run(capsys, *base, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["bounty_ex_ante"] is None and data["no_bounty_deters"] is True
    by = {r["strategy"]: r for r in data["strategies"]}
    assert by["withhold_all"]["no_bounty_deters"] is False
    assert by["withhold_all"]["bounty_ex_ante"] > 0
    code, out, err = run(capsys, *base)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("best_response"))
    assert "∞" in line and line.split()[1] == "∞"


def test_leaders_and_sensitivity_commands(capsys):
    code, out, err = run(capsys, "leaders", "--lanes", "7", "--m", "3", "--kappa", "8",
                         "--censoring", "2,5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["p_delay"] == pytest.approx(6 / 7)  # uniform start over 7 leaders
    code, out, err = run(capsys, "leaders", "--lanes", "7", "--m", "3", "--kappa", "8",
                         "--withholding", "2,5", "--policy", "keep_redeemed",
                         "--feedback-slots", "2", "--first-leader", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["p_delay"] == pytest.approx(5 / 7)
    code, out, err = run(capsys, "sensitivity", "--kappa", "20", "--m", "6", "--design-beta",
                         "0.1", "--actual-betas", "0.05,0.2", "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["beta_actual"] for r in rows] == [0.05, 0.2]
    assert rows[0]["p_delay"] < rows[1]["p_delay"]


def test_issue_command_with_finite_lanes_ratchet_and_default_lag(capsys):
    # `delay --ratchet --lanes 7 --m 3 --kappa 8` used to fail in the lag computation.
    code, out, err = run(capsys, "delay", "--ratchet", "--lanes", "7", "--m", "3", "--kappa",
                         "8", "--beta", "0.3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["p_delay"] == pytest.approx(2 / 7)
    assert len(data["lag_tail"]) == 3


def test_heterogeneous_lanes_on_the_command_line(capsys):
    code, out, err = run(capsys, "delay", "--kappa", "13", "--m", "4", "--beta", "0",
                         "--lane-q", "0.99,0.95,0.9,0.99", "--json")
    assert code == 0, err
    data = json.loads(out)
    import numpy as np

    r = delay.miss_probs_fixed_lanes(np.array([0.99, 0.95, 0.9, 0.99]), np.zeros(4, bool), 4)
    assert data["p_delay"] == pytest.approx(delay.p_delay_heterogeneous(r, 13), rel=1e-12)
    code, _, err = run(capsys, "delay", "--kappa", "13", "--m", "4", "--beta", "0",
                       "--lane-q", "0.99,0.95")
    assert code == 2 and "needs m = 4 values" in err


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bad_out_is_one_line_and_exit_2(capsys, tmp_path, kind):
    import os

    target = tmp_path / "out"
    if kind == "file":
        target.write_text("x")
    else:
        tmp_path.chmod(0o500)
        if os.access(tmp_path, os.W_OK):  # running as root: permissions do not bind
            tmp_path.chmod(0o700)
            target = Path("/proc/sedna-not-writable")
    try:
        code, out, err = run(capsys, "plot", "bandwidth", "--out", str(target), "--quick")
    finally:
        tmp_path.chmod(0o700)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--out" in err


def test_guide_has_one_default_bounty_form():
    import inspect

    from mechanism import guide

    default = inspect.signature(guide.recommend).parameters["bounty_form"].default
    assert default == guide.DEFAULT_BOUNTY_FORM == "ex-post"
    parser = _parser()
    args = parser.parse_args(["mech", "guide", "--eps-delay", "1e-3", "--eps-race", "1e-2",
                              "--beta-max", "0.1"])
    assert args.bounty_form is None  # the CLI defers to the library's default


def _parser():
    import argparse

    parser = argparse.ArgumentParser(prog="sedna")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser
