"""The campaign executors: local processes and a real Dask LocalCluster of worker
processes; the same results in the same order, progress, and a worker killed mid-run."""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
from collections import Counter
from pathlib import Path

import pytest

from campaign.executor import (
    DaskExecutor,
    ExecutorError,
    ExecutorSpec,
    LocalExecutor,
    ProgressLine,
    add_executor_arguments,
    check_fingerprints,
    chunk_size,
    chunks,
    code_fingerprint,
    executor_spec,
    open_executor,
)

from .tasks import fails_on, seeded_value

ITEMS = 12


def _items(marker_dir: Path | None = None, delay_s: float = 0.0) -> list[tuple]:
    return [(i, delay_s, None if marker_dir is None else str(marker_dir)) for i in range(ITEMS)]


EXPECTED = [seeded_value((i, 0.0, None)) for i in range(ITEMS)]


def _markers(directory: Path) -> tuple[Counter[int], dict[int, set[int]], set[tuple[int, str]]]:
    """(starts per item, pids per item, (item, nonce) of finished runs)."""
    starts: Counter[int] = Counter()
    pids: dict[int, set[int]] = {}
    ends = set()
    for path in directory.iterdir():
        kind, index, pid, nonce = path.name.split("-")
        if kind == "start":
            starts[int(index)] += 1
            pids.setdefault(int(index), set()).add(int(pid))
        else:
            ends.add((int(index), nonce))
    return starts, pids, ends


def _running_pid(directory: Path, exclude: set[int]) -> int | None:
    """A worker pid that is in the middle of a task right now."""
    names = {p.name for p in directory.iterdir()}
    for name in sorted(names):
        if name.startswith("start-"):
            _, index, pid, nonce = name.split("-")
            if f"end-{index}-{pid}-{nonce}" not in names and int(pid) not in exclude:
                return int(pid)
    return None


class Killer:
    """A progress callback that SIGKILLs one worker that is running a task, once `after`
    tasks have finished; records what it saw."""

    def __init__(self, directory: Path, after: int = 2):
        self.directory = directory
        self.after = after
        self.killed: int | None = None
        self.done_at_kill: int | None = None
        self.finished_before: set[int] = set()
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if self.killed is None and done >= self.after:
            pid = _running_pid(self.directory, exclude={os.getpid()})
            if pid is not None:
                self.done_at_kill = done
                self.finished_before = {i for i, _ in _markers(self.directory)[2]}
                os.kill(pid, signal.SIGKILL)
                self.killed = pid


def test_local_executor_keeps_the_items_order_and_reports_progress() -> None:
    for jobs in (1, 3):
        calls: list[tuple[int, int]] = []
        seen: dict[int, tuple] = {}
        executor = LocalExecutor(jobs, progress=lambda d, t, c=calls: c.append((d, t)))
        assert executor.map(seeded_value, _items(), on_result=seen.__setitem__) == EXPECTED
        assert [d for d, _ in calls] == list(range(1, ITEMS + 1))
        assert {t for _, t in calls} == {ITEMS}
        assert seen == dict(enumerate(EXPECTED))  # each result once, under its index


def test_local_pool_survives_a_worker_process_dying(tmp_path: Path) -> None:
    killer = Killer(tmp_path)
    executor = LocalExecutor(2, progress=killer)
    assert executor.map(seeded_value, _items(tmp_path, delay_s=0.3)) == EXPECTED
    assert killer.killed is not None, "no worker was killed: the scenario did not happen"
    assert executor.pool_restarts >= 1
    starts, pids, _ = _markers(tmp_path)
    # The task the killed process was running ran again elsewhere.
    assert any(killer.killed in p and len(p) >= 2 for p in pids.values()), pids
    assert set(starts) == set(range(ITEMS))


def test_a_task_that_raises_stops_the_campaign_with_its_error() -> None:
    with pytest.raises(ValueError, match="item 3 is bad"):
        LocalExecutor(1).map(fails_on, list(range(6)))


@pytest.fixture(scope="module")
def dask_executor():
    with open_executor(ExecutorSpec(cluster_workers=2)) as executor:
        yield executor


