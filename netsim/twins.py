"""Twins (Bano, Sonnino, Chursin, Perelman, Li, Ching, Malkhi; OPODIS 2021) for MonadBFT.

A Byzantine validator is emulated by running two unmodified cores under one identity
(same key, same validator index): the *twins*. Whatever the pair does (two proposals in a
round it leads, two votes in one round, two different timeouts, forgotten state) is what
a Byzantine node could do, and it comes out of honest code. The adversary is the network:
each round r of an arrangement has a partition of the instances and a leader, and a
message is delivered only if sender and receiver share a block of the partition of *the
round the message belongs to* (`byzantine.message_round`: proposal/recovery round, vote
round, timeout round, NE round, AdvanceRound certificate round + 1; block-sync traffic,
which has no round, uses the sender's current round). Every message type is routed.

Setting (n = 4, one twin): validators 0..3 with equal stake; identity `twin` (default 1,
"Alice") runs on instances `twin` and 4. The three other identities are honest; the pair
counts as one Byzantine identity (stake 1 < n/3), so the checkers treat it as such.

Arrangements. One round's choice is (partition of the 5 instances into at most
`max_blocks` blocks, leader identity): 16 partitions x 4 leaders = 64 choices with 2 blocks.
An arrangement of depth D fixes rounds `first_round .. first_round + D - 1`, chosen
independently (64^D). Symmetry deduplication: honest identities are interchangeable, so
an arrangement and its image under a relabelling of the honest identities (applied to
the partitions and the leaders of every round at once; the twin instances are kept
distinct) give the same run up to names. Only the lexicographically smallest member of
each orbit is kept (canonical augmentation over the 3! relabellings, pruned round by
round). Assumption: relabelled runs differ only in tie-breaks that depend on the keys
(block ids), which the Twins method treats as irrelevant.

Timing. Constant latency (10 ms), Δ = 100 ms (round timer 400 ms). The partitions hold
until GST = (D + 1) round timers; after GST every message is delivered (messages dropped
before stay dropped). Rounds after the arrangement use round-robin leaders. A run stops
once every honest instance finalized `D + extra_blocks` blocks, or at GST + the liveness
bound (30 round timers): the checkers then also judge liveness after GST.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netsim.byzantine import message_round
from netsim.driver import make_checker, world_with_schedule
from netsim.engine import Simulator, derive_rng
from netsim.network import Latency, Network, NetworkConfig
from netsim.runner import Progress, make_factory
from netsim.scenario import PROTOCOLS, Scenario

if TYPE_CHECKING:
    from campaign.executor import Executor

DEFAULT_VALIDATORS = 4
DEFAULT_TWIN = 1
MAX_DEPTH = 8
MAX_EXHAUSTIVE_DEPTH = 3  # in this process or local processes
MAX_CLUSTER_EXHAUSTIVE_DEPTH = 4  # on a Dask cluster: 2,829,056 arrangements (docs/netsim.md)
PREFIX_ROUNDS = 2  # an exhaustive campaign's task: the completions of a 2-round prefix
TASK_CHUNKING_WORKERS = 16  # list chunks sized for this many workers (never changes results)
MAX_TASK_ARRANGEMENTS = 500
MAX_SAMPLE = 1_000_000
SAMPLE_ATTEMPTS_PER_ITEM = 50  # bound on draws per requested sample (duplicates are redrawn)
MAX_REPORTED_FAILURES = 20


@dataclass(frozen=True)
class TwinsProgress:
    """Where a Twins run is: `done` of `total` arrangements, `failed` with violations."""

    done: int
    total: int
    failed: int
    elapsed_s: float

    @property
    def remaining_s(self) -> float | None:
        """Estimated seconds left (elapsed time per finished arrangement, None before any)."""
        if self.done == 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


ProgressCallback = Callable[[TwinsProgress], None]


@dataclass(frozen=True, slots=True)
class RoundSpec:
    """One round of an arrangement: the partition (blocks of instance indices) and leader."""

    partition: tuple[tuple[int, ...], ...]
    leader: int  # identity


Arrangement = tuple[RoundSpec, ...]


def set_partitions(items: Sequence[int], max_blocks: int) -> list[tuple[tuple[int, ...], ...]]:
    """Every partition of `items` into at most `max_blocks` non-empty blocks, canonical
    (each block sorted, blocks sorted), in a deterministic order."""
    if max_blocks < 1:
        raise ValueError("max_blocks must be >= 1")
    found: list[tuple[tuple[int, ...], ...]] = []

    def place(position: int, blocks: list[list[int]]) -> None:
        if position == len(items):
            found.append(tuple(sorted(tuple(sorted(b)) for b in blocks)))
            return
        item = items[position]
        for block in blocks:
            block.append(item)
            place(position + 1, blocks)
            block.pop()
        if len(blocks) < max_blocks:
            blocks.append([item])
            place(position + 1, blocks)
            blocks.pop()

    place(0, [])
    return sorted(set(found))


class ArrangementSpace:
    """All per-round (partition, leader) choices and the honest-relabelling symmetry."""

    def __init__(
        self,
        validators: int = DEFAULT_VALIDATORS,
        twin: int = DEFAULT_TWIN,
        max_blocks: int = 2,
    ):
        if validators < 2:
            raise ValueError("Twins needs at least 2 validators")
        if not 0 <= twin < validators:
            raise ValueError(f"twin identity {twin} outside 0..{validators - 1}")
        self.validators = validators
        self.twin = twin
        # Instance i < validators runs identity i; the last instance is the second twin.
        self.identities: tuple[int, ...] = (*range(validators), twin)
        instances = len(self.identities)
        if not 1 <= max_blocks <= instances:
            raise ValueError(f"partitions must be in 1..{instances}, got {max_blocks}")
        self.max_blocks = max_blocks
        self.partitions = set_partitions(list(range(instances)), max_blocks)
        self.choices: tuple[RoundSpec, ...] = tuple(
            RoundSpec(p, leader) for p in self.partitions for leader in range(validators)
        )
        index = {choice: i for i, choice in enumerate(self.choices)}
        honest = [i for i in range(validators) if i != twin]
        self._act: list[tuple[int, ...]] = []  # non-trivial relabellings, on choice indices
        for image in itertools.permutations(honest):
            if list(image) == honest:
                continue
            relabel = dict(zip(honest, image, strict=True))
            relabel[twin] = twin
            instance_map = [relabel.get(i, i) for i in range(instances)]  # twins stay put
            self._act.append(
                tuple(index[self._apply(c, instance_map, relabel)] for c in self.choices)
            )

    @staticmethod
    def _apply(choice: RoundSpec, instance_map: list[int], relabel: dict[int, int]) -> RoundSpec:
        blocks = tuple(sorted(tuple(sorted(instance_map[i] for i in b)) for b in choice.partition))
        return RoundSpec(blocks, relabel[choice.leader])

    @property
    def choices_per_round(self) -> int:
        return len(self.choices)

    @property
    def symmetries(self) -> int:
        """Size of the relabelling group (including the identity)."""
        return len(self._act) + 1

    def raw_count(self, depth: int) -> int:
        return self.choices_per_round**depth

    def canonical_count(self, depth: int) -> int:
        """How many canonical arrangements `depth` has, without enumerating them.

        Burnside's lemma: the orbits number the mean, over the relabelling group, of the
        arrangements each relabelling fixes; a relabelling acts on every round alike, so it
        fixes f^depth arrangements when it fixes f choices of one round."""
        fixed = [sum(1 for c, image in enumerate(table) if image == c) for table in self._act]
        return (self.choices_per_round**depth + sum(f**depth for f in fixed)) // self.symmetries

    def canonical(self, depth: int, prefix: Sequence[int] = ()) -> Iterator[tuple[int, ...]]:
        """Canonical arrangements (choice indices), lexicographic order, one per orbit.

        With a `prefix` (of `canonical(len(prefix))`), only those that start with it: the
        canonical arrangements of a depth are split exactly by their prefixes, which is how
        a campaign shares them out without listing them all in one place."""
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in 0..{MAX_DEPTH}")
        if len(prefix) > depth:
            raise ValueError(f"prefix of {len(prefix)} rounds is deeper than {depth}")
        act = self._act
        count = len(self.choices)
        active = list(range(len(act)))
        for choice in prefix:  # the relabellings that still fix the prefix
            still = []
            for g in active:
                image = act[g][choice]
                if image < choice:
                    return  # not a canonical prefix: no canonical arrangement starts with it
                if image == choice:
                    still.append(g)
            active = still
        prefix = list(prefix)

        def extend(active: list[int]) -> Iterator[tuple[int, ...]]:
            if len(prefix) == depth:
                yield tuple(prefix)
                return
            for choice in range(count):
                still: list[int] = []
                for g in active:
                    image = act[g][choice]
                    if image < choice:
                        break  # a relabelling gives a smaller arrangement: not canonical
                    if image == choice:
                        still.append(g)
                else:
                    prefix.append(choice)
                    yield from extend(still)
                    prefix.pop()

        yield from extend(active)

    def canonicalize(self, arrangement: Sequence[int]) -> tuple[int, ...]:
        """The smallest member of the arrangement's orbit."""
        best = tuple(arrangement)
        for table in self._act:
            image = tuple(table[c] for c in arrangement)
            best = min(best, image)
        return best

    def sample(self, depth: int, count: int, seed: int) -> list[tuple[int, ...]]:
        """`count` distinct canonical arrangements drawn with the seed's *twins* stream
        (uniform over raw arrangements, then canonicalized; duplicates are redrawn)."""
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in 0..{MAX_DEPTH}")
        if not 1 <= count <= MAX_SAMPLE:
            raise ValueError(f"sample must be in 1..{MAX_SAMPLE}")
        rng = derive_rng(seed, "twins")
        chosen: dict[tuple[int, ...], None] = {}
        for _ in range(count * SAMPLE_ATTEMPTS_PER_ITEM):
            if len(chosen) >= count:
                break
            raw = tuple(rng.randrange(self.choices_per_round) for _ in range(depth))
            chosen.setdefault(self.canonicalize(raw), None)
        return list(chosen)

    def arrangement(self, indices: Sequence[int]) -> Arrangement:
        return tuple(self.choices[i] for i in indices)

    def describe(self, arrangement: Arrangement, first_round: int = 1) -> str:
        names = [str(i) for i in range(self.validators)] + [f"{self.twin}'"]
        parts = []
        for offset, spec in enumerate(arrangement):
            blocks = "|".join("{" + ",".join(names[i] for i in b) + "}" for b in spec.partition)
            parts.append(f"r{first_round + offset}: {blocks} L{spec.leader}")
        return "; ".join(parts)


