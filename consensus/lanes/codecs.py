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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import raptorq
import reedsolo

from consensus.lanes.merkle import TAG_BYTES, symbol_tag
from consensus.lanes.params import RS_MAX_CODEWORD, LaneParamsError

_RS_PRIMITIVE_POLY = 0x11D


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


class RaptorQCodec:
    """RFC 6330 via the `raptorq` crate; one source block, SBN 0, symbol size = T."""

    codec_id = "raptorq"

    def repair_packets(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        source = len(data) // symbol_size
        encoder = raptorq.Encoder.with_defaults(data, symbol_size)
        packets = encoder.get_encoded_packets(repair_count)
        # rule: one source block, contiguous ESIs, symbol size T (else the layout is wrong)
        if (
            len(packets) != source + repair_count
            or len(packets[-1]) != symbol_size + 4
            or packets[-1][0] != 0
            or int.from_bytes(packets[-1][1:4], "big") != source + repair_count - 1
        ):
            raise LaneParamsError(f"raptorq split {len(data)} B into more than one source block")
        # a packet is SBN 0 ‖ ESI(3) ‖ symbol == symbol_tag(ESI) ‖ symbol; drop ESI < K
        return packets[source:]

    def repair_stream(self, data: bytes, symbol_size: int, repair_count: int) -> list[bytes]:
        return [p[TAG_BYTES:] for p in self.repair_packets(data, symbol_size, repair_count)]

    def decode(
        self, data_len: int, symbol_size: int, repair_count: int, symbols: Mapping[int, bytes]
    ) -> bytes | None:
        source = data_len // symbol_size
        if len(symbols) < source:
            return None  # fewer equations than unknowns
        decoder = raptorq.Decoder.with_defaults(data_len, symbol_size)
        for index in sorted(symbols):
            if not 0 <= index < repair_count:
                continue
            packet = symbol_tag(source + index) + symbols[index]  # SBN 0 ‖ ESI ‖ symbol
            result = decoder.decode(packet)
            if result is not None:
                return bytes(result)
        return None


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
