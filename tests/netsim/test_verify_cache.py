"""The simulator's shared verification cache (netsim.verify_cache)."""

from __future__ import annotations

import pytest

from consensus.crypto import Domain, derive_keys, scheme_by_name
from netsim.runner import build_world, run_scenario
from netsim.scenario import ByzantineSpec, ScenarioError, parse_scenario_text
from netsim.verify_cache import SharedVerification

BASE = """
validators = 4
scheme = "ed25519"
seed = 5
until_ms = 20000
until_blocks = 12
[network]
latency_ms = [1, 30]
delta_ms = 100
"""


def _signed(scheme, key, payload: bytes = b"payload") -> bytes:
    return scheme.sign(key, Domain.VOTE, payload)


def test_answers_equal_the_bare_scheme_and_each_tuple_is_verified_once() -> None:
    bare = scheme_by_name("ed25519", chain_id="sedna-netsim")
    shared = SharedVerification(bare)
    key, other = derive_keys(2, b"verify-cache")
    good = _signed(bare, key)
    bad = bytes([good[0] ^ 1]) + good[1:]
    cases = [
        (key.public, Domain.VOTE, b"payload", good),
        (key.public, Domain.VOTE, b"payload", bad),  # same message, other signature
        (other.public, Domain.VOTE, b"payload", good),  # other key
        (key.public, Domain.TIMEOUT, b"payload", good),  # other domain
        (key.public, Domain.VOTE, b"payloaX", good),  # other payload
    ]
    for _ in range(3):
        assert [shared.verify(*c) for c in cases] == [bare.verify(*c) for c in cases]
    assert [bare.verify(*c) for c in cases] == [True, False, False, False, False]
    assert (shared.misses, shared.hits, len(shared)) == (5, 10, 5)


def test_the_cache_is_per_chain() -> None:
    shared = SharedVerification(scheme_by_name("ed25519", chain_id="chain-a"))
    (key,) = derive_keys(1, b"verify-cache")
    signature = _signed(shared, key)
    assert shared.verify(key.public, Domain.VOTE, b"payload", signature)
    other = shared.for_chain("chain-b")
    assert other.chain_id == "chain-b" and len(other) == 0
    assert not other.verify(key.public, Domain.VOTE, b"payload", signature)


def test_the_cache_is_bounded() -> None:
    shared = SharedVerification(scheme_by_name("trusted"), max_entries=3)
    (key,) = derive_keys(1, b"verify-cache")
    for i in range(10):
        payload = b"p%d" % i
        assert shared.verify(key.public, Domain.VOTE, payload, _signed(shared, key, payload))
    assert len(shared) == 3
    with pytest.raises(ValueError):
        SharedVerification(scheme_by_name("trusted"), max_entries=0)


def test_the_scenario_chooses_the_mode() -> None:
    scenario = parse_scenario_text(BASE)
    assert scenario.verification == "shared"
    assert isinstance(build_world(scenario).scheme, SharedVerification)
    per_node = parse_scenario_text(BASE + "\n").with_(verification="per_node")
    assert not isinstance(build_world(per_node).scheme, SharedVerification)
    text = BASE.replace('scheme = "ed25519"', 'scheme = "ed25519"\nverification = "per_node"')
    assert parse_scenario_text(text).verification == "per_node"
    with pytest.raises(ScenarioError):
        parse_scenario_text(BASE.replace('scheme = "ed25519"', 'verification = "some"'))


@pytest.mark.parametrize("behaviour", [None, "invalid_signatures", "equivocate"])
def test_shared_and_per_node_runs_are_identical(behaviour: str | None) -> None:
    """A cache of a pure function changes nothing a run does, only how often it computes."""
    scenario = parse_scenario_text(BASE)
    if behaviour is not None:
        scenario = scenario.with_(byzantine=(ByzantineSpec(1, behaviour),))
    shared = run_scenario(scenario).report()
    per_node = run_scenario(scenario.with_(verification="per_node")).report()
    assert shared == per_node
    assert shared["violations"] == []
    if behaviour == "invalid_signatures":
        assert any("signature" in reason for reason in shared["rejected"])


def test_shared_runs_share_one_certificate_cache_and_per_node_runs_do_not() -> None:
    from netsim.runner import make_factory

    for mode, expect_shared in (("shared", True), ("per_node", False)):
        world = build_world(parse_scenario_text(BASE).with_(verification=mode))
        factory = make_factory(world, byzantine_rng_seed=1)
        cores = [factory(i, i, None) for i in range(4)]
        caches = {id(core.verifier._verified) for core in cores}
        signatures = {id(core.verifier._valid_signatures) for core in cores}
        assert (len(caches), len(signatures)) == ((1, 1) if expect_shared else (4, 4)), mode


def test_caches_are_shared_only_between_identical_verifiers() -> None:
    from consensus.certificates import Verifier
    from consensus.validators import schedule_by_name

    world = build_world(parse_scenario_text(BASE))
    schedule = world.schedule
    base = Verifier(world.validators, schedule, world.scheme)
    Verifier(world.validators, schedule, world.scheme).share_caches_with(base)
    others = [
        Verifier(world.validators, schedule, world.scheme, protocol="v1"),
        Verifier(world.validators, schedule, world.scheme, epoch=2),
        Verifier(world.validators, schedule, world.scheme, test_mutations=frozenset({"SIG"})),
        Verifier(world.validators, schedule, scheme_by_name("trusted")),
        Verifier(world.validators, schedule_by_name("round-robin", world.validators), world.scheme),
    ]
    for other in others:
        with pytest.raises(ValueError, match="identically configured"):
            other.share_caches_with(base)
