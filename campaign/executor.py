"""Run many independent tasks on local processes or on a Dask cluster, with one interface.

A campaign (seed sweeps, Twins arrangements, Monte Carlo grids, the cartel experiment) is
a list of independent tasks: a top-level function applied to picklable items.
`Executor.map(fn, items)` returns the results **in the items' order**, whatever order
they finished in, so a caller that merges results in that order gets the same answer on
one process, on N local processes and on a cluster (the determinism rule: results never
depend on where or when a task ran; each task's randomness comes from its item).

Implementations:
- `LocalExecutor(jobs)`: in this process (jobs = 1) or a pool of `jobs` processes. A pool
  whose worker process dies is replaced and the unfinished tasks are submitted again
  (at most `retries` times per task).
- `DaskExecutor`: a `dask.distributed` cluster, reached at `--scheduler tcp://HOST:8786` or
  started here as a `LocalCluster` of N single-threaded worker processes on 127.0.0.1
  (`--cluster local:N`). A result is gathered to this process as soon as its task
  finishes, so finished work survives any worker dying; the scheduler re-runs the tasks
  that were running on a dead worker (up to its `allowed-failures`), and a task that
  raises is retried `retries` times. Before any task, every worker must run the same
  code as this process (`code_fingerprint`), or the campaign stops: results computed by
  another version would be merged silently otherwise.

Progress: `map` reports (done, total) to the executor's progress callback after every
finished task, and each result to `on_result` as it arrives (a caller can show what the
results say so far, e.g. violations found); `ProgressLine` draws progress on stderr.

Dependencies: `dask.distributed` is the optional extra `sedna-bft[cluster]`; nothing here
imports it unless a Dask executor is asked for.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_JOBS = 256
MAX_CLUSTER_WORKERS = 256
DEFAULT_RETRIES = 2  # re-runs of a task whose worker died or that raised
CONNECT_TIMEOUT_S = 20.0
FINGERPRINT_PACKAGES = ("consensus", "netsim", "mechanism", "campaign")
_SCHEDULER = re.compile(r"^(tcp|tls)://[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")

Progress = Callable[[int, int], None]
OnResult = Callable[[int, Any], None]  # (item index, its result), in completion order


class ExecutorError(RuntimeError):
    """A campaign that cannot run (cluster unreachable, mismatched workers, a task that
    kept failing); the text says why."""


class Executor(Protocol):
    """Applies a function to items somewhere; results in the items' order."""

    description: str

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        label: str = "task",
        on_result: OnResult | None = None,
    ) -> list[R]: ...


def _noop(done: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------- local


class LocalExecutor:
    """This process (jobs = 1) or a pool of `jobs` worker processes."""

    def __init__(self, jobs: int = 1, progress: Progress = _noop, retries: int = DEFAULT_RETRIES):
        if not 1 <= jobs <= MAX_JOBS:
            raise ValueError(f"jobs must be in 1..{MAX_JOBS}, got {jobs}")
        self.jobs = jobs
        self.progress = progress
        self.retries = retries
        self.description = "this process" if jobs == 1 else f"{jobs} local processes"
        self.pool_restarts = 0

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        label: str = "task",
        on_result: OnResult | None = None,
    ) -> list[R]:
        items = list(items)
        total = len(items)
        if self.jobs == 1 or total < 2:
            results = []
            for done, item in enumerate(items, 1):
                results.append(fn(item))
                if on_result is not None:
                    on_result(done - 1, results[-1])
                self.progress(done, total)
            return results
        results_by_index: dict[int, R] = {}
        attempts = [0] * total
        # Bound: every restart re-runs at least one task that has attempts left.
        for _ in range(total * (self.retries + 1) + 1):
            pending = [i for i in range(total) if i not in results_by_index]
            if not pending:
                break
            for i in pending:
                attempts[i] += 1
                if attempts[i] > self.retries + 1:
                    raise ExecutorError(
                        f"{label} {i} did not finish after {self.retries + 1} attempts "
                        "(its worker process died each time)"
                    )
            if not self._run_pool(fn, items, pending, results_by_index, total, on_result):
                self.pool_restarts += 1
        return [results_by_index[i] for i in range(total)]

    def _run_pool(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        pending: list[int],
        results: dict[int, R],
        total: int,
        on_result: OnResult | None,
    ) -> bool:
        """Run `pending` on a fresh pool; False when a worker process died (the tasks
        that had not finished stay pending)."""
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(pending)))
        try:
            futures: dict[Future[R], int] = {pool.submit(fn, items[i]): i for i in pending}
            waiting = set(futures)
            while waiting:
                finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        results[futures[future]] = future.result()
                    except BrokenProcessPool:
                        return False
                    if on_result is not None:
                        on_result(futures[future], results[futures[future]])
                    self.progress(len(results), total)
            return True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- dask


