"""Bandwidth: Sedna coded lanes vs naive replication at equal failure probability (issue 4).

Offline model (no network; netsim will re-measure end to end). Per-bundle miss
probability r = β (cartel fraction β withholds everything, honest lanes include, q = 1).

A. One-shot, equal failure probability ε (sedna.md §1.4):
   naive:  R = ceil(ln ε / ln r) full copies;      coded: n_min = min{n : P(Bin(n,1−r) ≤ κ−1) ≤ ε}
   ρ_code = n_min/κ (symbols only), ρ_layout = n_min·s_b·T/|x| (with AONT key, padding, margin),
   ρ_wire = n_min·(encoded submission bytes)/|x|, measured from real encoded submissions
   (bundle + commitment + Merkle path + signed ticket). |x| = 4 KiB·κ (~4 KiB bundles).
   gain G = R / ρ; bound = 1/(1−r); ratio = ρ/bound.
B. The same one-shot setting run through the real lane pipeline (LocalLanes): each lane is a
   cartel member independently with probability β; empirical failure rate vs the model.
C. Rateless with feedback: m fresh lanes per slot until decoded (the sender's real policy);
   bundles actually sent per payload / κ vs the bound 1/(1−β). The bound is for a memoryless
   erasure channel; with the ratchet the sender stops addressing cartel lanes, so the
   channel improves and the ratio can drop below 1.

D. Netsim, one-shot at equal failure probability (the issue-4 measurement): N validators,
   c = round(βN) of them a withholding cartel (`withhold_bundles`, one pool), the real core
   and network. Coded: each payload is addressed to m fresh lanes per slot for t slots, no
   feedback (`sending = "one_shot"`); (m, t) minimise n = m·t subject to the exact model
   failure P(S_t < κ) <= ε (mechanism.delay.p_behind, fresh hypergeometric, N lanes, q = 1).
   Naive: R full copies to R distinct lanes (a κ = 1 layout, one slot), R the least with
   C(c,R)/C(N,R) <= ε. Counted per payload, from what the senders put on the wire:
   symbol bytes (s_b·T per bundle: AONT key, padding and decode margin included) and wire
   bytes (the encoded LaneEntry: symbols + commitment + Merkle path + signed ticket).
   Naive "copy bytes" = R·|x| (a bare copy, no envelope: the idealised baseline).
E. Netsim, send-until-decoded (the sender's default policy): fresh lanes, m per slot until
   the sender sees the payload executed. "sent" counts every bundle (including those sent
   during the finality lag after decoding); "to decode" counts the bundles addressed up to
   and including the decode slot (m per slot). Both / κ, against the bound 1/(1−β).

    .venv/bin/python benchmarks/bench_bandwidth.py [--trials 200] [--quick]
    .venv/bin/python benchmarks/bench_bandwidth.py --netsim-only [--payloads 100] [--eps 1e-3]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics

from scipy.stats import binom

from consensus.crypto import TRUSTED, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.local import LocalLanes
from consensus.lanes.params import LaneParams, layout_for, params_for_kappa
from consensus.lanes.proposer import CartelPool, WithholdPolicy
from consensus.lanes.sender import AddressPolicy, SenderConfig
from consensus.lanes.tickets import make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry, encode_lane_entry
from mechanism.delay import p_behind
from mechanism.params import SednaParams
from netsim.runner import run_scenario
from netsim.scenario import ByzantineSpec, Scenario, parse_scenario_text

BYTES_PER_BUNDLE_A = 4096  # |x| = 4 KiB·κ, so a bundle carries about 4 KiB
BETAS = (0.1, 1 / 3)


def _bytes(seed: str, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def _uniform(seed: str) -> float:
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64


def naive_copies(r: float, eps: float) -> int:
    return math.ceil(math.log(eps) / math.log(r))


def n_min(kappa: int, r: float, eps: float) -> int:
    n = kappa
    while binom.cdf(kappa - 1, n, 1 - r) > eps:  # bounded: n grows to ~κ/(1−r)+O(√κ)
        n += 1
    return n


def submission_bytes(params: LaneParams, payload: bytes) -> int:
    key = derive_keys(1, "bench-sender")[0]
    encoded = encode_payload(params, payload, _bytes("k", 32), key.public, expiry_slot=1)
    ticket = make_ticket(encoded.commitment_id, 0, 1, 0, 1)
    entry = LaneEntry(encoded.bundles[0], sign_ticket(TRUSTED, key, ticket))
    return len(encode_lane_entry(entry))


def part_a(kappas: list[int], epsilons: list[float]) -> None:
    print(f"A. one-shot at equal failure probability, |x| = {BYTES_PER_BUNDLE_A} B * kappa")
    print(
        f"{'beta':>6} {'eps':>7} {'kappa':>5} {'R_naive':>7} {'n_min':>5} {'rho_code':>8}"
        f" {'rho_layout':>10} {'rho_wire':>8} {'G_code':>6} {'G_wire':>6} {'bound':>6}"
        f" {'code/bound':>10} {'wire/bound':>10}"
    )
    for beta in BETAS:
        for eps in epsilons:
            for kappa in kappas:
                size = BYTES_PER_BUNDLE_A * kappa
                payload = _bytes(f"payload/{kappa}", size)
                params = params_for_kappa(size, kappa)
                layout = layout_for(params, size)
                n = n_min(kappa, beta, eps)
                rho_code = n / kappa
                rho_layout = n * layout.bundle_bytes / size
                rho_wire = n * submission_bytes(params, payload) / size
                copies = naive_copies(beta, eps)
                bound = 1 / (1 - beta)
                print(
                    f"{beta:>6.3f} {eps:>7.0e} {kappa:>5} {copies:>7} {n:>5} {rho_code:>8.3f}"
                    f" {rho_layout:>10.3f} {rho_wire:>8.3f} {copies / rho_code:>6.2f}"
                    f" {copies / rho_wire:>6.2f} {bound:>6.3f}"
                    f" {rho_code / bound:>10.3f} {rho_wire / bound:>10.3f}"
                )


def part_b(trials: int, kappas: list[int], eps: float) -> None:
    print(
        f"\nB. pipeline Monte Carlo of A (eps target {eps:g}, {trials} trials, |x| = 4 KiB*kappa)"
    )
    print(
        f"{'beta':>6} {'kappa':>5} {'n_min':>5} {'model P_fail':>12} {'measured':>8}"
        f" {'wire B/payload':>14} {'naive B':>8} {'G':>5}"
    )
    for beta in BETAS:
        for kappa in kappas:
            size = BYTES_PER_BUNDLE_A * kappa
            params = params_for_kappa(size, kappa)
            n = n_min(kappa, beta, eps)
            model = binom.cdf(kappa - 1, n, 1 - beta)
            failures = 0
            wire = []
            for trial in range(trials):
                cartel = [i for i in range(n) if _uniform(f"{beta}/{kappa}/{trial}/{i}") < beta]
                pool = CartelPool()
                net = LocalLanes(
                    params, lanes=n, withhold={i: WithholdPolicy(pool) for i in cartel}
                )
                config = SenderConfig(lanes=n, bundles_per_slot=n, policy=AddressPolicy.ALL)
                sender = net.add_sender(config, b"b")
                cid = sender.submit(_bytes(f"p{trial}", size), _bytes(f"k{trial}", 32), 1)
                net.run_slot()
                failures += net.trackers[0].status(cid) != "executed"
                wire.append(net.submitted_bytes)
            naive = naive_copies(beta, eps) * (size + 100)  # a copy plus a signed envelope
            per_payload = statistics.median(wire)
            print(
                f"{beta:>6.3f} {kappa:>5} {n:>5} {model:>12.2e} {failures / trials:>8.3f}"
                f" {per_payload:>14.0f} {naive:>8} {naive / per_payload:>5.2f}"
            )


def part_c(trials: int, kappas: list[int]) -> None:
    print(f"\nC. rateless with feedback: fresh lanes, N = 32, m = 8, {trials} trials, 4 KiB*kappa")
    print(
        f"{'beta':>6} {'kappa':>5} {'ratchet':>7} {'sent/kappa':>10} {'bound':>6}"
        f" {'ratio':>6} {'slots':>5}"
    )
    lanes, m = 32, 8
    for beta in BETAS:
        for kappa in kappas:
            size = BYTES_PER_BUNDLE_A * kappa
            params = params_for_kappa(size, kappa)
            for ratchet in (False, True):
                sent, slots = [], []
                for trial in range(trials):
                    cartel = [
                        i for i in range(lanes) if _uniform(f"c/{beta}/{kappa}/{trial}/{i}") < beta
                    ]
                    pool = CartelPool()
                    net = LocalLanes(
                        params, lanes=lanes, withhold={i: WithholdPolicy(pool) for i in cartel}
                    )
                    config = SenderConfig(
                        lanes=lanes, bundles_per_slot=m, ratchet=ratchet, seed=bytes([trial % 256])
                    )
                    sender = net.add_sender(config, b"c")
                    cid = sender.submit(_bytes(f"c{trial}", size), _bytes("k", 32), 1)
                    for _ in range(4 * kappa):  # bounded; the cap stops sending anyway
                        net.run_slot()
                        if net.trackers[0].status(cid) == "executed":
                            break
                    if net.trackers[0].status(cid) == "executed":
                        sent.append(sender.payloads[cid].bundles_sent)
                        slots.append(net.slot)
                bound = 1 / (1 - beta)
                ratio = statistics.mean(sent) / kappa / bound if sent else float("nan")
                print(
                    f"{beta:>6.3f} {kappa:>5} {ratchet!s:>7} {statistics.mean(sent) / kappa:>10.3f}"
                    f" {bound:>6.3f} {ratio:>6.3f} {statistics.mean(slots):>5.1f}"
                    f"{'' if len(sent) == trials else f'  ({trials - len(sent)} never decoded)'}"
                )


NETSIM_BASE = """
validators = {n}
seed = {seed}
until_ms = 3600000
until_blocks = {blocks}
payload_bytes = 0
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
"""


def netsim_scenario(n: int, cartel: int, seed: int, blocks: int, **lanes: object) -> Scenario:
    """N validators, the last `cartel` of them withholding (beyond the 1/3 parser check:
    withholders are consensus-honest, so the run stays live and safe)."""
    text = NETSIM_BASE.format(n=n, seed=seed, blocks=blocks)
    for key, value in lanes.items():
        text += f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}\n"
    scenario = parse_scenario_text(text, "<bench>")
    members = range(n - cartel, n)
    return scenario.with_(byzantine=tuple(ByzantineSpec(i, "withhold_bundles") for i in members))


def one_shot_plan(kappa: int, lanes: int, cartel: int, eps: float) -> tuple[int, int, float]:
    """(m, t, model failure) minimising n = m·t with P(S_t < κ) <= ε, fresh lanes, q = 1."""
    best: tuple[int, int, int, float] | None = None
    for m in range(1, lanes + 1):
        t = -(-kappa // m)
        params = SednaParams(kappa=kappa, m=m, beta=cartel / lanes, lanes=lanes)
        while t * m <= 4 * kappa:  # bounded: the stream cap is 4κ bundles
            fail = p_behind(params, t)
            if fail <= eps:
                if best is None or t * m < best[0]:
                    best = (t * m, m, t, fail)
                break
            t += 1
    if best is None:
        raise ValueError(f"no one-shot plan within 4κ bundles for κ={kappa}, ε={eps}")
    return best[1], best[2], best[3]


def naive_plan(lanes: int, cartel: int, eps: float) -> tuple[int, float]:
    """R distinct lanes with P(all R are cartel lanes) = C(c,R)/C(N,R) <= ε."""
    for copies in range(1, lanes + 1):
        fail = math.comb(cartel, copies) / math.comb(lanes, copies)
        if fail <= eps:
            return copies, fail
    raise ValueError("unreachable: R = c + 1 always works")


def measure(scenario: Scenario) -> dict[str, float]:
    run = run_scenario(scenario)
    report = run.report()
    if report["violations"]:
        raise RuntimeError(f"netsim violation: {report['violations'][0]}")
    records = [r for r in run.lanes.records if r.status != "scheduled"]
    count = len(records)
    executed = [r for r in records if r.status == "executed"]
    m = run.lanes.m
    return {
        "payloads": count,
        "failed": count - len(executed),
        "bundles": sum(r.bundles_sent for r in records) / count,
        "symbol": sum(r.symbol_bytes for r in records) / count,
        "wire": sum(r.wire_bytes for r in records) / count,
        "to_decode": statistics.mean(
            m * (r.decided_height - r.first_slot + 1) for r in executed if r.decided_height
        )
        if executed
        else float("nan"),
        "slots": statistics.mean(r.decided_height - r.first_slot + 1 for r in executed)
        if executed
        else float("nan"),
    }


def part_d(kappas: list[int], lanes: int, payloads: int, eps: float, bundle_bytes: int) -> None:
    print(
        f"\nD. netsim one-shot at equal failure probability: N = {lanes} validators, "
        f"eps = {eps:g}, {payloads} payloads per row, |x| = {bundle_bytes} B * kappa"
    )
    print(
        f"{'beta':>6} {'kappa':>5} {'m x t':>7} {'n':>4} {'R':>3} {'P_fail c/n':>17}"
        f" {'failed c/n':>10} {'sym/|x|':>7} {'wire/|x|':>8} {'naive wire/|x|':>14}"
        f" {'G_sym':>6} {'G_wire':>6} {'n/k/bound':>9} {'sym/bound':>9}"
    )
    for beta in BETAS:
        cartel = round(beta * lanes)
        r = cartel / lanes
        bound = 1 / (1 - r)
        for kappa in kappas:
            size = bundle_bytes * kappa
            m, t, p_coded = one_shot_plan(kappa, lanes, cartel, eps)
            copies, p_naive = naive_plan(lanes, cartel, eps)
            blocks = 4 + payloads + t + 6
            common = {"payloads": payloads, "payload_bytes": size, "sending": "one_shot"}
            coded = measure(
                netsim_scenario(
                    lanes,
                    cartel,
                    1,
                    blocks,
                    kappa=kappa,
                    bundles_per_slot=m,
                    one_shot_slots=t,
                    **common,
                )
            )
            naive = measure(
                netsim_scenario(
                    lanes, cartel, 2, blocks, kappa=1, bundles_per_slot=copies, **common
                )
            )
            failed = f"{coded['failed']:.0f}/{naive['failed']:.0f}"
            g_sym = copies * size / coded["symbol"]
            g_wire = naive["wire"] / coded["wire"]
            print(
                f"{r:>6.3f} {kappa:>5} {f'{m}x{t}':>7} {m * t:>4} {copies:>3}"
                f" {f'{p_coded:.1e}/{p_naive:.1e}':>17}"
                f" {failed:>10}"
                f" {coded['symbol'] / size:>7.3f} {coded['wire'] / size:>8.3f}"
                f" {naive['wire'] / size:>14.3f} {g_sym:>6.2f} {g_wire:>6.2f}"
                f" {m * t / kappa / bound:>9.3f} {coded['symbol'] / size / bound:>9.3f}"
            )


def part_e(kappas: list[int], lanes: int, m: int, payloads: int, bundle_bytes: int) -> None:
    print(
        f"\nE. netsim send-until-decoded: N = {lanes}, fresh, m = {m}, {payloads} payloads,"
        f" |x| = {bundle_bytes} B * kappa"
    )
    print(
        f"{'beta':>6} {'kappa':>5} {'ratchet':>7} {'slots':>5} {'sent/k':>6} {'to_decode/k':>11}"
        f" {'bound':>6} {'sent/bound':>10} {'to_decode/bound':>15} {'failed':>6}"
    )
    for beta in BETAS:
        cartel = round(beta * lanes)
        bound = 1 / (1 - cartel / lanes)
        for kappa in kappas:
            for ratchet in (False, True):
                t_star = -(-kappa // m)
                blocks = 4 + payloads + 3 * t_star + 10
                res = measure(
                    netsim_scenario(
                        lanes,
                        cartel,
                        3,
                        blocks,
                        payloads=payloads,
                        payload_bytes=bundle_bytes * kappa,
                        kappa=kappa,
                        bundles_per_slot=m,
                        ratchet=ratchet,
                    )
                )
                print(
                    f"{cartel / lanes:>6.3f} {kappa:>5} {ratchet!s:>7} {res['slots']:>5.1f}"
                    f" {res['bundles'] / kappa:>6.3f} {res['to_decode'] / kappa:>11.3f}"
                    f" {bound:>6.3f} {res['bundles'] / kappa / bound:>10.3f}"
                    f" {res['to_decode'] / kappa / bound:>15.3f} {res['failed']:>6.0f}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and trials")
    parser.add_argument("--netsim-only", action="store_true", help="only parts D and E")
    parser.add_argument("--lanes", type=int, default=30, help="netsim validators (= lanes)")
    parser.add_argument("--payloads", type=int, default=100, help="netsim payloads per row")
    parser.add_argument("--eps", type=float, default=1e-3, help="netsim one-shot target ε")
    parser.add_argument("--bundle-bytes", type=int, default=1024, help="netsim |x| / κ")
    args = parser.parse_args()
    if not 4 <= args.lanes <= 256 or not 1 <= args.payloads <= 10_000 or not 0 < args.eps < 1:
        parser.error("need 4 <= --lanes <= 256, 1 <= --payloads <= 10000, 0 < --eps < 1")
    trials = 30 if args.quick else args.trials
    if not args.netsim_only:
        part_a([8, 16, 32, 64, 128, 256], [1e-3, 1e-6])
        part_b(trials, [8, 16] if args.quick else [8, 16, 64], 1e-2)
        part_c(max(10, trials // 10), [16, 64] if args.quick else [16, 64, 128])
    payloads = 20 if args.quick else args.payloads
    part_d(
        [8, 16] if args.quick else [8, 16, 32, 64],
        args.lanes,
        payloads,
        args.eps,
        args.bundle_bytes,
    )
    part_e(
        [16] if args.quick else [16, 64], args.lanes, 4, max(10, payloads // 4), args.bundle_bytes
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