class TwinsSchedule:
    """Leaders from the arrangement for its rounds, round-robin afterwards."""

    def __init__(self, leaders: Sequence[int], first_round: int, validators: int):
        self.leaders = tuple(leaders)
        self.first_round = first_round
        self.validators = validators

    def leader(self, round: int) -> int:
        offset = round - self.first_round
        if 0 <= offset < len(self.leaders):
            return self.leaders[offset]
        return round % self.validators


class RoundPartitions:
    """Engine link filter: a message crosses only within a block of its round's partition
    (rounds without an entry, and every message after GST, pass)."""

    def __init__(self, arrangement: Arrangement, first_round: int, instances: int, gst_ms: float):
        self.gst_ms = gst_ms
        self.group_of: dict[int, tuple[int, ...]] = {}
        for offset, spec in enumerate(arrangement):
            groups = [0] * instances
            for position, block in enumerate(spec.partition):
                for instance in block:
                    groups[instance] = position
            self.group_of[first_round + offset] = tuple(groups)
        self.dropped = 0

    def __call__(self, sim: Simulator, src: int, dst: int, message: Any) -> bool:
        if sim.now_ms >= self.gst_ms:
            return True
        round_ = message_round(message)
        if round_ is None:  # block sync: the sender's current round
            machine = sim.hosts[src].machine
            round_ = int(getattr(machine, "current_round", 0))
        groups = self.group_of.get(round_)
        if groups is None or groups[src] == groups[dst]:
            return True
        self.dropped += 1
        return False


