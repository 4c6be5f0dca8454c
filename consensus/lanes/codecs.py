"""Erasure-code backends behind one interface: RaptorQ (rateless) and Reed-Solomon (oracle).

Both backends work on a transformed payload x' of exactly K·T bytes and expose only its
*repair stream*: repair symbol i is the code symbol with ESI K + i. Systematic symbols
(ESI < K) are x' itself and are never produced, so nothing on the wire is a plain slice
of x'.

`repair_count` is the committed stream length (cap · s_b). RaptorQ symbols do not depend
on it; the Reed-Solomon backend is a fixed-rate [K + repair_count, K] code, so its parity
does, and decoding must use the same value.

Decoding is deterministic: symbols are consumed in increasing repair index and the
result is fixed by the lowest-indexed symbols that determine x'. With inconsistent
symbols (a cheating sender) the result is garbage, which the caller catches by
re-encoding and comparing commitments.

`repair_packets` is the stream as *tagged symbols*: `position(4, big-endian) ‖ symbol`,
position = K + i (for RaptorQ exactly its packet, SBN 0 ‖ 24-bit ESI). The Merkle leaves
are defined over tagged symbols (`merkle.py`), so a whole capped stream is hashed straight
from the backend's output, with no per-symbol copy or view.

Batches (`repair_streams`, `decode_bundles_batch`: what every node runs per finalized
block). RaptorQ encoding and decoding apply GF(256)-linear operations to whole symbols
(each byte position alike), and which operations run depends only on K and the ESIs,
never on the data. So n payloads with the same K and T are coded as one object whose
symbol j is the concatenation of their n symbols j (symbol size n·T): its symbol i is
the concatenation of their n symbols i, byte for byte what n separate calls give, also
for inconsistent (forged) symbols, and a decoder fed the same ESIs succeeds at the same
packet for all of them. The crate's fixed cost per call (the precode solve: ~40 µs at
K = 6, T = 128, over two thirds of a small payload's decode) is then paid once per batch.
This holds while both calls use one source block and one sub-block: the crate derives
them from K'·T ≤ 10 MiB (its default decoder memory), so batches are formed only for
K ≤ `BATCH_MAX_SOURCE_SYMBOLS` (K' ≤ 69 in RFC 6330 Table 2) and n·T ≤ 65535 (the
binding's u16 packet size), and T a multiple of the alignment 8. Anything else is coded
payload by payload. Tested against per-payload calls (tests/lanes/test_decode_fastpath.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
import raptorq
import reedsolo

from consensus.lanes.merkle import MAX_POSITION, TAG_BYTES, symbol_tag
from consensus.lanes.params import RS_MAX_CODEWORD, LaneParamsError

_RS_PRIMITIVE_POLY = 0x11D
BATCH_MAX_SOURCE_SYMBOLS = 64  # K ≤ 64 ⇒ K' ≤ 69, and 69 · 65535 B < 10 MiB: one sub-block
MAX_BATCH_SYMBOL_BYTES = 65_535  # the binding's maximum transmission unit is a u16
_RAPTORQ_ALIGNMENT = 8


def _batch_limit(source: int, symbol_size: int) -> int:
    """How many payloads of K = `source` symbols of T bytes one RaptorQ call may carry
    with results identical to one call each (module docstring); < 2: no batching."""
    if not 1 <= source <= BATCH_MAX_SOURCE_SYMBOLS or symbol_size % _RAPTORQ_ALIGNMENT:
        return 0
    return MAX_BATCH_SYMBOL_BYTES // symbol_size


def symbol_map(symbols_per_bundle: int, bundles: Mapping[int, Sequence[bytes]]) -> dict[int, bytes]:
    """{repair index: symbol} of {bundle index: symbols}, bundles merged in index order."""
    symbols: dict[int, bytes] = {}
    for index in sorted(bundles):
        for offset, symbol in enumerate(bundles[index]):
            symbols[index * symbols_per_bundle + offset] = symbol
    return symbols


class PayloadCodec(Protocol):
    codec_id: str

    def repair_stream(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        """Repair symbols 0..repair_count−1 of `data` (len(data) a multiple of symbol_size)."""
        ...

    def repair_packets(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        """The same symbols, each prefixed with `symbol_tag(K + i)` (4 bytes)."""
        ...

    def decode(
        self, data_len: int, symbol_size: int, repair_count: int, symbols: Mapping[int, bytes]
    ) -> bytes | None:
        """x' from repair symbols {index: symbol}; None when they do not determine it."""
        ...

    def decode_bundles(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundles: Mapping[int, Sequence[bytes]],
    ) -> bytes | None:
        """`decode` of the symbols of {bundle index: its symbols} (bundle b's symbol j is
        repair symbol b·symbols_per_bundle + j): the same result, without the symbol map."""
        ...

    def decode_bundles_batch(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundle_maps: Sequence[Mapping[int, Sequence[bytes]]],
    ) -> list[bytes | None]:
        """`[decode_bundles(..., m) for m in bundle_maps]`, batched where the codec can."""
        ...

    def repair_streams(
        self, datas: Sequence[bytes], symbol_size: int, repair_count: int
    ) -> list[bytes]:
        """`[b"".join(repair_packets(d, ...)) for d in datas]` (each stream's tagged
        symbols back to back), batched where the codec can."""
        ...


