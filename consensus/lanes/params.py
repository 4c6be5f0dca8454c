"""Lane parameters and the per-payload layout: symbols, bundles, κ and the stream cap.

Notation (docs/lanes.md, sedna.md §2.2): a payload of `L` bytes becomes the transformed
payload x' (package transform, `consensus.lanes.aont`) of exactly `K·T` bytes, cut into K
source symbols of T bytes. Senders only ever send *repair* symbols (RaptorQ is
systematic: its first K symbols would be x' itself). A bundle is `s_b` consecutive repair
symbols. With a decode margin of `h` symbols:

    K_min = ceil((L + 32) / T)              # 32 = the AONT key block
    κ     = ceil((K_min + h) / s_b)         # bundles needed to decode
    K     = κ·s_b − h                       # pad x' so that κ bundles hold exactly K + h symbols
    cap   = cap_factor · κ + cap_extra      # bundles in the committed (Merkle) stream

Padding K up to κ·s_b − h (inside the encryption, so the padding is ciphertext) makes
κ−1 bundles hold `K + h − s_b < K` symbols whenever `h < s_b`: below κ bundles a
receiver has fewer equations than unknowns, so it cannot *decode*. It can still *guess*:
at best (an MDS code) s_b − h symbols, i.e. 8·T·(s_b − h) bits, stay unknown, and each
guess of them is checked by decoding and inverting the package transform. So the params
must leave at least `MIN_UNKNOWN_BITS` = 128 unknown bits below κ (the security level of
the transform's key), which `LaneParams` enforces. At κ bundles RaptorQ decodes with
failure probability about 1e-2, 1e-4, 1e-6 for h = 0, 1, 2 (RFC 6330); Reed-Solomon is
MDS and needs h = 0.

The cap has a proportional and an absolute part because a sender's losses do: bundles
withheld by a cartel grow with κ (≈ β/(1−β)·κ without the ratchet), bundles sent while
the sender waits for finality do not (≈ m per slot of lag). Defaults 2·κ + 24: see
docs/lanes.md ("Why a cap, and its cost") for the bound and the simulation behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

AONT_KEY_BYTES = 32
CODEC_IDS = ("raptorq", "rs")
RAPTORQ_SYMBOL_ALIGNMENT = 8  # RFC 6330 symbol alignment used by the raptorq crate
RAPTORQ_MAX_SOURCE_SYMBOLS = 56_403  # RFC 6330 maximum K' of one source block
RAPTORQ_MAX_ESI = 2**24 - 1  # 24-bit encoding symbol ids
RS_MAX_CODEWORD = 255  # GF(2^8) Reed-Solomon codeword length
MAX_SYMBOL_BYTES = 16 * 1024
MAX_SYMBOLS_PER_BUNDLE = 256
MAX_CAP_FACTOR = 64
MAX_CAP_EXTRA_BUNDLES = 4096
DEFAULT_MAX_LIFETIME_SLOTS = 4096  # a payload's tickets span at most this many slots
DEFAULT_MAX_CUT_LAG_SLOTS = 1024  # certified lanes: W, a lane block counts if cut this late
MAX_LIFETIME_SLOTS = 1 << 20
DEFAULT_CAP_FACTOR = 2
DEFAULT_CAP_EXTRA_BUNDLES = 24  # ≈ m·(finality lag + 1) for m = 8 bundles per slot, lag 2
MAX_SEARCH_SYMBOLS_PER_BUNDLE = 64
PER_SYMBOL_COST_BYTES = 32  # params_for_kappa's price of one more symbol (its hash)
MIN_UNKNOWN_BITS = 128  # bits an attacker holding κ−1 bundles must still guess, at least


def unknown_bits_below_kappa(symbol_size_bytes: int, symbols_per_bundle: int, margin: int) -> int:
    """Bits of x' that κ−1 bundles leave undetermined in the best case for an attacker
    (an MDS code): the s_b − h symbols κ bundles carry beyond K + h − s_b."""
    return 8 * symbol_size_bytes * (symbols_per_bundle - margin)


class LaneParamsError(ValueError):
    """Parameters (or a payload size) outside what the lane layer supports."""


@dataclass(frozen=True, slots=True)
class LaneParams:
    """Chain-wide lane parameters; every node must use the same values.

    `decode_margin_symbols` (h) is the RaptorQ decode-overhead margin: κ bundles carry
    K + h symbols. The committed symbol stream has `cap_factor·κ + cap_extra_bundles`
    bundles (the sender cannot send more fresh bundles than that for one payload).
    `max_lifetime_slots`: a commitment's `expiry_slot` is at most this many slots after
    the slot of any of its tickets (it bounds how long trackers remember decided ids).
    `max_cut_lag_slots` (W, certified lanes only): a lane block finalized by a cut more
    than W heights after its slot is void (docs/lanes.md, "Tip cuts").
    """

    codec_id: str = "raptorq"
    symbol_size_bytes: int = 1024
    symbols_per_bundle: int = 8
    decode_margin_symbols: int = 2
    cap_factor: int = DEFAULT_CAP_FACTOR
    max_payload_bytes: int = 1024 * 1024
    max_entries_per_lane_block: int = 256
    cap_extra_bundles: int = DEFAULT_CAP_EXTRA_BUNDLES
    max_lifetime_slots: int = DEFAULT_MAX_LIFETIME_SLOTS
    max_cut_lag_slots: int = DEFAULT_MAX_CUT_LAG_SLOTS

    def __post_init__(self) -> None:
        if self.codec_id not in CODEC_IDS:
            raise LaneParamsError(f"unknown codec {self.codec_id!r}; choose one of {CODEC_IDS}")
        if not 1 <= self.symbol_size_bytes <= MAX_SYMBOL_BYTES:
            raise LaneParamsError(f"symbol_size_bytes must be in [1, {MAX_SYMBOL_BYTES}]")
        if self.codec_id == "raptorq" and self.symbol_size_bytes % RAPTORQ_SYMBOL_ALIGNMENT:
            raise LaneParamsError("raptorq symbol_size_bytes must be a multiple of 8")
        if not 1 <= self.symbols_per_bundle <= MAX_SYMBOLS_PER_BUNDLE:
            raise LaneParamsError(f"symbols_per_bundle must be in [1, {MAX_SYMBOLS_PER_BUNDLE}]")
        # rule: κ−1 bundles must hold fewer than K symbols (privacy below threshold)
        if not 0 <= self.decode_margin_symbols < self.symbols_per_bundle:
            raise LaneParamsError("decode_margin_symbols must be in [0, symbols_per_bundle)")
        # rule: ... and leave at least 128 bits to guess (else brute force recovers x)
        unknown = unknown_bits_below_kappa(
            self.symbol_size_bytes, self.symbols_per_bundle, self.decode_margin_symbols
        )
        if unknown < MIN_UNKNOWN_BITS:
            raise LaneParamsError(
                f"κ−1 bundles would leave only {unknown} unknown bits "
                f"(8·T·(s_b − h) = 8·{self.symbol_size_bytes}·"
                f"({self.symbols_per_bundle} − {self.decode_margin_symbols})); at least "
                f"{MIN_UNKNOWN_BITS} are needed: use larger symbols or bundles, or a smaller h"
            )
        if not 1 <= self.cap_factor <= MAX_CAP_FACTOR:
            raise LaneParamsError(f"cap_factor must be in [1, {MAX_CAP_FACTOR}]")
        if not 0 <= self.cap_extra_bundles <= MAX_CAP_EXTRA_BUNDLES:
            raise LaneParamsError(f"cap_extra_bundles must be in [0, {MAX_CAP_EXTRA_BUNDLES}]")
        if not 0 <= self.max_payload_bytes <= 8 * 1024 * 1024:
            raise LaneParamsError("max_payload_bytes must be in [0, 8 MiB]")
        if not 1 <= self.max_entries_per_lane_block <= 4096:
            raise LaneParamsError("max_entries_per_lane_block must be in [1, 4096]")
        if not 1 <= self.max_lifetime_slots <= MAX_LIFETIME_SLOTS:
            raise LaneParamsError(f"max_lifetime_slots must be in [1, {MAX_LIFETIME_SLOTS}]")
        if not 2 <= self.max_cut_lag_slots <= MAX_LIFETIME_SLOTS:
            raise LaneParamsError(f"max_cut_lag_slots must be in [2, {MAX_LIFETIME_SLOTS}]")


@dataclass(frozen=True, slots=True)
class PayloadLayout:
    """Everything derived from (params, payload length)."""

    payload_len: int
    symbol_size_bytes: int
    symbols_per_bundle: int
    decode_margin_symbols: int
    kappa: int
    source_symbols: int  # K
    cap_bundles: int

    @property
    def transformed_len(self) -> int:
        return self.source_symbols * self.symbol_size_bytes

    @property
    def repair_symbols(self) -> int:
        """Length of the committed repair-symbol stream."""
        return self.cap_bundles * self.symbols_per_bundle

    @property
    def bundle_bytes(self) -> int:
        return self.symbols_per_bundle * self.symbol_size_bytes

    def first_repair_index(self, bundle_index: int) -> int:
        """Index (in the repair stream, ESI − K) of the first symbol of a bundle."""
        return bundle_index * self.symbols_per_bundle


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def layout_for(params: LaneParams, payload_len: int) -> PayloadLayout:
    """The layout of a payload of `payload_len` bytes. Raises LaneParamsError if unsupported."""
    if not 0 <= payload_len <= params.max_payload_bytes:
        raise LaneParamsError(
            f"payload of {payload_len} bytes outside [0, {params.max_payload_bytes}]"
        )
    t = params.symbol_size_bytes
    s_b = params.symbols_per_bundle
    h = params.decode_margin_symbols
    k_min = _ceil_div(payload_len + AONT_KEY_BYTES, t)
    kappa = _ceil_div(k_min + h, s_b)
    k = kappa * s_b - h
    cap = params.cap_factor * kappa + params.cap_extra_bundles
    total = k + cap * s_b
    if params.codec_id == "raptorq":
        if k > RAPTORQ_MAX_SOURCE_SYMBOLS or total - 1 > RAPTORQ_MAX_ESI:
            raise LaneParamsError(f"K={k} with {cap * s_b} repair symbols exceeds RaptorQ limits")
    elif total > RS_MAX_CODEWORD:
        raise LaneParamsError(
            f"K={k} plus {cap * s_b} repair symbols exceeds the Reed-Solomon codeword of "
            f"{RS_MAX_CODEWORD}; use larger symbols, fewer bundles, a smaller cap_factor or "
            "cap_extra_bundles"
        )
    return PayloadLayout(
        payload_len=payload_len,
        symbol_size_bytes=t,
        symbols_per_bundle=s_b,
        decode_margin_symbols=h,
        kappa=kappa,
        source_symbols=k,
        cap_bundles=cap,
    )


def params_for_kappa(
    payload_bytes: int,
    kappa: int,
    *,
    codec_id: str = "raptorq",
    decode_margin_symbols: int = 2,
    cap_factor: int = DEFAULT_CAP_FACTOR,
    cap_extra_bundles: int = DEFAULT_CAP_EXTRA_BUNDLES,
    max_payload_bytes: int | None = None,
) -> LaneParams:
    """Smallest-footprint params giving exactly `kappa` bundles for a `payload_bytes` payload.

    Searches bundle sizes s_b in (h, 64] and, for each, the smallest symbol size T
    (a multiple of 8 for RaptorQ) with ceil((ceil((L+32)/T) + h)/s_b) == kappa and at
    least `MIN_UNKNOWN_BITS` unknown below κ (the `LaneParams` rule); keeps the
    candidate minimising κ·s_b·(T + 32), i.e. the bytes of κ bundles plus a per-symbol cost
    of one 32-byte hash (ties: smaller s_b). For netsim scenario files that set
    `payload_bytes` and `kappa` directly.
    """
    if kappa < 1:
        raise LaneParamsError("kappa must be at least 1")
    limit = max(payload_bytes, max_payload_bytes or 0)
    align = RAPTORQ_SYMBOL_ALIGNMENT if codec_id == "raptorq" else 1
    a = payload_bytes + AONT_KEY_BYTES
    h = decode_margin_symbols
    best: tuple[int, int, int] | None = None  # (score, s_b, T)
    for s_b in range(max(h + 1, 1), MAX_SEARCH_SYMBOLS_PER_BUNDLE + 1):
        low = (kappa - 1) * s_b - h + 1  # K_min must lie in [low, high]
        high = kappa * s_b - h
        if high < 1:
            continue
        t = _ceil_div(_ceil_div(a, high), align) * align
        # the privacy rule sets a floor on T: 8·T·(s_b − h) >= MIN_UNKNOWN_BITS
        t_private = _ceil_div(_ceil_div(MIN_UNKNOWN_BITS, 8 * (s_b - h)), align) * align
        t = max(t, t_private)
        if t > MAX_SYMBOL_BYTES or _ceil_div(a, t) < max(low, 1):
            continue
        candidate = (kappa * s_b * (t + PER_SYMBOL_COST_BYTES), s_b, t)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        raise LaneParamsError(f"no symbol/bundle size gives kappa={kappa} for {payload_bytes} B")
    _, s_b, t = best
    params = LaneParams(
        codec_id=codec_id,
        symbol_size_bytes=t,
        symbols_per_bundle=s_b,
        decode_margin_symbols=h,
        cap_factor=cap_factor,
        max_payload_bytes=limit,
        cap_extra_bundles=cap_extra_bundles,
    )
    if layout_for(params, payload_bytes).kappa != kappa:  # the search's own invariant
        raise LaneParamsError(f"internal: search did not reach kappa={kappa}")
    return params
