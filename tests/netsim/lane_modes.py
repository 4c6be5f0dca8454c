"""Run every netsim lane test in both lane modes (`[lanes] dissemination`)."""

from __future__ import annotations

import dataclasses

import pytest

from netsim.scenario import Scenario

MODES = ("certified", "carried")


def in_mode(text: str, mode: str) -> str:
    """Scenario text with `dissemination = mode` as the first key of its [lanes] table."""
    assert text.count("[lanes]\n") == 1, "one [lanes] table expected"
    return text.replace("[lanes]\n", f'[lanes]\ndissemination = "{mode}"\n')


def scenario_in_mode(scenario: Scenario, mode: str) -> Scenario:
    assert scenario.lanes is not None
    return scenario.with_(lanes=dataclasses.replace(scenario.lanes, dissemination=mode))


modes = pytest.mark.parametrize("mode", MODES)
