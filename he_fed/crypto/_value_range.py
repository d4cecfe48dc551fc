"""A proof that every value of a contribution lies within its own weight times the clip.

Without it the key holder could only check sums: each value's total within the
total weight times the clip. A client colluding with the aggregator that proved
weight 1 and put ``levels · (T + 2) + levels/2`` into one value was refused
exactly when the honest clients' total weight was at most ``T``, and an egg-drop
search across rounds read a victim's exact sample count (red team 8;
``tests/protocol/test_weight_oracle.py``). A bound that does not grow with the
total weight only moves the oracle to the honest values. The check has to be on
each contribution, before anything is summed.

The statement. A contribution's binding commitment (:mod:`he_fed.crypto._binding`)
is ``B = G_0^w · prod_v G_v^(w · y_v) · h^rho`` for its weight ``w``, integers
``y_v`` in ``[0, M_v]`` and public bases: ``G_v`` each value's (or digit's)
generator, ``G_0`` the weight's times ``prod_v G_v^(-offset_v)`` (a
:class:`Layout`). Its weight commitment is ``C = G^w · H^rho``
(:mod:`he_fed.crypto._weight_range`), whose weight is proven in ``[1,
max_weight]``. The proof shows that ``B`` has this form with the same ``w``:

* **Bits.** ``y_v = sum_j c_vj · b_vj`` over :func:`~he_fed.crypto._weight_range.coefficients`
  (whose 0/1 sums are exactly ``0 .. M_v``). Bit ``j`` of every value makes plane
  ``j``, committed as ``D_j = prod_v E_v^(b_vj) · h^(t_j)`` on one generator ``E_v``
  per value, hashed into the group. That each ``b`` is 0 or 1 is the batched bit
  proof of Bootle et al.: masks ``a_vj``, ``A_j = prod_v E_v^(a_vj) · h^(alpha_j)``;
  then plane weights ``gamma_j`` hashed from those, ``C_0 = prod_v E_v^(sum_j gamma_j
  a_vj^2) · h^(beta_0)`` and ``C_1 = prod_v E_v^(sum_j gamma_j a_vj (2 b_vj - 1)) ·
  h^(beta_1)``; then the challenge ``e`` and responses ``z_vj = a_vj + e·b_vj``. The
  verifier checks ``prod_v E_v^(z_vj) · h^(s_j) = A_j · D_j^e`` for every plane and
  ``prod_v E_v^(sum_j gamma_j z_vj (z_vj - e)) · h^(s_2) = C_0 · C_1^e``, all in one
  product of powers over the values' generators (random weights batch them). The
  left of the last is ``a^2 + e·a(2b - 1) + e^2 · b(b - 1)`` folded by ``gamma``:
  three accepting challenges make its ``e^2`` coefficient, ``sum_j gamma_j ·
  b_vj (b_vj - 1)``, vanish modulo the prime order, and ``gamma`` was drawn after
  the bits were fixed, so every ``b_vj (b_vj - 1)`` is zero.
* **Values.** ``Y = prod_v G_v^(y_v) · h^(t_Y)`` with ``A_Y = prod_v
  G_v^(sum_j c_vj a_vj) · h^(alpha_Y)`` and the check ``prod_v G_v^(sum_j c_vj
  z_vj) · h^(s_Y) = A_Y · Y^e``: the same responses, so ``Y`` holds the bits'
  values.
* **Weight.** ``B = (G_0 · Y)^w · h^nu`` and ``C = G^w · H^rho``, one Schnorr proof
  with a shared response for ``w``: ``B``'s exponents are ``w`` times ``(1, y_v -
  offset_v)``, with the range-proven weight.

The key holder still checks ``prod_k B_k = prod g^(S) · h^R`` with the decrypted
slot sums ``S`` and blinding sum ``R``. A contribution whose ciphertext holds other
values than its ``B`` fails that check whatever the honest clients hold, and one
whose ``B`` holds values out of range cannot prove it and is dropped on arrival:
after both, every total lies within the total weight times the clip, so the
values' range check can no longer fail, and no refusal depends on the honest data.

Responses are integers, as in :mod:`he_fed.crypto._opening_proof`: every nonce
carries 128 bits beyond the challenge times its witness (statistical hiding), and
the group's order is a known prime, so accepting transcripts still give the
witnesses modulo it; a bit's response is kept only within a window where it is
uniform whatever the bit (rejection sampling: a proof is made again with
probability under 1/64), which halves its mask's length. Cost: one response of
about 18 bytes per bit (``sum_v ceil(log2(M_v + 1))`` bits), two group elements and
a scalar per plane and a few more; the prover pays a product of powers per plane,
the verifier one over the values' generators (``benchmarks/commitment_proof.py``).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gmpy2

from he_fed.crypto import _binding, _weight_range
from he_fed.crypto._djn import PayingTable
from he_fed.crypto._exact_cache import exact_cache
from he_fed.crypto._multiexp import product_of_powers
from he_fed.exceptions import ConfigurationError

__all__ = [
    "MAX_VALUE_BITS",
    "Layout",
    "bit_count",
    "largest_size",
    "proof_size",
    "prove",
    "repeated_shape",
]

_DOMAIN = b"he-fed/value-range/v1"
_MOD = gmpy2.mpz(_binding.P)
_WIDTH = _binding.WIDTH
_CHALLENGE_BITS = 128
_HIDING_BITS = 128
#: Bits a nonce carries beyond its witness (the challenge's and the hiding's).
_MASK_BITS = _CHALLENGE_BITS + _HIDING_BITS
#: Bits of the fresh blindings ``t_j``, ``t_Y`` and ``beta_1``.
_BLIND_BITS = _binding.RHO_BITS
#: Widest weight (u64) and blinding ``rho`` a proof accepts.
_WEIGHT_BITS = 64
_RHO_BITS = _binding.RHO_BITS + 32
#: Elements besides the planes' ``D_j`` and ``A_j``: Y, A_Y, T_1, T_2, C_0, C_1.
_ELEMENTS = 6
#: Widest value a proof covers, in bits (so its most planes): a Paillier value's
#: ``q + levels`` spans ``2 · levels = 2^p - 2`` for ``precision_bits = p <= 128``, a
#: CKKS digit plus its bound at most ``2^53`` (its slot sums stay below ``2^52``).
#: Messages bound a proof's length with it (``he_fed.protocol.messages``).
MAX_VALUE_BITS = 128


def _scalar_width(witness_bits: int) -> int:
    return (witness_bits + _MASK_BITS + 2 + 7) // 8


#: Each plane's s_j, then s_2, s_Y, s_w, s_rho, s_nu.
_PLANE_SCALAR = _scalar_width(_BLIND_BITS)
_SCALARS = (
    _scalar_width(_BLIND_BITS),
    _scalar_width(_BLIND_BITS),
    _scalar_width(_WEIGHT_BITS),
    _scalar_width(_RHO_BITS),
    _scalar_width(_RHO_BITS + _WEIGHT_BITS + 1),
)


@dataclass(frozen=True)
class Layout:
    """Where a contribution's values sit in its binding commitment.

    ``B = anchor^w · prod_v bases[v]^(w · y_v) · h^rho`` with ``y_v`` in ``[0, spans[v]]``.

    Attributes
    ----------
    bases : tuple
        Each value's base ``G_v`` in the ``ffdhe2048`` subgroup.
    spans : tuple of int
        Each value's ``M_v``.
    anchor : Any
        ``G_0``: the weight's base times ``prod_v G_v^(-offset_v)``.
    """

    bases: tuple[Any, ...]
    spans: tuple[int, ...]
    anchor: Any


@exact_cache(maxsize=64)
def _coefficients(span: int) -> tuple[int, ...]:
    return tuple(_weight_range.coefficients(span + 1))


def _widths(layout: Layout) -> list[int]:
    """Bits of each value: ``ceil(log2(M_v + 1))``."""
    return [len(_coefficients(s)) for s in layout.spans]


def bit_count(layout: Layout) -> int:
    """Bits the proof commits to: ``sum_v ceil(log2(M_v + 1))``."""
    return sum(_widths(layout))


def _mask_bits(count: int) -> int:
    """Bits ``m`` of a bit's mask: ``z = a + e·b`` is kept only within ``[2^128, 2^m)``,
    where it is uniform whatever ``b`` (rejection sampling), and a proof of ``count``
    bits is made again with probability at most ``count · 2^(129 - m) <= 1/64``."""
    return _CHALLENGE_BITS + 7 + count.bit_length()


def _z_width(count: int) -> int:
    return (_mask_bits(count) + 7) // 8


def proof_size(layout: Layout) -> int:
    """Bytes of a proof over ``layout``: two elements and a scalar per plane, six more
    elements, the challenge, five scalars, and one response per bit."""
    return repeated_shape(layout, 1)[0]


def repeated_shape(layout: Layout, copies: int) -> tuple[int, int, int]:
    """Bytes, bits and values of the proof over ``copies`` repetitions of ``layout``'s spans.

    Every value of a plan has the same spans, so a plan's layout of one value gives
    these for any update without the layout of all of them: that hashes a generator
    per value into the group (69 s at a million CKKS values).
    """
    widths = _widths(layout)
    bits = copies * sum(widths)
    return _size(max(widths, default=0), bits), bits, copies * len(widths)


def largest_size(bits: int) -> int:
    """Bytes of the longest proof over at most ``bits`` bits of values.

    :func:`proof_size` grows with its planes (its widest value's bits) and its bits,
    and a layout of at most ``bits`` bits, none wider than :data:`MAX_VALUE_BITS`
    (:func:`prove` refuses wider ones), has at most ``min(bits, MAX_VALUE_BITS)``
    planes. So this is ``proof_size`` at that many planes and ``bits`` bits: 585
    bytes a plane (two 256-byte elements, a 73-byte scalar), 1,901 bytes more (six
    elements, the challenge, five scalars) and ``(135 + bit_length(bits) + 7) // 8``
    bytes a bit (19 from 512 bits to ``2^17``). Values of 128 bits each reach it.
    """
    return _size(min(bits, MAX_VALUE_BITS), bits)


def _size(planes: int, count: int) -> int:
    return (
        (2 * planes + _ELEMENTS) * _WIDTH
        + _CHALLENGE_BITS // 8
        + planes * _PLANE_SCALAR
        + sum(_SCALARS)
        + count * _z_width(count)
    )


_BIT_GENERATORS: list[Any] = []
#: Threads that extend the list at once appended the same index twice and shifted
#: every later generator (a red team, with a short switch interval).
_GROWING = threading.Lock()


def _bit_generators(count: int) -> list[Any]:
    """The first ``count`` bit generators ``E_v``, hashed into the subgroup (kept)."""
    if len(_BIT_GENERATORS) < count:
        with _GROWING:
            while len(_BIT_GENERATORS) < count:
                label = _DOMAIN + b"E" + len(_BIT_GENERATORS).to_bytes(8, "big")
                digest = hashlib.shake_256(label).digest(_WIDTH + 16)
                value = gmpy2.mpz(int.from_bytes(digest, "big")) % _MOD
                _BIT_GENERATORS.append(value * value % _MOD)
    return _BIT_GENERATORS[:count]


def _signed_product(pairs: Sequence[tuple[Any, int]]) -> Any:
    """``prod g^e mod P`` over pairs with exponents of any sign."""
    positive = [(g, e) for g, e in pairs if e > 0]
    negative = [(g, -e) for g, e in pairs if e < 0]
    acc = product_of_powers(positive, _MOD)
    if negative:
        acc = acc * gmpy2.invert(product_of_powers(negative, _MOD), _MOD) % _MOD
    return acc


def _pow(base: Any, exponent: int) -> Any:
    if exponent < 0:
        return gmpy2.invert(gmpy2.powmod(base, -exponent, _MOD), _MOD)
    return gmpy2.powmod(base, exponent, _MOD)


#: Widest exponent of ``h`` its table serves: every blinding, nonce and response here.
_H_TABLE_BITS = 720
#: Its digit width: a plane's two blindings (320 and 576 bits) cost 112
#: multiplications, against 150 with 6-bit digits, for a 6.6 MiB table.
_H_WINDOW = 8


@lru_cache(maxsize=1)
def _h_table() -> PayingTable:
    return PayingTable(int(_binding._h()), _binding.P, _H_TABLE_BITS, _H_WINDOW)


def _h_pow(exponent: int) -> Any:
    if exponent >= 0 and exponent.bit_length() <= _H_TABLE_BITS:
        return _h_table().pow(exponent)
    if exponent < 0 and (-exponent).bit_length() <= _H_TABLE_BITS:
        return gmpy2.invert(_h_table().pow(-exponent), _MOD)
    return _pow(_binding._h(), exponent)


def _transcript(context: bytes, layout: Layout, elements: Sequence[Any]) -> Any:
    h = hashlib.shake_256(_DOMAIN)
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(len(layout.spans).to_bytes(8, "big"))
    for span in layout.spans:
        h.update(span.to_bytes(16, "big"))
    for value in (layout.anchor, *layout.bases, *elements):
        h.update(int(value).to_bytes(_WIDTH, "big"))
    return h


def _folding(context: bytes, layout: Layout, first: Sequence[Any], planes: int) -> list[int]:
    """``gamma_j``: one 128-bit weight per plane, drawn from the first message."""
    h = _transcript(context, layout, first)
    h.update(b"|gamma")
    stream = h.digest(16 * planes)
    return [int.from_bytes(stream[16 * j : 16 * (j + 1)], "big") for j in range(planes)]


def _challenge(context: bytes, layout: Layout, elements: Sequence[Any]) -> int:
    h = _transcript(context, layout, elements)
    h.update(b"|e")
    return int.from_bytes(h.digest(_CHALLENGE_BITS // 8), "big")


def _digits(values: Sequence[int], layout: Layout) -> list[list[int]]:
    return [
        _weight_range._bits(y, list(_coefficients(span))) if _coefficients(span) else []
        for y, span in zip(values, layout.spans, strict=True)
    ]


#: Bit generators whose powers go through a fixed-base table (about 1.7 MiB each):
#: a mask (about 150 bits) then costs 25 multiplications, and the quadratic check's
#: folded exponents (about 430 bits at the prover, 560 at the verifier) about 80.
_TABLED = 32
_TABLE_BITS = 640


@exact_cache(maxsize=_TABLED)
def _table(index: int) -> PayingTable:
    return PayingTable(int(_bit_generators(index + 1)[index]), _binding.P, _TABLE_BITS, 6)


def drop_tables() -> None:
    """Forget every fixed-base table of the commitments and their proofs.

    For benchmarks that charge a run with the tables a fresh process would build.
    """
    _table.cache_clear()  # type: ignore[attr-defined]
    _h_table.cache_clear()
    _weight_range.drop_tables()
    _binding.drop_tables()


def _generator_product(pairs: Sequence[tuple[int, int]], gens: Sequence[Any]) -> Any:
    """``prod_v E_v^(x_v)`` over ``(v, x_v)``, exponents of any sign: tables for the
    first generators, buckets for the rest."""
    above = below = gmpy2.mpz(1)
    rest = []
    for v, x in pairs:
        size = abs(x).bit_length()
        table = _table(v).table_for(size) if v < _TABLED and 0 < size <= _TABLE_BITS else None
        if table is None:
            if x:
                rest.append((gens[v], x))
        elif x > 0:
            above = above * table.pow(x) % _MOD
        else:
            below = below * table.pow(-x) % _MOD
    acc = above * _signed_product(rest) % _MOD if rest else above
    return acc * gmpy2.invert(below, _MOD) % _MOD if below != 1 else acc


def _element(value: Any) -> bytes:
    return int(value).to_bytes(_WIDTH, "big")


def prove(
    layout: Layout,
    values: Sequence[int],
    weight: int,
    rho: int,
    binding: bytes,
    weight_commitment: bytes,
    context: bytes,
) -> bytes:
    """A proof, bound to ``context``, that ``binding`` holds ``weight`` times in-range values.

    Parameters
    ----------
    layout : Layout
        Where the values sit in ``binding``.
    values : sequence of int
        Each ``y_v``, in ``[0, M_v]``.
    weight, rho : int
        The contribution's weight and blinding (``binding``'s and ``weight_commitment``'s).
    binding, weight_commitment : bytes
        ``B`` and ``C``.
    context : bytes
        What the proof is bound to.

    Raises
    ------
    ConfigurationError
        If a value lies outside its range: no such proof exists.
    """
    ys = [int(y) for y in values]
    if len(ys) != len(layout.spans) or any(
        not 0 <= y <= span for y, span in zip(ys, layout.spans, strict=True)
    ):
        raise ConfigurationError("no range proof exists for values outside the plan's range")
    if any(width > MAX_VALUE_BITS for width in _widths(layout)):
        raise ConfigurationError(
            f"no range proof exists for values wider than {MAX_VALUE_BITS} bits: messages "
            "would refuse it"
        )
    if not 1 <= weight < 1 << _WEIGHT_BITS or not 0 <= rho < 1 << _RHO_BITS:
        raise ConfigurationError("no range proof exists for this weight or blinding")
    return _prove(layout, ys, _digits(ys, layout), weight, rho, binding, weight_commitment, context)


def _prove(
    layout: Layout,
    ys: list[int],
    digits: list[list[int]],
    weight: int,
    rho: int,
    binding: bytes,
    weight_commitment: bytes,
    context: bytes,
) -> bytes:
    """:func:`prove` for given digits, unchecked (tests hand it digits that are not bits).

    Made again when a response falls outside its window (rejection sampling, with
    probability under 1/64).
    """
    count = sum(len(d) for d in digits)
    planes = max((len(d) for d in digits), default=0)
    gens = _bit_generators(len(ys))
    mask_bits = _mask_bits(count)
    masks = [[secrets.randbits(mask_bits) for _ in d] for d in digits]
    blinds = [secrets.randbits(_BLIND_BITS) for _ in range(planes)]
    alphas = [secrets.randbits(_BLIND_BITS + _MASK_BITS) for _ in range(planes)]
    d_planes, a_planes = [], []
    bits_only = all(b in (0, 1) for d in digits for b in d)
    for j in range(planes):
        column = [
            (v, d[j], a[j])
            for v, (d, a) in enumerate(zip(digits, masks, strict=True))
            if j < len(d)
        ]
        if bits_only:
            ones = gmpy2.mpz(1)
            for v, b, _ in column:
                if b:
                    ones = ones * gens[v] % _MOD
        else:  # only ever in tests
            ones = _signed_product([(gens[v], b) for v, b, _ in column])
        d_planes.append(ones * _h_pow(blinds[j]) % _MOD)
        masked = _generator_product([(v, a) for v, _, a in column], gens)
        a_planes.append(masked * _h_pow(alphas[j]) % _MOD)
    t_y, alpha_y = secrets.randbits(_BLIND_BITS), secrets.randbits(_BLIND_BITS + _MASK_BITS)
    folded = [
        sum(c * a for c, a in zip(_coefficients(span), m, strict=True))
        for span, m in zip(layout.spans, masks, strict=True)
    ]
    y = product_of_powers(list(zip(layout.bases, ys, strict=True)), _MOD) * _h_pow(t_y) % _MOD
    a_y = product_of_powers(list(zip(layout.bases, folded, strict=True)), _MOD)
    a_y = a_y * _h_pow(alpha_y) % _MOD
    nu = rho - weight * t_y
    r_w = secrets.randbits(_WEIGHT_BITS + _MASK_BITS)
    r_rho = secrets.randbits(_RHO_BITS + _MASK_BITS)
    r_nu = secrets.randbits(_RHO_BITS + _WEIGHT_BITS + 1 + _MASK_BITS)
    t_1 = gmpy2.powmod(_weight_range._g(), r_w, _MOD) * _weight_range._h_pow(r_rho) % _MOD
    t_2 = gmpy2.powmod(layout.anchor * y % _MOD, r_w, _MOD) * _h_pow(r_nu) % _MOD
    statement = [gmpy2.mpz(int.from_bytes(x, "big")) for x in (binding, weight_commitment)]
    first = [*statement, *d_planes, *a_planes, y, a_y, t_1, t_2]
    gammas = _folding(context, layout, first, planes)
    # One quadratic check for all planes, folded by gamma: its e^2 term is
    # sum_j gamma_j · b_j (b_j - 1) per value, zero only if every digit is a bit.
    square = [sum(gm * a * a for gm, a in zip(gammas, m, strict=False)) for m in masks]
    cross = [
        sum(gm * a * (2 * b - 1) for gm, a, b in zip(gammas, m, d, strict=False))
        for m, d in zip(masks, digits, strict=True)
    ]
    beta_0, beta_1 = secrets.randbits(_BLIND_BITS + _MASK_BITS), secrets.randbits(_BLIND_BITS)
    c_0 = _generator_product(list(enumerate(square)), gens) * _h_pow(beta_0) % _MOD
    c_1 = _generator_product(list(enumerate(cross)), gens) * _h_pow(beta_1) % _MOD
    e = _challenge(context, layout, [*first, c_0, c_1])
    zs = [
        [a + e * b for a, b in zip(m, d, strict=True)] for m, d in zip(masks, digits, strict=True)
    ]
    width = _z_width(count)
    flat = [z for row in zs for z in row]
    if all(b in (0, 1) for d in digits for b in d):
        if any(not 1 << _CHALLENGE_BITS <= z < 1 << mask_bits for z in flat):
            return _prove(layout, ys, digits, weight, rho, binding, weight_commitment, context)
    else:  # only ever in tests, whose digits are not bits: the bytes such a z can have
        flat = [z % (1 << (8 * width)) for z in flat]
    out = [_element(x) for x in (*d_planes, *a_planes, y, a_y, t_1, t_2, c_0, c_1)]
    out.append(e.to_bytes(_CHALLENGE_BITS // 8, "big"))
    plane_scalars = [a + e * t for a, t in zip(alphas, blinds, strict=True)]
    out.extend(s.to_bytes(_PLANE_SCALAR, "big", signed=True) for s in plane_scalars)
    scalars = (
        beta_0 + e * beta_1,
        alpha_y + e * t_y,
        r_w + e * weight,
        r_rho + e * rho,
        r_nu + e * nu,
    )
    out.extend(s.to_bytes(w, "big", signed=True) for s, w in zip(scalars, _SCALARS, strict=True))
    out.extend(z.to_bytes(width, "big") for z in flat)
    return b"".join(out)
