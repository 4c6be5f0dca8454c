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
    assert "\t" in plain and not plain.lstrip().startswith("{")


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
    code, out, err = run(
        capsys, "report", "--out", str(tmp_path), "--quick", "--seed", "2", "--json"
    )
    assert code == 0, err
    names = {p.name for p in tmp_path.iterdir()}
    for fig in ("delay", "ratchet", "bounty", "race", "bandwidth", "lead", "mev"):
        for ext in ("csv", "png", "pdf"):
            assert f"{fig}.{ext}" in names
            assert (tmp_path / f"{fig}.{ext}").stat().st_size > 0
    assert {"meta.json", "report.md"} <= names
    assert set(json.loads(out)["files"]) == names
    assert "MEV cost" in (tmp_path / "report.md").read_text()


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
