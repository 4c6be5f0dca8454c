"""`sedna bench testnet` / `sedna bench sim`: bad input exits 2, the curve and sim writers
produce readable CSV and PNG (runs that need processes are the benchmarks themselves)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from netsim import bench as sim_bench
from node.tools import bench_testnet


def _testnet(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    bench_testnet.add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    return bench_testnet.run(parser.parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["--nodes", "0"],
        ["--nodes", "17"],
        ["--nodes", "four"],
        ["--forward-fanout", "9"],
        ["--forward-fanout", "-1"],
        ["--rates", "x"],
        ["--rates", "", "--sedna-rates", "10", "--poa-signatures", "schnorr"],
    ],
)
def test_bad_testnet_arguments_exit_2(argv: list[str]) -> None:
    assert _testnet(argv) == 2


def test_the_curve_writers(tmp_path: Path) -> None:
    point = {
        "nodes": 4, "offered_tps": 100.0, "finalized_tps": 98.0, "finality_p50_ms": 40.0,
        "finality_p99_ms": 90.0, "speculative_p50_ms": 25.0, "block_interval_ms": 15.0,
        "lost_tx": 0, "all_ok": True,
    }  # fmt: skip
    sweep = [
        {"forward_fanout": None, "tcp": {"points": [point, {**point, "offered_tps": 1000.0}]}},
        {"forward_fanout": 0, "tcp": {"points": [{**point, "nodes": 16}]}},
    ]
    rows = bench_testnet.curve_rows(sweep, ["tcp"])
    assert [(r["nodes"], r["offered_tps"], r["forward_fanout"]) for r in rows] == [
        (4, 100.0, None), (4, 1000.0, None), (16, 100.0, 0)
    ]  # fmt: skip
    bench_testnet.write_curve_csv(rows, tmp_path / "c.csv")
    with (tmp_path / "c.csv").open() as handle:
        read = list(csv.DictReader(handle))
    assert len(read) == 3 and read[2]["nodes"] == "16"
    pytest.importorskip("matplotlib")
    bench_testnet.write_curve_png(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_sim_bench_rejects_bad_sizes_and_plots_saved_rows(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sim_bench.add_arguments(parser)
    assert sim_bench.run(parser.parse_args(["--sizes", "0"])) == 2
    assert sim_bench.run(parser.parse_args(["--sizes", "257"])) == 2
    assert sim_bench.run(parser.parse_args(["--from-csv", "x.csv"])) == 2  # needs --png
    out = tmp_path / "s.csv"
    args = ["--sizes", "4", "--schemes", "trusted", "--repeats", "1", "--blocks", "5"]
    assert sim_bench.run(parser.parse_args([*args, "--csv", str(out)])) == 0
    rows = sim_bench.read_csv([out])
    assert rows[0]["n"] == 4 and rows[0]["median_cpu_ms"] > 0
    pytest.importorskip("matplotlib")
    png = tmp_path / "s.png"
    assert sim_bench.run(parser.parse_args(["--from-csv", str(out), "--png", str(png)])) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_the_sedna_cost_model_runs_its_stages() -> None:
    """The per-stage cost model builds valid entries (its admission asserts pass) and
    reports every stage; a model whose tickets expired before their slot failed here."""
    cost = bench_testnet.sedna_cost_model(512, samples=8)
    assert cost["kappa"] >= 1
    for stage in ("encode_us", "sign_ticket_us", "check_bundle_us", "decode_us"):
        assert cost[stage] > 0
    assert cost["ceiling_pps_on_2_cores"] > 0