@dataclass(frozen=True)
class TwinsConfig:
    protocol: str = "monadbft"
    validators: int = DEFAULT_VALIDATORS
    twin: int = DEFAULT_TWIN
    max_blocks: int = 2  # partition blocks per round
    first_round: int = 1
    latency_ms: float = 10.0
    delta_ms: float = 100.0
    extra_blocks: int = 2  # finalization target: depth + extra_blocks
    seed: int = 1
    test_mutations: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}")
        if self.first_round < 1 or self.extra_blocks < 1:
            raise ValueError("first_round and extra_blocks must be >= 1")


@dataclass
class TwinsRun:
    arrangement: Arrangement
    violations: list[str]
    finalized: dict[int, int]  # instance -> height
    equivocations: int
    equivocation_slots: list[tuple[int, int]]  # (leader, round) pairs with two signed headers
    tcs: int
    necs: int
    reproposals: int
    speculative_reverts: int
    reproposal_reverts: int  # reverts of blocks Voted only through a reproposal's QC
    reproposal_tail_forks: int  # lost blocks with f+1 honest votes only across reproposals
    liveness: str
    sim_time_ms: float
    events: int
    partition_drops: int
    trace_hash: str


def run_arrangement(arrangement: Arrangement, config: TwinsConfig = TwinsConfig()) -> TwinsRun:
    """Run one arrangement with the real cores and the always-on checkers."""
    depth = len(arrangement)
    scenario = Scenario(
        validators=config.validators,
        protocol=config.protocol,
        seed=config.seed,
        delta_ms=config.delta_ms,
        network=NetworkConfig(latency=Latency("constant", config.latency_ms, config.latency_ms)),
        source="<twins>",
    )
    schedule = TwinsSchedule(
        [spec.leader for spec in arrangement], config.first_round, config.validators
    )
    world = world_with_schedule(scenario, schedule, config.test_mutations)
    round_timer_ms = world.round_timer_ms
    gst_ms = (depth + 1) * round_timer_ms
    byzantine = frozenset({config.twin})
    checker = make_checker(world, byzantine, quiet_after_ms=gst_ms)
    honest = frozenset(range(config.validators)) - byzantine
    progress = Progress(honest, depth + config.extra_blocks)
    identities = [*range(config.validators), config.twin]
    router = RoundPartitions(arrangement, config.first_round, len(identities), gst_ms)
    sim = Simulator(
        factory=make_factory(world, config.seed),
        network=Network(scenario.network),
        seed=config.seed,
        identities=identities,
        observers=[checker, progress],
        payload_bytes=scenario.payload_bytes,
        link_filter=router,
    )
    until_ms = gst_ms + checker.ctx.liveness_ms + round_timer_ms
    result = sim.run(until_ms, stop=lambda _sim: progress.done)
    stats = checker.stats
    return TwinsRun(
        arrangement=arrangement,
        violations=list(checker.violations),
        finalized={h.index: h.disk.finalized_height for h in sim.hosts},
        equivocations=len(stats.equivocations),
        equivocation_slots=sorted(stats.equivocations),
        tcs=len(stats.tcs),
        necs=len(stats.necs),
        reproposals=len(stats.reproposals),
        speculative_reverts=stats.speculative_reverts,
        reproposal_reverts=stats.reproposal_reverts,
        reproposal_tail_forks=len(checker.reproposal_tail_forks()),
        liveness=checker.liveness,
        sim_time_ms=result.sim_time_ms,
        events=result.events,
        partition_drops=router.dropped,
        trace_hash=result.trace_hash,
    )


