"""Same seed, same report: the simulator's speed work must not change any run.

Each case's full report (JSON, sorted keys: finalized heights, violations and their count,
statistics, message and event counts, the trace hash over every delivered event and
executed command) is hashed, and the digest must equal the one recorded from the tree
before the simulator's per-event work was cut (docs/performance.md, "Simulator"): the
engine's bookkeeping and the incremental invariant checkers are pure refactorings. The
cases cover every scenario file, the fault sweep under three protocols, every Byzantine
behaviour, runs where the checkers fire (rule switches off), both verification modes,
the random tie-break, the bandwidth model, and the benchmark's own configurations.

Regenerate (only when a change is *meant* to alter runs, and say why in the commit):
`python tests/netsim/test_report_digests.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consensus.byzantine import BEHAVIOURS, LANE_BEHAVIOURS
from netsim.runner import run_scenario
from netsim.scenario import load_scenario, parse_scenario_text
from netsim.sweep import randomized

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
BASE = load_scenario(SCENARIOS / "sweep_faults.toml")


def _bench(n: int, scheme: str, blocks: int, extra: str = "", network: str = "") -> Any:
    """The configuration `sedna bench sim` runs (netsim/bench.py)."""
    return parse_scenario_text(
        f'validators = {n}\nscheme = "{scheme}"\n{extra}'
        f"until_ms = 600000\nuntil_blocks = {blocks}\n"
        f"[network]\nlatency_ms = 10\ndelta_ms = 100\n{network}"
    )


def _behaviour(name: str) -> Any:
    return parse_scenario_text(
        'validators = 4\nseed = 3\nuntil_ms = 8000\nuntil_blocks = 25\nscheme = "ed25519"\n'
        "[network]\nlatency_ms = [1, 60]\nloss = 0.01\ndelta_ms = 100\n"
        f'[[byzantine]]\nnode = 1\nbehaviour = "{name}"\n'
    )


def cases() -> dict[str, Callable[[], dict[str, Any]]]:
    out: dict[str, Callable[[], dict[str, Any]]] = {}
    for path in sorted(SCENARIOS.glob("*.toml")):
        out[f"file/{path.stem}"] = lambda p=path: run_scenario(load_scenario(p)).report()
    for protocol in ("monadbft", "v1", "vanilla"):
        for seed in (1, 2, 3, 4):
            out[f"sweep/{protocol}/{seed}"] = lambda s=seed, p=protocol: run_scenario(
                randomized(BASE, s), seed=s, protocol=p
            ).report()
    for name in sorted(set(BEHAVIOURS) - LANE_BEHAVIOURS):
        out[f"behaviour/{name}"] = lambda b=name: run_scenario(_behaviour(b)).report()
    mutants = [  # seeds where the switched-off rule makes a checker fire
        ("double_vote", 54), ("skip_high_tip_check", 5), ("skip_reproposal_rule", 2),
        ("T-SEQ", 37), ("T-SEQ", 46), ("SIG", 8), ("SIG", 17),
    ]  # fmt: skip
    for mutation, seed in mutants:
        out[f"mutant/{mutation}/{seed}"] = lambda m=mutation, s=seed: run_scenario(
            randomized(BASE, s), seed=s, test_mutations=[m]
        ).report()
    out["mutant/commit_non_consecutive/s1"] = lambda: run_scenario(
        load_scenario(SCENARIOS / "s1_crashed_successor.toml"),
        test_mutations=["commit_non_consecutive"],
    ).report()
    out["bench/4/ed25519"] = lambda: run_scenario(_bench(4, "ed25519", 100)).report()
    out["bench/4/ed25519/per_node"] = lambda: run_scenario(
        _bench(4, "ed25519", 40, 'verification = "per_node"\n')
    ).report()
    out["bench/16/trusted"] = lambda: run_scenario(_bench(16, "trusted", 30)).report()
    out["random_tie_break"] = lambda: run_scenario(
        randomized(BASE, 9).with_(tie_break="random"), seed=9
    ).report()
    out["bandwidth"] = lambda: run_scenario(
        _bench(7, "trusted", 20, network="bandwidth_mbps = 2\n")
    ).report()
    return out


def digest(report: dict[str, Any]) -> str:
    """SHA-256 of the report without its `scenario` key (the file's path differs per checkout)."""
    kept = {key: value for key, value in report.items() if key != "scenario"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=repr).encode()).hexdigest()


