"""Binding commitments for CKKS contributions: layout, packing, and the key holder's check.

A CKKS receipt fixes each ciphertext's ``c1`` but not its ``c0``, so whoever holds
an aggregate can add any grid plaintext it knows, and the key holder, which
rounds to the grid, would release "honest sum + offset". As for Paillier
(:mod:`he_fed.crypto._binding`), each contribution therefore commits to the exact
integers it encrypts, in ``ffdhe2048`` with the same generators::

    B = prod_j g_j^(m_j) · h^rho

* **What is committed.** Every integer slot that gets summed: each digit of each
  value (times the weight), then the weight. The slot integers are packed
  :func:`pack_bits` at a time into one exponent ``m_j`` (balanced, ``K`` bits a
  slot, :func:`slot_bits`): packing is linear over the integers, so the packed
  slot sums are the sum of the packed contributions. Every slot sum that passes
  the key holder's range checks has magnitude below ``2^(K-2)``, so two different
  sums pack to integers that differ by less than ``2^512 < Q``: different modulo
  ``Q``, and an offset would need a discrete-logarithm relation between the
  generators. Packing makes the proof of knowledge
  (:mod:`he_fed.crypto._opening_proof`) pay ``256`` bits of hiding per exponent
  rather than per slot.
* **The blinding travels encrypted.** ``rho`` (:data:`~he_fed.crypto._binding.RHO_BITS`
  bits) is written in :func:`blinding_slots` extra slots after the weight, as
  unsigned digits of :func:`blinding_digit_bits` bits, small enough that the sum
  of ``max_clients`` of them in one slot stays within the plan's room
  (``min(q/4, 2^52)`` over the scale), like every other slot.
* **The key holder's check** (:func:`release`): after the grid check on every slot
  and the range checks of :meth:`~he_fed.crypto._ckks_grid.GridQuantizer.release`,
  it checks each blinding digit total against ``count`` times the digit's bound,
  recombines ``sum rho`` exactly, packs the slot sums and checks
  ``prod_k B_k = prod_j g_j^(S_j) · h^(sum rho)``. Every failure is an
  :class:`~he_fed.exceptions.AggregateRejected`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gmpy2
import numpy as np

from he_fed.crypto import _binding, _opening_proof, _value_check, _value_range, _weight_range
from he_fed.crypto._ckks_grid import on_grid
from he_fed.crypto._exact_cache import exact_cache
from he_fed.crypto.base import WeightedSum
from he_fed.crypto.ckks_budget import EXACT_FLOAT
from he_fed.exceptions import AggregateRejected

if TYPE_CHECKING:
    from he_fed.crypto.ckks import CKKS

__all__ = [
    "blinding_digit_bits",
    "blinding_digits",
    "blinding_slots",
    "committed_slots",
    "pack",
    "pack_bits",
    "packed_count",
    "prove_values",
    "release",
    "slot_bits",
    "value_digits",
    "value_layout",
    "proofs_hold",
]

#: Bits of one packed exponent at most (well below ``Q``'s 2047). Pippenger's cost
#: for the commitment grows with the exponents' length at a fixed total, the
#: proof's with their count (each pays 258 bits of response overhead): about 500
#: bits (12 slots of 40) minimises their sum, 3x below 2040-bit exponents for 31
#: values and 1.1 to 1.5x for 1,001 to 10,001 (``bucket_window``'s cost model).
PACKED_BITS = 512


def _room(scheme: CKKS) -> int:
    """Largest magnitude a slot sum may reach: ``min(q/4, 2^52)`` over the scale."""
    return min((scheme.data_modulus - 1) // 4, EXACT_FLOAT - 1) >> scheme.encode_scale_bits


def blinding_digit_bits(scheme: CKKS) -> int:
    """Bits ``d`` of a blinding digit: ``max_clients`` digits below ``2^d`` fit the room."""
    return max(1, (_room(scheme) // scheme.max_clients).bit_length() - 1)


def blinding_slots(scheme: CKKS) -> int:
    """Slots the blinding takes after the weight: ``ceil(RHO_BITS / d)``."""
    return -(-_binding.RHO_BITS // blinding_digit_bits(scheme))


def blinding_digits(rho: int, scheme: CKKS) -> np.ndarray:
    """``rho``'s unsigned digits of ``d`` bits, least significant first, as doubles."""
    bits = blinding_digit_bits(scheme)
    mask = (1 << bits) - 1
    return np.array([float((rho >> (bits * i)) & mask) for i in range(blinding_slots(scheme))])


def committed_slots(scheme: CKKS, size: int) -> int:
    """Slots the commitment covers: ``digits * size`` and the weight."""
    return scheme.digits * size + 1