@dataclass
class TwinsSummary:
    depth: int
    max_blocks: int
    protocol: str
    mode: str  # "exhaustive" | "sample"
    choices_per_round: int
    generated: int  # raw arrangements in the space (choices_per_round ** depth)
    after_dedup: int | None  # canonical arrangements (exhaustive mode; None when sampled)
    run: int = 0
    failed: int = 0
    agreement_failures: int = 0  # runs with a P1 violation
    failures: list[dict[str, Any]] = field(default_factory=list)
    equivocations: int = 0
    runs_with_equivocation: int = 0
    tcs: int = 0
    necs: int = 0
    reproposals: int = 0
    speculative_reverts: int = 0
    reproposal_reverts: int = 0
    reproposal_tail_forks: int = 0
    liveness: dict[str, int] = field(default_factory=dict)
    events: int = 0
    partition_drops: int = 0
    sim_time_ms: float = 0.0
    enumerate_s: float = 0.0
    wall_s: float = 0.0

    @property
    def agreement(self) -> bool:
        return self.agreement_failures == 0

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["agreement"] = self.agreement
        out["sim_time_ms"] = round(self.sim_time_ms, 3)
        out["enumerate_s"] = round(self.enumerate_s, 3)
        out["wall_s"] = round(self.wall_s, 3)
        return out