class DaskExecutor:
    """Tasks on a `dask.distributed` cluster (see the module docstring)."""

    def __init__(self, client: Any, description: str, progress: Progress = _noop,
                 retries: int = DEFAULT_RETRIES):  # fmt: skip
        self.client = client
        self.description = description
        self.progress = progress
        self.retries = retries

    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def check_workers(self) -> None:
        """Every worker must run this process's code (same fingerprint)."""
        mine = code_fingerprint()
        try:
            theirs = self.client.run(_worker_fingerprint)
        except Exception as exc:  # a worker that cannot even import campaign
            raise ExecutorError(
                f"the cluster's workers cannot run sedna tasks ({type(exc).__name__}: {exc}); "
                "install this version of sedna-bft[cluster] on every worker"
            ) from None
        check_fingerprints(mine, theirs)

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        label: str = "task",
        on_result: OnResult | None = None,
    ) -> list[R]:
        from distributed import as_completed

        items = list(items)
        total = len(items)
        if total == 0:
            return []
        token = hashlib.sha256(os.urandom(16)).hexdigest()[:12]
        keys = [f"sedna-{label}-{token}-{i}" for i in range(total)]
        futures = self.client.map(fn, items, key=keys, retries=self.retries, pure=False)
        index = {future.key: i for i, future in enumerate(futures)}
        results: dict[int, R] = {}
        try:
            for future in as_completed(futures):
                i = index[future.key]
                if future.status == "error":
                    error = future.exception()
                    raise ExecutorError(f"{label} {i} failed on the cluster: {error!r}")
                results[i] = future.result()
                # Rule: the result lives here now. Released, a worker that dies later
                # does not make the scheduler compute it again (it would, while wanted).
                future.release()
                if on_result is not None:
                    on_result(i, results[i])
                self.progress(len(results), total)
        finally:
            for future in futures:
                if future.status == "pending":
                    future.cancel()
        return [results[i] for i in range(total)]


def _worker_fingerprint() -> str:
    return code_fingerprint()


def code_fingerprint() -> str:
    """SHA-256 over the Python sources of the packages tasks run (path and bytes), the
    same on every machine that runs the same version of the code."""
    digest = hashlib.sha256()
    import importlib.util

    for package in FINGERPRINT_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            digest.update(f"{package}: absent\n".encode())
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def check_fingerprints(mine: str, theirs: dict[str, str]) -> None:
    if not theirs:
        raise ExecutorError("the cluster has no workers")
    different = sorted(worker for worker, value in theirs.items() if value != mine)
    if different:
        raise ExecutorError(
            f"workers {different} run other code than this process (fingerprint "
            f"{mine[:12]}): install the same version of sedna-bft on every worker"
        )


# --------------------------------------------------------------------------- choosing one


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a campaign runs: local processes, a Dask scheduler, or a local Dask cluster."""

    jobs: int = 1
    scheduler: str | None = None  # tcp://HOST:PORT
    cluster_workers: int | None = None  # --cluster local:N

    @property
    def kind(self) -> str:
        if self.scheduler is not None:
            return "dask-scheduler"
        if self.cluster_workers is not None:
            return "dask-local"
        return "local"


def add_executor_arguments(parser: argparse.ArgumentParser, default_jobs: int = 1) -> None:
    """`--jobs N` | `--scheduler tcp://HOST:8786` | `--cluster local:N` (one of them)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--jobs", type=int, default=None, metavar="N",
        help=f"local worker processes (default {default_jobs})",
    )  # fmt: skip
    group.add_argument(
        "--scheduler", default=None, metavar="tcp://HOST:PORT",
        help="run the tasks on this Dask scheduler's workers (needs sedna-bft[cluster])",
    )  # fmt: skip
    group.add_argument(
        "--cluster", default=None, metavar="local:N",
        help="start a local Dask cluster of N worker processes for this run",
    )  # fmt: skip
    parser.set_defaults(default_jobs=default_jobs)


