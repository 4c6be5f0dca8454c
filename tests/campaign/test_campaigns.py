"""The campaigns on the executors: `sim sweep`, `sim twins`, `mech montecarlo`, `mech
sweep` and the netsim part of `mech experiment` give the same results in this process, on
local processes and on a real Dask LocalCluster of worker processes, also when a worker is
killed in the middle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from campaign.executor import ExecutorSpec, LocalExecutor, open_executor
from mechanism import montecarlo
from mechanism.params import SednaParams, Strategy
from mechanism.sweep import SweepSpec, delay_sweep
from netsim.scenario import load_scenario
from netsim.sweep import sweep
from netsim.twins import ArrangementSpace, TwinsConfig, run_twins
from node.cli import main as sedna
from node.tools.experiment import Spec, points_of, run_netsim

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "netsim" / "scenarios" / "sweep_faults.toml"
TIMING = ("wall_s", "enumerate_s")


@pytest.fixture(scope="module")
def dask_executor():
    with open_executor(ExecutorSpec(cluster_workers=2)) as executor:
        yield executor


def _twins_dict(summary: Any) -> dict[str, Any]:
    return {k: v for k, v in summary.as_dict().items() if k not in TIMING}


def test_sim_sweep_is_the_same_everywhere(dask_executor) -> None:
    scenario = load_scenario(str(SCENARIO))
    serial = sweep(scenario, 6, randomize=True)
    assert serial["runs"] == 6 and len(serial["trace_hashes"]) == 6
    assert sweep(scenario, 6, randomize=True, executor=LocalExecutor(2)) == serial
    assert sweep(scenario, 6, randomize=True, executor=dask_executor) == serial


def test_twins_exhaustive_by_prefix_and_sampled_are_the_same_everywhere(dask_executor) -> None:
    # One partition block per round: 4 choices a round, so depth 3 is cheap to run in full,
    # and the tasks are the canonical completions of 2-round prefixes.
    config = TwinsConfig(max_blocks=1)
    serial = run_twins(3, config=config)
    space = ArrangementSpace(max_blocks=1)
    assert serial.run == serial.after_dedup == space.canonical_count(3) > 4
    seen: list[Any] = []
    on_dask = run_twins(3, config=config, executor=dask_executor, progress=seen.append)
    assert _twins_dict(on_dask) == _twins_dict(serial)
    assert (seen[-1].done, seen[-1].total, seen[-1].failed) == (serial.run, serial.run, 0)
    assert len(seen) >= 2  # one report per finished task
    # A broken core (double votes): the failures, in order, are the serial ones.
    broken = TwinsConfig(test_mutations=frozenset({"double_vote"}))
    sampled = run_twins(3, config=broken, sample=24, sample_seed=5)
    assert sampled.failed >= 3 and len(sampled.failures) == min(20, sampled.failed)
    local = run_twins(3, config=broken, sample=24, sample_seed=5, jobs=2)
    assert _twins_dict(local) == _twins_dict(sampled)
    on_dask = run_twins(3, config=broken, sample=24, sample_seed=5, executor=dask_executor)
    assert _twins_dict(on_dask) == _twins_dict(sampled)


def test_canonical_prefixes_split_the_arrangements_exactly() -> None:
    space = ArrangementSpace()
    whole = list(space.canonical(3))
    by_prefix = [a for prefix in space.canonical(2) for a in space.canonical(3, prefix)]
    assert by_prefix == whole  # same arrangements, same (lexicographic) order
    for depth in range(1, 4):
        assert space.canonical_count(depth) == len(list(space.canonical(depth)))
    assert space.canonical_count(4) == 2_829_056
    assert list(space.canonical(3, (63,))) == []  # 63 is not a canonical first round


def test_mech_montecarlo_and_sweep_are_the_same_everywhere(
    dask_executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(montecarlo, "_CHUNK_TRIALS", 4_000)  # blocks are cut here
    p = SednaParams(56, 16, 0.15, ratchet=True)
    strategy = Strategy("last-slot")
    serial = montecarlo.simulate(p, strategy, trials=13_000, seed=3, max_lag=2)
    for executor in (LocalExecutor(2), dask_executor):
        assert (
            montecarlo.simulate(p, strategy, trials=13_000, seed=3, max_lag=2, executor=executor)
            == serial
        )
    # Each block has its own stream: two blocks are not one block counted twice.
    one = montecarlo.simulate(p, strategy, trials=4_000, seed=3, max_lag=2)
    two = montecarlo.simulate(p, strategy, trials=8_000, seed=3, max_lag=2)
    # (a copy would give exactly the same mean of thousands of draws)
    assert two.mean_withheld != one.mean_withheld
    assert two.mean_pivotal_withheld_random != one.mean_pivotal_withheld_random
    spec = SweepSpec(m=8, t_star=3, slacks=(0, 2), betas=(0.05, 0.1, 0.2), trials=3_000,
                     mc_every=1)  # fmt: skip
    rows = delay_sweep(spec, 4)
    assert sum("p_delay_mc" in r for r in rows) == 6
    assert delay_sweep(spec, 4, dask_executor) == rows


def test_the_cartel_experiment_netsim_part_is_the_same_everywhere(dask_executor) -> None:
    """`sedna mech experiment`: every (point, seed) is a task, merged per point in seed
    order; the points (counts, lag and lead distributions, intervals, verdicts) are the
    serial ones on local processes and on the cluster (only the timing differs)."""
    spec = Spec(cartel=(0, 3), strategies=("withhold_all",), payloads=18, seeds=3)
    points = points_of(spec)

    def without_timing(results: list[Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.as_dict().items() if k != "seconds"} for r in results]

    serial = without_timing(run_netsim(spec, points, LocalExecutor(1)))
    assert [(r["cartel"], r["runs"]) for r in serial] == [(0, 3), (3, 3)]
    assert serial[0]["delayed"] == 0 < serial[1]["delayed"]  # the points differ
    assert without_timing(run_netsim(spec, points, LocalExecutor(2))) == serial
    assert without_timing(run_netsim(spec, points, dask_executor)) == serial


def test_a_worker_killed_in_the_middle_of_a_sweep_changes_nothing() -> None:
    scenario = load_scenario(str(SCENARIO))
    serial = sweep(scenario, 16, randomize=True)
    killed: list[int] = []

    with open_executor(ExecutorSpec(cluster_workers=2)) as executor:
        before = set(executor.client.run(os.getpid).values())

        def kill_one(done: int, total: int) -> None:
            if not killed and done >= 2 and total - done >= 2:  # both workers still busy
                pid = sorted(before)[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        executor.progress = kill_one
        on_dask = sweep(scenario, 16, randomize=True, executor=executor)
        executor.client.wait_for_workers(2, timeout=120)  # the nanny restarts the dead one
        after = set(executor.client.run(os.getpid).values())
    assert killed, "no worker was killed: the scenario did not happen"
    assert killed[0] not in after and len(after) == 2  # a new worker process
    assert on_dask == serial


def test_the_cli_on_a_local_cluster_prints_progress_and_the_local_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["sim", "sweep", str(SCENARIO), "--seeds", "4", "--randomize", "--json"]
    assert sedna(args) == 0
    local = json.loads(capsys.readouterr().out)
    assert sedna([*args, "--cluster", "local:2"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == local
    assert "sim sweep: 4/4 (100%)" in captured.err
    for bad in (["--cluster", "local:0"], ["--scheduler", "nowhere"], ["--jobs", "0"]):
        assert sedna([*args, *bad]) == 2
    assert sedna(["sim", "twins", "--depth", "4", "--jobs", "2"]) == 2  # depth 4: a cluster
    assert "on a Dask cluster" in capsys.readouterr().err


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group this test started (a worker's nannies and their
    worker processes), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def _json(capsys: pytest.CaptureFixture[str], progress: str = "") -> Any:
    """The command's JSON output; `progress`: a line its stderr must hold."""
    captured = capsys.readouterr()
    assert progress in captured.err
    return json.loads(captured.out)


