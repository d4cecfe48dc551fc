"""Checking the values' range proofs of :mod:`he_fed.crypto._value_range`, one or many at once.

A proof's equations are the bit planes' (one per plane), the folded quadratic one
that makes every digit a bit, the values' (``Y`` holds the bits' values) and the
weight's. The first three are products of powers over bases that every proof under
a plan shares (the bit generators ``E_v``, the value bases ``G_v`` and ``h``), so a
batch raises each equation to a fresh random weight and multiplies all of them:
one product over the shared bases for the whole batch, where checking proofs one
at a time pays one each. The key holder checks a round's receipts so.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from he_fed.crypto import _weight_range
from he_fed.crypto._multiexp import product_of_powers
from he_fed.crypto._value_range import (
    _CHALLENGE_BITS,
    _ELEMENTS,
    _MOD,
    _PLANE_SCALAR,
    _SCALARS,
    _WIDTH,
    Layout,
    _bit_generators,
    _challenge,
    _coefficients,
    _folding,
    _generator_product,
    _h_pow,
    _pow,
    _signed_product,
    _widths,
    _z_width,
    proof_size,
)

__all__ = ["Claim", "verify", "verify_all"]


@dataclass(frozen=True)
class _Parsed:
    """One proof read and its Fiat-Shamir challenge checked: what its equations need."""

    layout: Layout
    statement: list[Any]
    d_planes: list[Any]
    a_planes: list[Any]
    y: Any
    a_y: Any
    t_1: Any
    t_2: Any
    c_0: Any
    c_1: Any
    e: int
    plane_scalars: list[int]
    scalars: list[int]
    gammas: list[int]
    zs: list[list[int]]


def _parse(
    layout: Layout, binding: bytes, weight_commitment: bytes, proof: bytes, context: bytes
) -> _Parsed | None:
    if len(proof) != proof_size(layout) or len(binding) != _WIDTH:
        return None
    widths = _widths(layout)
    planes, count = max(widths, default=0), sum(widths)
    statement = [_weight_range._element(x) for x in (binding, weight_commitment)]
    number = 2 * planes + _ELEMENTS
    elements = [_weight_range._element(proof[i * _WIDTH : (i + 1) * _WIDTH]) for i in range(number)]
    if any(x is None for x in (*statement, *elements)):
        return None
    d_planes, a_planes = elements[:planes], elements[planes : 2 * planes]
    y, a_y, t_1, t_2, c_0, c_1 = elements[2 * planes :]
    at = number * _WIDTH
    e = int.from_bytes(proof[at : at + _CHALLENGE_BITS // 8], "big")
    at += _CHALLENGE_BITS // 8
    plane_scalars = []
    for _ in range(planes):
        plane_scalars.append(int.from_bytes(proof[at : at + _PLANE_SCALAR], "big", signed=True))
        at += _PLANE_SCALAR
    scalars = []
    for width in _SCALARS:
        scalars.append(int.from_bytes(proof[at : at + width], "big", signed=True))
        at += width
    first = [*statement, *d_planes, *a_planes, y, a_y, t_1, t_2]
    if _challenge(context, layout, [*first, c_0, c_1]) != e:
        return None
    width = _z_width(count)
    flat = [int.from_bytes(proof[i : i + width], "big") for i in range(at, len(proof), width)]
    zs, start = [], 0
    for k in widths:
        zs.append(flat[start : start + k])
        start += k
    gammas = _folding(context, layout, first, planes)
    return _Parsed(
        layout, statement, d_planes, a_planes, y, a_y, t_1, t_2, c_0, c_1, e,
        plane_scalars, scalars, gammas, zs,
    )  # fmt: skip


def _weight_holds(p: _Parsed) -> bool:
    """The Schnorr proof that ``B`` and ``C`` share the range-proven weight."""
    _, _, s_w, s_rho, s_nu = p.scalars
    b, c = p.statement
    if (
        _pow(_weight_range._g(), s_w) * _weight_range._h_pow(s_rho) % _MOD
        != p.t_1 * _pow(c, p.e) % _MOD
    ):
        return False
    return (
        _pow(p.layout.anchor * p.y % _MOD, s_w) * _h_pow(s_nu) % _MOD == p.t_2 * _pow(b, p.e) % _MOD
    )


def _random_weight() -> int:
    return secrets.randbits(_CHALLENGE_BITS) | 1


def _equations_hold(proofs: Sequence[_Parsed]) -> bool:
    """Every proof's bit-plane, quadratic and value equations, in one product of powers.

    Each equation is raised to a fresh 128-bit weight (the first proof's quadratic
    one to 1) and all are multiplied: if any fails, the product fails but with
    probability about ``2^-127``. The bit generators ``E_v`` and value bases ``G_v``
    are shared by every proof, so their powers are summed first: a batch of ``k``
    proofs costs one product over the generators, not ``k``.
    """
    e_powers: dict[int, int] = {}
    g_powers: dict[Any, int] = {}
    h_power = 0
    right: list[tuple[Any, int]] = []
    for index, p in enumerate(proofs):
        mus = [_random_weight() for _ in p.d_planes]
        delta = 1 if index == 0 else _random_weight()
        eta = _random_weight()
        e = p.e
        folds = [delta * gm for gm in p.gammas]
        for v, row in enumerate(p.zs):
            term = sum(z * (mu + q * (z - e)) for mu, q, z in zip(mus, folds, row, strict=False))
            e_powers[v] = e_powers.get(v, 0) + term
        for base, span, row in zip(p.layout.bases, p.layout.spans, p.zs, strict=True):
            folded = sum(c * z for c, z in zip(_coefficients(span), row, strict=True))
            g_powers[base] = g_powers.get(base, 0) + eta * folded
        s_2, s_y = p.scalars[0], p.scalars[1]
        h_power += sum(mu * s for mu, s in zip(mus, p.plane_scalars, strict=True))
        h_power += delta * s_2 + eta * s_y
        right += [(a, mu) for a, mu in zip(p.a_planes, mus, strict=True)]
        right += [(d, mu * e) for d, mu in zip(p.d_planes, mus, strict=True)]
        right += [(p.c_0, delta), (p.c_1, delta * e), (p.a_y, eta), (p.y, eta * e)]
    gens = _bit_generators(max(e_powers, default=-1) + 1)
    left = _generator_product(list(e_powers.items()), gens)
    left = left * _signed_product(list(g_powers.items())) % _MOD
    left = left * _h_pow(h_power) % _MOD
    return bool(left == product_of_powers(right, _MOD))


Claim = tuple[Layout, bytes, bytes, bytes, bytes]


#: Proofs checked in one product. A proof read for its equations takes more than
#: 0.1 MB (20 values of 93 bits), so a 10,000-client round in one product would hold
#: over 1 GB at once. Each batch pays the shared bases once, a few milliseconds.
BATCH = 256


def verify_all(claims: Sequence[Claim]) -> bool:
    """Whether every ``(layout, binding, weight_commitment, proof, context)`` holds.

    One product of powers checks each :data:`BATCH` of them (:func:`_equations_hold`),
    so a round's proofs cost little more than their own equations; False names none,
    so a caller that needs the culprit checks each with :func:`verify`.
    """
    for start in range(0, len(claims), BATCH):
        parsed = []
        for claim in claims[start : start + BATCH]:
            one = _parse(*claim)
            if one is None or not _weight_holds(one):
                return False
            parsed.append(one)
        if not _equations_hold(parsed):
            return False
    return True


def verify(
    layout: Layout, binding: bytes, weight_commitment: bytes, proof: bytes, context: bytes
) -> bool:
    """Whether ``proof`` shows ``binding`` holds its weight (``weight_commitment``'s) times
    values in ``layout``'s ranges."""
    return verify_all([(layout, binding, weight_commitment, proof, context)])