def arrangements_for(
    space: ArrangementSpace,
    depth: int,
    sample: int | None,
    seed: int,
    max_exhaustive_depth: int = MAX_EXHAUSTIVE_DEPTH,
) -> tuple[list[tuple[int, ...]], str]:
    if sample is None:
        check_exhaustive_depth(space, depth, max_exhaustive_depth)
        return list(space.canonical(depth)), "exhaustive"
    return space.sample(depth, sample, seed), "sample"


def check_exhaustive_depth(space: ArrangementSpace, depth: int, limit: int) -> None:
    if depth > limit:
        raise ValueError(
            f"exhaustive runs go up to depth {limit} here ({space.canonical_count(depth):,} "
            f"canonical arrangements at depth {depth}); use --sample, or a cluster for "
            f"depth {MAX_CLUSTER_EXHAUSTIVE_DEPTH} (docs/netsim.md)"
        )


def run_twins(
    depth: int,
    *,
    config: TwinsConfig = TwinsConfig(),
    sample: int | None = None,
    sample_seed: int = 1,
    stop_after_failures: int | None = None,
    arrangements: Iterable[tuple[int, ...]] | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
    max_exhaustive_depth: int = MAX_EXHAUSTIVE_DEPTH,
    progress: ProgressCallback | None = None,
) -> TwinsSummary:
    """Run every canonical arrangement of `depth` (or a seeded sample, or the given ones)
    and aggregate.

    In this process by default; `jobs` > 1 (local processes) or an `executor` (a Dask
    cluster) runs tasks: for an exhaustive run, one per canonical prefix of
    PREFIX_ROUNDS rounds (each worker enumerates its own arrangements, so no list of
    millions is built here); otherwise contiguous chunks of the list. The tasks'
    summaries are merged in task order, which is the arrangements' order: the summary
    (counts and the first failures) is the serial one. With `stop_after_failures`, each
    task stops on its own. `progress` is called after every arrangement (in this process)
    or every finished task."""
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be in 1..{MAX_DEPTH}")
    if not 1 <= jobs <= 64:
        raise ValueError("jobs must be in 1..64")
    if executor is None and jobs > 1:
        from campaign.executor import LocalExecutor

        executor = LocalExecutor(jobs)
    space = ArrangementSpace(config.validators, config.twin, config.max_blocks)
    started = time.perf_counter()
    tasks: list[_TwinsTask] = []
    chosen: list[tuple[int, ...]] = []
    if arrangements is None and sample is None and executor is not None:
        check_exhaustive_depth(space, depth, max_exhaustive_depth)
        mode, total = "exhaustive", space.canonical_count(depth)
        split = min(depth, PREFIX_ROUNDS)
        tasks = [
            _TwinsTask(depth, config, stop_after_failures, prefix=prefix)
            for prefix in space.canonical(split)
        ]
    else:
        if arrangements is None:
            chosen, mode = arrangements_for(
                space, depth, sample, sample_seed, max_exhaustive_depth
            )
        else:
            chosen, mode = list(arrangements), "given"
        for indices in chosen:
            if len(indices) != depth or not all(
                0 <= c < space.choices_per_round for c in indices
            ):
                raise ValueError(f"arrangement {list(indices)} does not fit depth {depth}")
        total = len(chosen)
        if executor is not None:
            from campaign.executor import chunk_size, chunks

            size = chunk_size(total, TASK_CHUNKING_WORKERS, at_most=MAX_TASK_ARRANGEMENTS)
            tasks = [
                _TwinsTask(depth, config, stop_after_failures, given=tuple(chunk))
                for chunk in chunks(chosen, size)
            ]
    summary = TwinsSummary(
        depth=depth,
        max_blocks=config.max_blocks,
        protocol=config.protocol,
        mode=mode,
        choices_per_round=space.choices_per_round,
        generated=space.raw_count(depth),
        after_dedup=total if mode == "exhaustive" else None,
        enumerate_s=time.perf_counter() - started,
    )

    def report(done: int, failed: int) -> None:
        if progress is not None:
            progress(TwinsProgress(done, total, failed, time.perf_counter() - started))

    if executor is None:
        _run_list(summary, space, chosen, config, stop_after_failures, on_run=report)
    else:
        finished = [0, 0]  # arrangements run, with violations, over the tasks finished

        def arrived(_index: int, part: TwinsSummary) -> None:
            finished[0] += part.run
            finished[1] += part.failed
            report(finished[0], finished[1])

        parts = executor.map(_run_task, tasks, label="twins", on_result=arrived)
        for part in parts:  # in task order: the arrangements' order
            _merge(summary, part)
    summary.wall_s = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class _TwinsTask:
    """Arrangements for one worker: the canonical completions of `prefix`, or `given`."""

    depth: int
    config: TwinsConfig
    stop_after_failures: int | None
    prefix: tuple[int, ...] | None = None
    given: tuple[tuple[int, ...], ...] = ()