class RaptorQCodec:
    """RFC 6330 via the `raptorq` crate; one source block, SBN 0, symbol size = T."""

    codec_id = "raptorq"

    def repair_packets(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        source = len(data) // symbol_size
        encoder = raptorq.Encoder.with_defaults(data, symbol_size)
        packets = encoder.get_encoded_packets(repair_count)
        _check_one_block(packets, len(data), source, symbol_size, repair_count)
        # a packet is SBN 0 ‖ ESI(3) ‖ symbol == symbol_tag(ESI) ‖ symbol; drop ESI < K
        return packets[source:]

    def repair_streams(
        self, datas: Sequence[bytes], symbol_size: int, repair_count: int
    ) -> list[bytes]:
        if not datas:
            return []
        source = len(datas[0]) // symbol_size
        limit = _batch_limit(source, symbol_size)
        # rule: a batch holds equal-length payloads of whole symbols (else one by one)
        if limit < 2 or any(len(data) != source * symbol_size for data in datas):
            limit = 1
        streams: list[bytes] = []
        for start in range(0, len(datas), limit):
            chunk = datas[start : start + limit]
            if len(chunk) == 1:
                streams.append(b"".join(self.repair_packets(chunk[0], symbol_size, repair_count)))
            else:
                streams.extend(_wide_repair_streams(chunk, source, symbol_size, repair_count))
        return streams

    def repair_stream(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        return [p[TAG_BYTES:] for p in self.repair_packets(data, symbol_size, repair_count)]

    def decode(
        self, data_len: int, symbol_size: int, repair_count: int, symbols: Mapping[int, bytes]
    ) -> bytes | None:
        source = data_len // symbol_size
        if len(symbols) < source:
            return None  # fewer equations than unknowns
        return self._decode_ordered(
            data_len, symbol_size, repair_count, ((i, symbols[i]) for i in sorted(symbols))
        )

    def decode_bundles(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundles: Mapping[int, Sequence[bytes]],
    ) -> bytes | None:
        if any(len(symbols) != symbols_per_bundle for symbols in bundles.values()):
            # symbol indices of such bundles may overlap: `decode` of the merged map decides
            merged = symbol_map(symbols_per_bundle, bundles)
            return self.decode(data_len, symbol_size, repair_count, merged)
        # every bundle holds exactly s_b symbols: indices are distinct, and increasing
        # bundle by bundle, symbol by symbol is increasing index (what `decode` feeds)
        if len(bundles) * symbols_per_bundle < data_len // symbol_size:
            return None  # fewer equations than unknowns
        ordered = (
            (index * symbols_per_bundle + offset, symbol)
            for index in sorted(bundles)
            for offset, symbol in enumerate(bundles[index])
        )
        return self._decode_ordered(data_len, symbol_size, repair_count, ordered)

    @staticmethod
    def _decode_ordered(
        data_len: int, symbol_size: int, repair_count: int, symbols: Iterable[tuple[int, bytes]]
    ) -> bytes | None:
        """Feed (repair index, symbol) in increasing index until x' is determined."""
        source = data_len // symbol_size
        # rule: a symbol's position K + i fits the 24-bit ESI (what symbol_tag enforces)
        limit = MAX_POSITION + 1 - source
        decoder = raptorq.Decoder.with_defaults(data_len, symbol_size)
        for index, symbol in symbols:
            if not 0 <= index < repair_count:
                continue
            if index >= limit:
                symbol_tag(source + index)  # raises ValueError, as it always did
            # SBN 0 ‖ ESI ‖ symbol
            result = decoder.decode((source + index).to_bytes(TAG_BYTES, "big") + symbol)
            if result is not None:
                return bytes(result)
        return None

    def decode_bundles_batch(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundle_maps: Sequence[Mapping[int, Sequence[bytes]]],
    ) -> list[bytes | None]:
        """Maps with the same bundle indices, every bundle s_b symbols of T bytes, share
        one decoder (module docstring); any other input is decoded map by map."""
        if not bundle_maps:
            return []
        source = data_len // symbol_size
        keys = bundle_maps[0].keys()
        limit = _batch_limit(source, symbol_size)
        # rule: one decoder serves only maps with the same ESIs and exactly sized symbols
        if (
            limit < 2
            or data_len != source * symbol_size
            or any(m.keys() != keys for m in bundle_maps)
            or any(
                len(symbols) != symbols_per_bundle
                or any(len(symbol) != symbol_size for symbol in symbols)
                for m in bundle_maps
                for symbols in m.values()
            )
        ):
            limit = 1
        indices = sorted(keys)
        out: list[bytes | None] = []
        for start in range(0, len(bundle_maps), limit):
            chunk = bundle_maps[start : start + limit]
            if len(chunk) == 1:
                out.append(
                    self.decode_bundles(
                        data_len, symbol_size, repair_count, symbols_per_bundle, chunk[0]
                    )
                )
            else:
                out.extend(
                    _wide_decode(
                        chunk, indices, source, symbol_size, repair_count, symbols_per_bundle
                    )
                )
        return out


def _check_one_block(
    packets: Sequence[bytes], data_len: int, source: int, symbol_size: int, repair_count: int
) -> None:
    # rule: one source block, contiguous ESIs, symbol size T (else the layout is wrong)
    if (
        len(packets) != source + repair_count
        or len(packets[-1]) != symbol_size + TAG_BYTES
        or packets[-1][0] != 0
        or int.from_bytes(packets[-1][1:4], "big") != source + repair_count - 1
    ):
        raise LaneParamsError(f"raptorq split {data_len} B into more than one source block")


def _wide_repair_streams(
    datas: Sequence[bytes], source: int, symbol_size: int, repair_count: int
) -> list[bytes]:
    """One encoder for n equal-length payloads: wide symbol j = their symbols j in order."""
    n = len(datas)
    wide_size = n * symbol_size
    wide = (
        np.frombuffer(b"".join(datas), dtype=np.uint8)
        .reshape(n, source, symbol_size)
        .transpose(1, 0, 2)
        .tobytes()
    )
    packets = raptorq.Encoder.with_defaults(wide, wide_size).get_encoded_packets(repair_count)
    _check_one_block(packets, len(wide), source, wide_size, repair_count)
    # wide packet i = tag_i ‖ symbol i of payload 0 ‖ … ‖ of payload n−1; regroup by payload
    repair = np.frombuffer(b"".join(packets[source:]), dtype=np.uint8).reshape(
        repair_count, TAG_BYTES + wide_size
    )
    tagged = np.empty((n, repair_count, TAG_BYTES + symbol_size), dtype=np.uint8)
    tagged[:, :, :TAG_BYTES] = repair[:, :TAG_BYTES]
    tagged[:, :, TAG_BYTES:] = (
        repair[:, TAG_BYTES:].reshape(repair_count, n, symbol_size).transpose(1, 0, 2)
    )
    flat = tagged.tobytes()
    size = repair_count * (TAG_BYTES + symbol_size)
    return [flat[p * size : (p + 1) * size] for p in range(n)]


def _wide_decode(
    bundle_maps: Sequence[Mapping[int, Sequence[bytes]]],
    indices: Sequence[int],
    source: int,
    symbol_size: int,
    repair_count: int,
    symbols_per_bundle: int,
) -> list[bytes | None]:
    """One decoder for n maps with the same bundle indices, fed as `decode_bundles` feeds
    each: increasing repair index, stopping at the first packet that determines x'."""
    n = len(bundle_maps)
    if len(indices) * symbols_per_bundle < source:
        return [None] * n  # fewer equations than unknowns
    limit = MAX_POSITION + 1 - source
    decoder = raptorq.Decoder.with_defaults(n * source * symbol_size, n * symbol_size)
    join = b"".join
    for bundle in indices:
        columns = [m[bundle] for m in bundle_maps]
        for offset in range(symbols_per_bundle):
            index = bundle * symbols_per_bundle + offset
            if not 0 <= index < repair_count:
                continue
            if index >= limit:
                symbol_tag(source + index)  # raises ValueError, as one by one would
            tag = (source + index).to_bytes(TAG_BYTES, "big")
            result = decoder.decode(tag + join([symbols[offset] for symbols in columns]))
            if result is not None:
                wide = np.frombuffer(bytes(result), dtype=np.uint8)
                flat = wide.reshape(source, n, symbol_size).transpose(1, 0, 2).tobytes()
                size = source * symbol_size
                return [flat[p * size : (p + 1) * size] for p in range(n)]
    return [None] * n


class ReedSolomonCodec:
    """Fixed-rate systematic RS over GF(2^8) via `reedsolo`, interleaved byte-wise.

    Byte j of every symbol forms one codeword of length K + repair_count ≤ 255. Slow
    (pure Python): a comparison point and test oracle for small payloads only.
    """

    codec_id = "rs"

    def __init__(self) -> None:
        reedsolo.init_tables(_RS_PRIMITIVE_POLY)
        self._generators: dict[int, bytearray] = {}

    def _generator(self, nsym: int) -> bytearray:
        if nsym not in self._generators:
            self._generators[nsym] = reedsolo.rs_generator_poly(nsym)
        return self._generators[nsym]

    @staticmethod
    def _check(source: int, repair_count: int) -> None:
        if source + repair_count > RS_MAX_CODEWORD or repair_count < 1:
            raise LaneParamsError(f"RS codeword K={source}+{repair_count} exceeds 255")

    def repair_stream(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        source = len(data) // symbol_size
        self._check(source, repair_count)
        generator = self._generator(repair_count)
        parity = [bytearray(symbol_size) for _ in range(repair_count)]
        for column in range(symbol_size):
            message = bytearray(data[column::symbol_size])
            codeword = reedsolo.rs_encode_msg(message, repair_count, gen=generator)
            for index in range(repair_count):
                parity[index][column] = codeword[source + index]
        return [bytes(symbol) for symbol in parity]

    def repair_packets(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        source = len(data) // symbol_size
        stream = self.repair_stream(data, symbol_size, repair_count)
        return [symbol_tag(source + i) + symbol for i, symbol in enumerate(stream)]

    def decode(
        self, data_len: int, symbol_size: int, repair_count: int, symbols: Mapping[int, bytes]
    ) -> bytes | None:
        source = data_len // symbol_size
        self._check(source, repair_count)
        chosen = sorted(i for i in symbols if 0 <= i < repair_count)[:source]
        if len(chosen) < source:
            return None  # MDS: any K symbols decode, fewer never do
        known = {source + i: symbols[i] for i in chosen}
        length = source + repair_count
        erasures = [p for p in range(length) if p not in known]
        out = bytearray(data_len)
        for column in range(symbol_size):
            codeword = bytearray(length)
            for position, symbol in known.items():
                codeword[position] = symbol[column]
            try:
                message, _, _ = reedsolo.rs_correct_msg(
                    codeword, repair_count, erase_pos=erasures, only_erasures=True
                )
            except reedsolo.ReedSolomonError:
                return None
            out[column::symbol_size] = message
        return bytes(out)

    def decode_bundles(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundles: Mapping[int, Sequence[bytes]],
    ) -> bytes | None:
        symbols = symbol_map(symbols_per_bundle, bundles)
        return self.decode(data_len, symbol_size, repair_count, symbols)

    def decode_bundles_batch(
        self,
        data_len: int,
        symbol_size: int,
        repair_count: int,
        symbols_per_bundle: int,
        bundle_maps: Sequence[Mapping[int, Sequence[bytes]]],
    ) -> list[bytes | None]:
        return [
            self.decode_bundles(data_len, symbol_size, repair_count, symbols_per_bundle, m)
            for m in bundle_maps
        ]

    def repair_streams(
        self, datas: Sequence[bytes], symbol_size: int, repair_count: int
    ) -> list[bytes]:
        return [b"".join(self.repair_packets(d, symbol_size, repair_count)) for d in datas]


RAPTORQ = RaptorQCodec()
_CODECS: dict[str, PayloadCodec] = {}


def codec_by_id(codec_id: str) -> PayloadCodec:
    """The backend for a codec id (one shared instance each)."""
    if codec_id == RaptorQCodec.codec_id:
        return RAPTORQ
    if codec_id == ReedSolomonCodec.codec_id:
        if codec_id not in _CODECS:
            _CODECS[codec_id] = ReedSolomonCodec()
        return _CODECS[codec_id]
    raise LaneParamsError(f"unknown codec {codec_id!r}")