@exact_cache(maxsize=64)
def _slot_bits(room: int) -> int:
    return -(-(room.bit_length() + 3) // 8) * 8


def slot_bits(scheme: CKKS) -> int:
    """Bits ``K`` of one packed slot: a multiple of 8 with ``2 · room < 2^(K-2)``."""
    return _slot_bits(_room(scheme))


def pack_bits(scheme: CKKS) -> int:
    """Slots per packed exponent: as many ``K``-bit slots as :data:`PACKED_BITS` holds."""
    return PACKED_BITS // slot_bits(scheme)


def packed_count(scheme: CKKS, size: int) -> int:
    """Exponents a vector of ``size`` values commits to."""
    return -(-committed_slots(scheme, size) // pack_bits(scheme))


def pack(integers: np.ndarray, scheme: CKKS) -> list[int]:
    """``sum_i m_i · 2^(K·i)`` per group of :func:`pack_bits` slots, in Python integers.

    ``integers`` are integral (``int64`` or integral doubles) of magnitude below
    ``2^(K-1)``. Offset by ``2^(K-1)`` they are non-negative, so each group's packing
    is the little-endian bytes of its ``K``-bit fields, minus the packed offset.
    """
    k = slot_bits(scheme)
    width, per = k // 8, pack_bits(scheme)
    shifted = (np.asarray(integers).astype(np.int64) + (1 << (k - 1))).astype("<u8")
    fields = shifted.view(np.uint8).reshape(-1, 8)[:, :width]
    half = (1 << (k - 1)).to_bytes(width, "little")
    out = []
    for start in range(0, fields.shape[0], per):
        group = fields[start : start + per]
        offset = int.from_bytes(half * group.shape[0], "little")
        out.append(int.from_bytes(group.tobytes(), "little") - offset)
    return out


def value_layout(scheme: CKKS, size: int) -> _value_range.Layout:
    """Where a contribution's digits sit in its binding commitment (:mod:`_value_range`).

    Slot ``t`` of packed exponent ``j`` has the base ``g_j^(2^(K·t))``; a digit ``d`` of
    bound ``b`` is proven as ``d + b`` in ``[0, 2b]``, and the weight's slot follows the
    digits.
    """
    quantizer = scheme.quantizer
    return _layout(slot_bits(scheme), pack_bits(scheme), quantizer.digit_bounds, size)


@exact_cache(maxsize=64)
def _layout(k: int, per: int, bounds: tuple[int, ...], size: int) -> _value_range.Layout:
    slots = len(bounds) * size + 1
    modulus = gmpy2.mpz(_binding.P)
    bases = []
    for g in _binding._generators(-(-slots // per)):
        for _ in range(per):
            bases.append(g)
            g = gmpy2.powmod(g, 1 << k, modulus)
    bases = bases[:slots]
    spans = tuple(2 * b for b in bounds) * size
    offsets = [(base, b) for base, b in zip(bases, spans, strict=False)]
    shift = _value_range._signed_product([(base, span // 2) for base, span in offsets])
    anchor = bases[-1] * gmpy2.invert(shift, modulus) % modulus
    return _value_range.Layout(tuple(bases[:-1]), spans, anchor)


def value_digits(scheme: CKKS, values: np.ndarray, weight: int) -> list[int]:
    """Each digit plus its bound, as :func:`value_layout` proves them."""
    digits = np.rint(scheme.quantizer.encode(values, 1)).astype(np.int64)
    bounds = np.tile(np.array(scheme.quantizer.digit_bounds, dtype=np.int64), len(values))
    return [int(v) for v in digits + bounds]


def prove_values(
    scheme: CKKS, values: np.ndarray, weight: int, rho: int, binding: bytes, context: bytes
) -> bytes:
    """The values' range proof of a contribution with this whole ``binding``."""
    layout, half = value_layout(scheme, values.size), _binding.WIDTH
    digits = value_digits(scheme, values, weight)
    return _value_range.prove(layout, digits, weight, rho, binding[:half], binding[half:], context)


def proofs_hold(
    scheme: CKKS, size: int, fingerprint: bytes, claims: list[tuple[bytes, bytes, bytes, bytes]]
) -> bool:
    """Whether every ``(commitment, proof, context, binding)`` proves its weight, its
    values' range and its binding's opening (the values' proofs in one batch)."""
    count = packed_count(scheme, size)
    bits = slot_bits(scheme) * pack_bits(scheme)
    layout, half = value_layout(scheme, size), _binding.WIDTH
    cut = _value_range.proof_size(layout)
    ranges: list[_value_range.Claim] = []
    for _, proof, context, binding in claims:
        rest = _weight_range.verified_rest(binding, proof, scheme.max_weight, fingerprint, context)
        if rest is None or len(rest) < cut:
            return False
        if not _opening_proof.verify(binding[:half], rest[cut:], count, bits, context):
            return False
        ranges.append((layout, binding[:half], binding[half:], rest[:cut], context))
    return _value_check.verify_all(ranges)


def release(
    scheme: CKKS,
    decoded: np.ndarray,
    size: int,
    count: int,
    largest: float,
    binding: bytes,
) -> WeightedSum:
    """Round a decrypted aggregate, check its blinding and binding, or refuse it.

    ``decoded`` is laid out as :meth:`GridQuantizer.release` expects, with the
    blinding's digits after the weight; it is overwritten.

    Raises
    ------
    AggregateRejected
        If a slot is off the grid, a range check fails, a blinding digit total lies
        outside ``[0, count · (2^d - 1)]``, or (with ``binding``) the slot sums and
        the blinding sum do not open ``binding``.
    """
    used = committed_slots(scheme, size)
    blind = on_grid(decoded[used : used + blinding_slots(scheme)], largest)
    slots = np.rint(decoded[:used]) if binding else None  # before release overwrites it
    decoded[used : used + blind.size] = 0.0
    result = scheme.quantizer.release(decoded, size, count, scheme.max_weight, largest)
    bits = blinding_digit_bits(scheme)
    if not 0 <= blind.min() <= blind.max() <= count * ((1 << bits) - 1):
        raise AggregateRejected(
            "a decrypted blinding digit total lies outside what the contributions can "
            "sum to: the ciphertext was altered"
        )
    rho = sum(int(digit) << (bits * i) for i, digit in enumerate(blind))
    if slots is not None and not (
        _binding.check(pack(slots, scheme), rho, binding[: _binding.WIDTH])
        and _weight_range.opens(binding, result.weight, rho)
    ):
        raise AggregateRejected(
            "the aggregate's plaintext does not open its contributions' binding "
            "commitments: someone added to the sum"
        )
    return result