def executor_spec(args: argparse.Namespace) -> ExecutorSpec:
    """The spec of parsed arguments; ValueError (one line) for bad values."""
    if args.scheduler is not None:
        if not _SCHEDULER.match(args.scheduler):
            raise ValueError(
                f"--scheduler {args.scheduler!r}: expected tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)"
            )
        port = int(args.scheduler.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise ValueError(f"--scheduler {args.scheduler!r}: port {port} is not in 1..65535")
        return ExecutorSpec(scheduler=args.scheduler)
    if args.cluster is not None:
        kind, _, count = args.cluster.partition(":")
        if kind != "local" or not count.isdigit():
            raise ValueError(f"--cluster {args.cluster!r}: expected local:N (e.g. local:4)")
        if not 1 <= int(count) <= MAX_CLUSTER_WORKERS:
            raise ValueError(f"--cluster: N must be in 1..{MAX_CLUSTER_WORKERS}, got {count}")
        return ExecutorSpec(cluster_workers=int(count))
    jobs = args.jobs if args.jobs is not None else getattr(args, "default_jobs", 1)
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"--jobs must be in 1..{MAX_JOBS}, got {jobs}")
    return ExecutorSpec(jobs=jobs)


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ExecutorError(
            "a Dask executor needs the cluster extra: pip install 'sedna-bft[cluster]'"
        ) from None
    return distributed


@contextmanager
def open_executor(
    spec: ExecutorSpec, progress: Progress = _noop, retries: int = DEFAULT_RETRIES
) -> Iterator[Executor]:
    """The executor of a spec; a local cluster lives as long as the `with` block."""
    if spec.kind == "local":
        yield LocalExecutor(spec.jobs, progress, retries)
        return
    distributed = _dask()
    if spec.scheduler is not None:
        try:
            client = distributed.Client(spec.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler {spec.scheduler}: {exc}"
            ) from None
        try:
            executor = DaskExecutor(client, f"Dask scheduler {spec.scheduler}", progress, retries)
            executor.check_workers()
            yield executor
        finally:
            client.close()
        return
    import logging

    cluster = distributed.LocalCluster(
        n_workers=spec.cluster_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",  # nothing of a local cluster listens beyond loopback
        dashboard_address="127.0.0.1:0",  # its HTTP server (health, /metrics): loopback
        silence_logs=logging.ERROR,
    )
    try:
        client = distributed.Client(cluster)
        try:
            executor = DaskExecutor(
                client, f"local Dask cluster of {spec.cluster_workers} processes", progress,
                retries,
            )  # fmt: skip
            executor.check_workers()
            yield executor
        finally:
            client.close()
    finally:
        cluster.close()


# --------------------------------------------------------------------------- helpers


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """Contiguous chunks of at most `size` items, in order (merging them in order keeps
    the items' order)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


def chunk_size(total: int, workers: int, per_worker: int = 4, at_most: int = 1000) -> int:
    """A chunk size that gives each worker about `per_worker` chunks (load balance) while
    keeping the per-task overhead small."""
    return max(1, min(at_most, math.ceil(total / max(1, workers * per_worker))))


class ProgressLine:
    """`label: done/total (pct), rate, eta` on stderr: redrawn on a terminal, else a plain
    line at most every `every_s` seconds (and at the end)."""

    def __init__(self, label: str, stream: Any = None, every_s: float = 5.0):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int, note: str = "") -> None:
        now = time.monotonic()
        if not self.tty and done < total and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else math.inf
        text = (
            f"{self.label}: {done}/{total} ({100.0 * done / max(1, total):.0f}%), "
            f"{rate:.1f}/s, elapsed {elapsed:.0f} s"
            + (f", eta {eta:.0f} s" if done < total and math.isfinite(eta) else "")
            + (f"; {note}" if note else "")
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if done >= total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
