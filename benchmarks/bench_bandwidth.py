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

    .venv/bin/python benchmarks/bench_bandwidth.py [--trials 200] [--quick]
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
    encoded = encode_payload(params, payload, _bytes("k", 32), key.public)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="fewer configurations and trials")
    args = parser.parse_args()
    trials = 30 if args.quick else args.trials
    part_a([8, 16, 32, 64, 128, 256], [1e-3, 1e-6])
    part_b(trials, [8, 16] if args.quick else [8, 16, 64], 1e-2)
    part_c(max(10, trials // 10), [16, 64] if args.quick else [16, 64, 128])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
