"""Validator set, stake-weighted thresholds, signer bitmaps and leader schedules."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.messages import MAX_VALIDATORS


@dataclass(frozen=True, slots=True)
class Validator:
    index: int
    public_key: bytes
    stake: int


class ValidatorSet:
    """An ordered, immutable set of validators with stake-weighted thresholds.

    quorum ("super-majority"): signer stake >= floor(2T/3) + 1
    honest present (f+1):      signer stake >= floor(T/3) + 1
    """

    __slots__ = ("_index_by_key", "honest_stake", "quorum_stake", "total_stake", "validators")

    def __init__(self, validators: Sequence[Validator]):
        if not validators:
            raise ValueError("a validator set needs at least one validator")
        if len(validators) > MAX_VALIDATORS:
            raise ValueError(f"at most {MAX_VALIDATORS} validators are supported")
        for position, validator in enumerate(validators):
            if validator.index != position:
                raise ValueError(f"validator at position {position} has index {validator.index}")
            if validator.stake <= 0:
                raise ValueError(f"validator {position} has non-positive stake {validator.stake}")
            if len(validator.public_key) != 32:
                raise ValueError(f"validator {position} public key is not 32 bytes")
        self.validators: tuple[Validator, ...] = tuple(validators)
        self._index_by_key = {v.public_key: v.index for v in validators}
        if len(self._index_by_key) != len(validators):
            raise ValueError("duplicate validator public keys")
        self.total_stake: int = sum(v.stake for v in validators)
        self.quorum_stake: int = (2 * self.total_stake) // 3 + 1
        self.honest_stake: int = self.total_stake // 3 + 1

    @classmethod
    def from_keys(
        cls, public_keys: Sequence[bytes], stakes: Sequence[int] | None = None
    ) -> ValidatorSet:
        stakes = list(stakes) if stakes is not None else [1] * len(public_keys)
        if len(stakes) != len(public_keys):
            raise ValueError(f"{len(public_keys)} keys but {len(stakes)} stakes")
        return cls(
            [
                Validator(i, key, stake)
                for i, (key, stake) in enumerate(zip(public_keys, stakes, strict=True))
            ]
        )

    def __len__(self) -> int:
        return len(self.validators)

    def __iter__(self):
        return iter(self.validators)

    def public_key(self, index: int) -> bytes:
        return self.validators[index].public_key

    def index_of(self, public_key: bytes) -> int | None:
        return self._index_by_key.get(public_key)

    def contains(self, index: int) -> bool:
        return 0 <= index < len(self.validators)

    def stake_of(self, indices: Iterable[int]) -> int:
        return sum(self.validators[i].stake for i in set(indices))

    def has_quorum(self, indices: Iterable[int]) -> bool:
        return self.stake_of(indices) >= self.quorum_stake

    def has_honest_present(self, indices: Iterable[int]) -> bool:
        return self.stake_of(indices) >= self.honest_stake

    @property
    def bitmap_bytes(self) -> int:
        return (len(self.validators) + 7) // 8


# --------------------------------------------------------------------------- signer bitmaps


class BitmapError(ValueError):
    pass


def encode_bitmap(indices: Iterable[int], size: int) -> bytes:
    """Bitmap of `size` validators with the given indices set (bit i%8 of byte i//8)."""
    bitmap = bytearray((size + 7) // 8)
    for index in indices:
        if not 0 <= index < size:
            raise BitmapError(f"signer index {index} outside validator set of {size}")
        bitmap[index // 8] |= 1 << (index % 8)
    return bytes(bitmap)


def decode_bitmap(bitmap: bytes, size: int) -> list[int]:
    """Indices set in `bitmap`, increasing. Rejects wrong length and bits beyond `size`."""
    if len(bitmap) != (size + 7) // 8:
        raise BitmapError(f"bitmap of {len(bitmap)} bytes for {size} validators")
    indices = []
    for byte_index, byte in enumerate(bitmap):
        while byte:
            low = byte & -byte
            index = byte_index * 8 + low.bit_length() - 1
            if index >= size:
                raise BitmapError(f"bitmap sets bit {index} beyond validator set of {size}")
            indices.append(index)
            byte ^= low
    return indices


# --------------------------------------------------------------------------- leader schedules


class LeaderSchedule(Protocol):
    name: str

    def leader(self, round: int) -> int: ...


class RoundRobinSchedule:
    """leader(r) = r mod n (the reference's attack scenarios use this)."""

    name = "round-robin"

    def __init__(self, validators: ValidatorSet):
        self._n = len(validators)

    def leader(self, round: int) -> int:
        return round % self._n


class WeightedSchedule:
    """Deterministic stake-weighted pseudo-random schedule.

    For each round, hash (seed, round) to a value uniform in [0, total_stake) and pick
    the validator whose cumulative-stake interval holds it.
    """

    name = "weighted"

    def __init__(self, validators: ValidatorSet, seed: bytes = b"sedna/leader/1"):
        self._seed = seed
        self._total = validators.total_stake
        self._cumulative: list[int] = []
        running = 0
        for validator in validators:
            running += validator.stake
            self._cumulative.append(running)

    def leader(self, round: int) -> int:
        digest = hashlib.sha256(self._seed + b"\x00" + round.to_bytes(8, "big")).digest()
        point = int.from_bytes(digest, "big") % self._total
        low, high = 0, len(self._cumulative) - 1
        while low < high:  # first index whose cumulative stake exceeds the point
            middle = (low + high) // 2
            if self._cumulative[middle] > point:
                high = middle
            else:
                low = middle + 1
        return low


def schedule_by_name(name: str, validators: ValidatorSet) -> LeaderSchedule:
    if name == RoundRobinSchedule.name:
        return RoundRobinSchedule(validators)
    if name == WeightedSchedule.name:
        return WeightedSchedule(validators)
    raise ValueError(f"unknown leader schedule {name!r}; choose 'round-robin' or 'weighted'")