def test_the_commands_on_a_running_dask_scheduler_give_the_local_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cluster as docs/netsim.md sets it up: a `dask scheduler` process and a `dask
    worker` process with its worker processes (here all on loopback), reached with
    `--scheduler tcp://HOST:PORT`; each campaign command prints what it prints locally."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    processes = [
        _start([dask, "scheduler", *common, "--port", "0", "--scheduler-file",
                str(scheduler_file)], tmp_path / "scheduler.log")
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(
            _start([dask, "worker", "--scheduler-file", str(scheduler_file), *common,
                    "--nthreads", "1", "--nworkers", "2"], tmp_path / "worker.log")
        )  # fmt: skip
        client = Client(address, timeout=30)
        client.wait_for_workers(2, timeout=120)
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        on = ["--scheduler", address]

        def executed() -> int:  # tasks the cluster's workers ran so far
            counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
            return sum(counts.values())

        sweep_args = ["sim", "sweep", str(SCENARIO), "--seeds", "4", "--randomize", "--json"]
        assert sedna(sweep_args) == 0
        local = _json(capsys)
        before = executed()
        assert sedna([*sweep_args, *on]) == 0
        assert executed() > before  # it ran there
        assert _json(capsys, "sim sweep: 4/4 (100%)") == local

        twins_args = ["sim", "twins", "--depth", "2", "--partitions", "1", "--json"]
        assert sedna(twins_args) == 0
        local = _json(capsys)
        before = executed()
        assert sedna([*twins_args, *on]) == 0
        assert executed() > before  # it ran there
        assert {k: v for k, v in _json(capsys).items() if k not in TIMING} == {
            k: v for k, v in local.items() if k not in TIMING
        }

        mc_args = ["mech", "montecarlo", "--kappa", "8", "--m", "3", "--beta", "0.3",
                   "--trials", "20000", "--seed", "4", "--json"]  # fmt: skip
        assert sedna(mc_args) == 0
        local = _json(capsys)
        before = executed()
        assert sedna([*mc_args, *on]) == 0
        assert executed() > before  # it ran there
        assert _json(capsys, "sedna mech montecarlo: 1/1 (100%)") == local

        experiment_args = ["mech", "experiment", "--cartel", "0,3", "--strategy",
                           "withhold_all", "--payloads", "18", "--seeds", "3", "--json"]  # fmt: skip
        assert sedna(experiment_args) == 0
        local = _json(capsys)["points"]
        before = executed()
        assert sedna([*experiment_args, *on]) == 0
        assert executed() > before  # it ran there
        on_cluster = _json(capsys, "sedna mech experiment (netsim): 6/6 (100%)")["points"]
        for points in (local, on_cluster):
            for point in points:
                point.pop("seconds")
        assert on_cluster == local
        client.close()
    finally:
        for process in reversed(processes):
            _stop(process)