# Recorded from main at 192771e (before the simulator per-event work); the three lane
# scenarios from main at e5b075f (BLS-aggregated availability proofs became the default,
# before the per-event work was merged).
EXPECTED: dict[str, str] = {
    "file/bad_height": "f14c5ac7ef4b80220c5b7486a7ef777c9f07a0397fe3282ab7db8df4e898d5bf",
    "file/bad_reproposal": "25205753e26f31e77f4c6713502d90f500f0f89097a9ba1aec1b2e70441cffa0",
    "file/bad_timestamp": "5098684b2807984834e26eae6bdfec5b80f24538c6f25d3ac5f42ad9d6b9be2b",
    "file/forged_tc_rank": "7fc8a5eed8d9ce25d6e0f96e0b427743c65120c7faf0622aa94c5aa4a5a07c47",
    "file/happy_path": "6cd249868665b217c8ed73bde67566eca7473dcd69354632ecae18047a341b62",
    "file/lanes_honest": "69d8a608a57215a1bda4424f123ff60130851169b119209b6e1e83544bdc3113",
    "file/lanes_ratchet": "9d4d6f34381b8f2bf2d0ccb4a9525461675ac64f911d199dec2baf396e328e60",
    "file/lanes_withholding": "b2214f6e2cdfb53f305e9305729d3eed5ca8a5d8b3323628fbe8205081816b55",
    "file/s1_crashed_successor": "d2f0ba6830676b89bd1906158039fdc5f04ea76898d8060f130808158d7412c3",
    "file/s2_malicious_successor": "07e9f0d7f82bbf1281dcd064a608d9cb823f6de419029cb13ea95b679b782139",
    "file/s3_under_disseminated": "23f7671c7e0de7127ede4de96ed04ff81f8125c3749f82513333f9cc95e905f0",
    "file/s4_equivocation": "ce2d9ea29413f9968616c257fba67159d7c0b603a2b9bd80763f0b5e02bb9360",
    "file/s5_leader_fault_isolation": "444d513889635a0dcb8ddd9c5cb6a6e24ed8f55c31f62a06ba8b6b8a665176c1",
    "file/strip_timeouts": "0ce0829cbf6ec5da0f8d8975621ab0fd51146a9532e25f4ebe9c5eaec1817484",
    "file/sweep_faults": "9ca85f15126173d46fe9decdd15ad64fb0e3441ca4e33cdc936f48a67f32067f",
    "sweep/monadbft/1": "1a5273de93bda1a670d5b86a36bb78f463fb275054b47b8ecd8ef25d577e58db",
    "sweep/monadbft/2": "66e564ea0062cbadd5fb7c12b206223cf643e5308a2aa1c53b12ba3c84dc6301",
    "sweep/monadbft/3": "3e0781021459be7f6bc8e690169ab1c604448b388eecb9f05adf29f0beb6e818",
    "sweep/monadbft/4": "a4f5467b9785edf6f572a575f037b7174306d9a1299f32a310bcfbef3fd4f913",
    "sweep/v1/1": "73b3021ff52001f12f297f834382cb691d8d933223dd205a27a3090b80ab2b69",
    "sweep/v1/2": "dfd7ed82f038a8995dec0202f14332f3674118f2cf3cf6fa6927ad2d36b8212e",
    "sweep/v1/3": "18bf47cdad9949b3401df9245a4c0c7766b34a9ab7137ec85021a5e27353e13a",
    "sweep/v1/4": "e7cff21fd3fd6da2fcb043f35d65fe4585a4a10b36208def52efac90f41bfc74",
    "sweep/vanilla/1": "5c1ede78fa1e4cc9df84848ad6a5300c32f2755b0131a13fb32df5f643edb8fa",
    "sweep/vanilla/2": "1a5ea41e6375a4fdad165b29fd5a3aa6661a6a1fcb317b43683d28dba6706898",
    "sweep/vanilla/3": "76a4b203123e08df84e54cc62f2e88cae5be3dc3259c3a073d7d0729ade68d3f",
    "sweep/vanilla/4": "1a0ceaee8ac5fc2068b281f2eccc969556498f834e9fb87819802ac2590d255b",
    "behaviour/bad_height": "efbc6be28121add96df098c143f7d0973f5d264e131351d36ccbc8966c5ace43",
    "behaviour/bad_reproposal": "af51dc8a915170de519f0e9b4d67d792577b9b180c258eb252834067ba57b8d6",
    "behaviour/bad_timestamp": "4aa5c80d14d30c0ce68cb1c2603d8e11ec9db33a4ddae32190765eef43d54e12",
    "behaviour/equivocate": "38fecf1014c2d8bb6244f1c660bab2797434ea3063104e5849055d288445ef6e",
    "behaviour/forged_tc_rank": "af51dc8a915170de519f0e9b4d67d792577b9b180c258eb252834067ba57b8d6",
    "behaviour/invalid_signatures": "573bb73b56e3e3a9db83fc35f7683ff03eeab105b1273b1c8728bbb2e25cfb69",
    "behaviour/ne_spam": "29f145bcb50a48f23ece3ab8ac60e8e8eecf39b1ff4d1ea705a3d3671976821e",
    "behaviour/silent": "36ec5f1186a06504321c03f854eaa6937ddde719b5e47976f820ddb02baacf1b",
    "behaviour/stale_spam": "5d8ca7afb2e703af09fd3d1740c8a96674e28db4a4f11f0286d2eaa8c6be206c",
    "behaviour/strip_timeouts": "af51dc8a915170de519f0e9b4d67d792577b9b180c258eb252834067ba57b8d6",
    "behaviour/tail_fork": "12f5cbf69221453ba697fc2f105e22f709679c89bcf89eab9469645365d2faf5",
    "behaviour/withhold_qc": "b94bcbd9c92914cf270317b4e40f17d848dfe00664cc890e57db906739c11f03",
    "behaviour/withhold_votes": "c270e6132bb40b0db49c2ef5550cdbbe8f259f462960f0a5ac779559616f81de",
    "mutant/double_vote/54": "67a125a26137a40cf4a7cd52a90de433a0e7cacb6ff53b6020d675c40e180397",
    "mutant/skip_high_tip_check/5": "0ba58565a808287a5e41be4f6bdb752d9815b6a692605ce8ad0c6c21c854c161",
    "mutant/skip_reproposal_rule/2": "45a85280f9ac4742185f3d938fc96731cb5523e65d2498d6003ed321c2da9914",
    "mutant/T-SEQ/37": "d4a920a6e3ee520cf78253a1a16489652bc8acb1d88a7677ae882e4501e7bef9",
    "mutant/T-SEQ/46": "79b6ae2d2e1d35e37be4c8c03ac0f6a1138deca70396f779e21a6796c54ca7c6",
    "mutant/SIG/8": "9cd803dded31def032611ab6140dd1e363ca26bddadab5ddf1dbb7a556b1483e",
    "mutant/SIG/17": "2f162cd1cbf589c3b98e03827f5e9e8ae68ed156d21aa6dbec1af6e09bb91121",
    "mutant/commit_non_consecutive/s1": "2090589bafc3a0e0bc596a29e1f8571c4a9c8d75136846ef120148ad0891a4e8",
    "bench/4/ed25519": "eba694ecd1d06d8192bdab20bce56893ee8ee80faaa8e1e599129c7fc0e97f7b",
    "bench/4/ed25519/per_node": "eec765ad9be800677fc0bd326f8a20baadf4e40dffe6b1b1b3a85375c51a2a6c",
    "bench/16/trusted": "873b84059a0e2b0c630dabf84732489fd67a1002a314e370e877a988a6cbf8e4",
    "random_tie_break": "b08b2e2c1d2b5ef8ec62fd96eedce17b30bf33556af374679cff24b01cbbb69c",
    "bandwidth": "234c16bbf4166c6d48bb4d619f2b9b06c9f04af06e0420a85d0acbe1cfb9c95f",
}


@pytest.mark.parametrize("name", sorted(cases()))
def test_report_is_the_one_recorded_before(name: str) -> None:
    assert digest(cases()[name]()) == EXPECTED[name]


if __name__ == "__main__":
    import time

    for name, make in cases().items():
        start = time.process_time()
        report = make()
        print(
            f'    "{name}": "{digest(report)}",  # {time.process_time() - start:.2f}s '
            f"v={report['violation_count']}"
        )