def _run_task(task: _TwinsTask) -> TwinsSummary:
    """Worker side: the partial summary of one task."""
    config = task.config
    space = ArrangementSpace(config.validators, config.twin, config.max_blocks)
    part = TwinsSummary(task.depth, config.max_blocks, config.protocol, "part", 0, 0, None)
    chosen = space.canonical(task.depth, task.prefix) if task.prefix is not None else task.given
    _run_list(part, space, chosen, config, task.stop_after_failures)
    return part


def _run_list(
    summary: TwinsSummary,
    space: ArrangementSpace,
    chosen: Iterable[tuple[int, ...]],
    config: TwinsConfig,
    stop_after_failures: int | None,
    on_run: Callable[[int, int], None] | None = None,
) -> None:
    """Run arrangements into `summary`; `on_run(run, failed)` so far after each."""
    for indices in chosen:
        arrangement = space.arrangement(indices)
        run = run_arrangement(arrangement, config)
        summary.run += 1
        summary.equivocations += run.equivocations
        summary.runs_with_equivocation += run.equivocations > 0
        summary.tcs += run.tcs
        summary.necs += run.necs
        summary.reproposals += run.reproposals
        summary.speculative_reverts += run.speculative_reverts
        summary.reproposal_reverts += run.reproposal_reverts
        summary.reproposal_tail_forks += run.reproposal_tail_forks
        summary.liveness[run.liveness] = summary.liveness.get(run.liveness, 0) + 1
        summary.events += run.events
        summary.partition_drops += run.partition_drops
        summary.sim_time_ms += run.sim_time_ms
        if run.violations:
            summary.failed += 1
            summary.agreement_failures += any(v.startswith("P1") for v in run.violations)
            if len(summary.failures) < MAX_REPORTED_FAILURES:
                summary.failures.append(
                    {
                        "arrangement": list(indices),
                        "describe": space.describe(arrangement, config.first_round),
                        "violations": run.violations[:5],
                        "trace_hash": run.trace_hash,
                    }
                )
            if stop_after_failures is not None and summary.failed >= stop_after_failures:
                if on_run is not None:
                    on_run(summary.run, summary.failed)
                return
        if on_run is not None:
            on_run(summary.run, summary.failed)


_SUMMED = (
    "run",
    "failed",
    "agreement_failures",
    "equivocations",
    "runs_with_equivocation",
    "tcs",
    "necs",
    "reproposals",
    "speculative_reverts",
    "reproposal_reverts",
    "reproposal_tail_forks",
    "events",
    "partition_drops",
    "sim_time_ms",
)


def _merge(summary: TwinsSummary, part: TwinsSummary) -> None:
    for name in _SUMMED:
        setattr(summary, name, getattr(summary, name) + getattr(part, name))
    for state, count in part.liveness.items():
        summary.liveness[state] = summary.liveness.get(state, 0) + count
    room = MAX_REPORTED_FAILURES - len(summary.failures)
    summary.failures.extend(part.failures[: max(0, room)])