def test_dask_local_cluster_gives_the_local_results_in_order(dask_executor) -> None:
    assert isinstance(dask_executor, DaskExecutor)
    assert dask_executor.workers() == 2
    pids = dask_executor.client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()  # processes
    calls: list[tuple[int, int]] = []
    dask_executor.progress = lambda d, t: calls.append((d, t))
    try:
        # Tasks of different lengths finish out of order; the results come back in order.
        items = [(i, 0.02 * ((ITEMS - i) % 5), None) for i in range(ITEMS)]
        seen: dict[int, tuple] = {}
        assert dask_executor.map(seeded_value, items, on_result=seen.__setitem__) == EXPECTED
        assert seen == dict(enumerate(EXPECTED))
    finally:
        dask_executor.progress = lambda d, t: None
    assert [d for d, _ in calls] == list(range(1, ITEMS + 1))
    with pytest.raises(ExecutorError, match="failed on the cluster"):
        dask_executor.map(fails_on, list(range(6)))


def test_dask_finished_results_survive_a_worker_killed_mid_run(tmp_path: Path) -> None:
    killer = Killer(tmp_path)
    with open_executor(ExecutorSpec(cluster_workers=2), progress=killer) as executor:
        results = executor.map(seeded_value, _items(tmp_path, delay_s=0.4))
    assert results == EXPECTED
    assert killer.killed is not None, "no worker was killed: the scenario did not happen"
    starts, pids, _ = _markers(tmp_path)
    killed_items = [i for i, p in pids.items() if killer.killed in p]
    # Dask re-ran the task the dead worker was running, on a live worker ...
    assert any(len(pids[i]) >= 2 or starts[i] >= 2 for i in killed_items), (pids, killer.killed)
    # ... and every task finished before the kill (on either worker, the dead one's too)
    # kept its result: none ran again.
    assert killer.done_at_kill is not None and len(killer.finished_before) >= 2
    assert any(killer.killed in pids[i] for i in killer.finished_before), "vacuous"
    assert {i: starts[i] for i in killer.finished_before} == dict.fromkeys(
        killer.finished_before, 1
    )
    assert [d for d, _ in killer.calls] == list(range(1, ITEMS + 1))


def test_workers_must_run_the_same_code() -> None:
    mine = code_fingerprint()
    assert mine == code_fingerprint() and len(mine) == 64
    check_fingerprints(mine, {"tcp://w1": mine, "tcp://w2": mine})
    with pytest.raises(ExecutorError, match=r"\['tcp://w2'\] run other code"):
        check_fingerprints(mine, {"tcp://w1": mine, "tcp://w2": "0" * 64})
    with pytest.raises(ExecutorError, match="no workers"):
        check_fingerprints(mine, {})


def test_a_cluster_whose_workers_run_other_code_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client here stands for another version: its fingerprint differs from the
    (real) workers', so the campaign stops before any task."""
    import campaign.executor

    monkeypatch.setattr(campaign.executor, "code_fingerprint", lambda: "f" * 64)
    with (
        pytest.raises(ExecutorError, match="run other code than this process"),
        open_executor(ExecutorSpec(cluster_workers=1)),
    ):
        pytest.fail("a task could have run")


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import campaign.executor

    monkeypatch.setattr(campaign.executor, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        pytest.raises(ExecutorError, match="cannot reach the Dask scheduler"),
        open_executor(ExecutorSpec(scheduler=f"tcp://127.0.0.1:{port}")),
    ):
        pass


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_executor_arguments(parser, default_jobs=1)
    return parser.parse_args(argv)


def test_executor_arguments() -> None:
    assert executor_spec(_parse()) == ExecutorSpec(jobs=1)
    assert executor_spec(_parse("--jobs", "4")) == ExecutorSpec(jobs=4)
    assert executor_spec(_parse("--cluster", "local:3")).cluster_workers == 3
    spec = executor_spec(_parse("--scheduler", "tcp://10.0.0.5:8786"))
    assert spec.scheduler == "tcp://10.0.0.5:8786" and spec.kind == "dask-scheduler"
    for argv, message in (
        (("--jobs", "0"), "--jobs"),
        (("--cluster", "local:0"), "N must be"),
        (("--cluster", "k8s:3"), "expected local:N"),
        (("--scheduler", "http://x:8786"), "expected tcp://HOST:PORT"),
        (("--scheduler", "tcp://x:99999"), "not in 1..65535"),
    ):
        with pytest.raises(ValueError, match=message):
            executor_spec(_parse(*argv))


def test_chunks_and_progress_line() -> None:
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert [x for chunk in chunks(list(range(7)), 3) for x in chunk] == list(range(7))
    assert chunk_size(10_000, 4) == 625 and chunk_size(10, 64) == 1
    stream = io.StringIO()
    line = ProgressLine("twins", stream=stream, every_s=3600)
    for done in range(1, 6):
        line(done, 5)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("twins: 1/5 (20%)") and lines[-1].startswith("twins: 5/5 (100%)")
    assert len(lines) == 2  # not a terminal: the first line, then only the last
