"""pytest plugin for the mutation matrix: `-p tests.netsim.mutant_plugin --mutant NAME`.

With `--mutant NAME`, every `CoreConfig` built during the session carries the TEST-ONLY
rule switch NAME (consensus.mutations), so every core the tests build (unit tests,
simulations, Twins, stateful runs) runs without that one rule, and so does each core's own
`Verifier`. Verifiers built outside a core (the netsim checkers, the oracles) stay whole.
`netsim.mutants` (`sedna sim mutants`) starts one pytest per switch with this plugin.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from consensus.core import CoreConfig
from consensus.mutations import TEST_MUTATIONS

MUTANT_TEST_TIMEOUT_S = 120  # a test still running after this under a switch is killed


class MutantTimeout(Exception):
    """A test ran past the limit under a rule switch: the switch made it hang (a kill)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mutant",
        default=None,
        help="run every core with this TEST-ONLY rule switch (consensus.mutations)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Under a switch, a test that runs past MUTANT_TEST_TIMEOUT_S fails (the switch made
    a bounded run spin to its budget: the suite noticed)."""
    if item.config.getoption("--mutant") is None:
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise MutantTimeout(f"still running after {MUTANT_TEST_TIMEOUT_S} s under the switch")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(MUTANT_TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--mutant")
    if name is None:
        return
    if name not in TEST_MUTATIONS:
        raise pytest.UsageError(f"--mutant: unknown rule switch {name!r}")
    original = CoreConfig.__post_init__

    def with_mutant(self: CoreConfig) -> None:
        object.__setattr__(self, "test_mutations", frozenset(self.test_mutations) | {name})
        original(self)

    CoreConfig.__post_init__ = with_mutant  # type: ignore[method-assign]
    config.add_cleanup(lambda: setattr(CoreConfig, "__post_init__", original))
