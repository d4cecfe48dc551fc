"""A commitment to a contribution's weight, with a proof that it lies in ``[1, max_weight]``.

Without it, only the decrypted *total* weight was range-checked, and a client
colluding with the aggregator could encrypt, commit to and prove the opening of
any weight: ``count · max_weight - T`` makes the aggregate refused exactly when
the honest clients' total weight exceeds ``T``. Sample counts do not change
between rounds, so a search over ``T`` across rounds, spending the key holder's
few refusals as an egg-drop search does, gave two cohorts' totals and so one
client's sample count (red team 7; ``tests/protocol/test_weight_oracle.py``).

Each Paillier or CKKS contribution therefore also commits to its weight ``w``
with the blinding ``rho`` of its binding commitment
(:mod:`he_fed.crypto._binding`)::

    C = G^w · H^rho  (mod P)

in the same ``ffdhe2048`` subgroup, with two more generators hashed into it (no
one knows a relation between them and the others), and proves, bound to the
contribution's context:

* bit commitments ``D_j = G^(b_j) · H^(t_j)`` with ``b_j`` in ``{0, 1}`` (a
  Cramer-Damgard-Schoenmakers OR of two Schnorr proofs each), for the coefficients
  ``c_j`` of :func:`coefficients`, whose 0/1 combinations are exactly
  ``0 .. max_weight - 1``;
* knowledge of ``t`` with ``C / (G · prod_j D_j^(c_j)) = H^t``, so that ``C``'s
  exponent of ``G`` is ``1 + sum_j c_j · b_j``, in ``[1, max_weight]``.

The key holder checks ``prod_k C_k = G^W · H^R`` for the decrypted total weight
``W`` and blinding sum ``R``, beside the binding check. A contribution whose
ciphertext carries another weight than its ``C`` fails it whatever the others
hold, and every admitted weight is in range, so the total-weight check cannot
fail: neither refusal depends on the honest clients' weights. The values' range
check, whose bound grows with the total weight, was still such an oracle (red
team 8) until every value was proven in range too (:mod:`he_fed.crypto._value_range`).

``C`` shares ``rho`` with the binding commitment ``B = prod_i g_i^(m_i) · h^rho``
on the independent generator ``H``: relating the two (``h^rho`` and ``H^rho``
without the plaintext) is a decisional Diffie-Hellman problem in this group,
with the short exponents its hiding already assumes. Responses are integers, as
in :mod:`he_fed.crypto._opening_proof`: nonces carry 128 bits beyond ``e · t``,
and the group's order is a known prime, so two accepting transcripts still
give the witnesses.

Cost: ``ceil(log2(max_weight))`` bit proofs of 304 to 416 bytes each; proving
and verifying take a few exponentiations each, most through fixed-base tables
(``benchmarks/commitment_proof.py``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import gmpy2

from he_fed.crypto import _binding
from he_fed.crypto._djn import PayingTable
from he_fed.crypto._exact_cache import exact_cache
from he_fed.exceptions import ConfigurationError

__all__ = [
    "WIDTH",
    "bind",
    "check",
    "coefficients",
    "commit",
    "linked_size",
    "opens",
    "proof_size",
    "prove",
    "prove_linked",
    "verified_rest",
    "verify",
    "verify_linked",
]

_DOMAIN = b"he-fed/weight-range/v1"
_MOD = gmpy2.mpz(_binding.P)
#: Bytes of the weight commitment ``C``.
WIDTH = _binding.WIDTH
_CHALLENGE_BITS = 128
_HIDING_BITS = 128
#: Largest ``max_weight`` a plan can declare (weights travel as u64 fields).
_LARGEST = 2**64 - 1
#: Widest nonce (and, with a bit to spare, response) :func:`_nonce_bits` can ask for.
_TABLE_BITS = 704


def _hashed(label: bytes) -> Any:
    digest = hashlib.shake_256(_DOMAIN + label).digest(WIDTH + 16)
    value = gmpy2.mpz(int.from_bytes(digest, "big")) % _MOD
    return value * value % _MOD  # a square: in the order-Q subgroup


@lru_cache(maxsize=1)
def _g() -> Any:
    return _hashed(b"G")


@lru_cache(maxsize=1)
def _g_inverse() -> Any:
    return gmpy2.invert(_g(), _MOD)


@lru_cache(maxsize=1)
def _h_table() -> PayingTable:
    return PayingTable(int(_hashed(b"H")), _binding.P, _TABLE_BITS, 6)


def drop_tables() -> None:
    """Forget ``H``'s table (see :func:`he_fed.crypto._value_range.drop_tables`)."""
    _h_table.cache_clear()


def _h_pow(exponent: int) -> Any:
    if exponent < 0:
        return gmpy2.invert(_h_table().pow(-exponent), _MOD)
    return _h_table().pow(exponent)


def coefficients(max_weight: int) -> list[int]:
    """``c_j`` whose sums over subsets are exactly ``0 .. max_weight - 1``.

    Powers of two below the top one, and ``max_weight - 2^(k-1)`` for the top,
    with ``k = (max_weight - 1).bit_length()``; none for ``max_weight = 1``.
    """
    k = (max_weight - 1).bit_length()
    if k == 0:
        return []
    return [1 << j for j in range(k - 1)] + [max_weight - (1 << (k - 1))]


def _bits(u: int, coefs: list[int]) -> list[int]:
    """0/1 digits of ``u`` (in ``[0, sum(coefs)]``) over :func:`coefficients`."""
    top = 1 if u >= 1 << (len(coefs) - 1) else 0
    rest = u - top * coefs[-1]
    return [(rest >> j) & 1 for j in range(len(coefs) - 1)] + [top]


def _nonce_bits(max_weight: int) -> int:
    # |t| < 2^RHO_BITS · max_weight for the final witness; bits' blindings are smaller.
    witness = _binding.RHO_BITS + max_weight.bit_length() + 1
    return witness + _CHALLENGE_BITS + _HIDING_BITS


def _response_width(max_weight: int) -> int:
    return (_nonce_bits(max_weight) + 2 + 7) // 8


@exact_cache(maxsize=64)
def proof_size(max_weight: int) -> int:
    """Bytes of a proof under ``max_weight``: the challenge, ``z_t``, then each bit's
    ``D_j``, ``e_0`` and two responses."""
    width, count = _response_width(max_weight), len(coefficients(max_weight))
    challenge = _CHALLENGE_BITS // 8
    return challenge + width + count * (WIDTH + challenge + 2 * width)


def commit(weight: int, rho: int) -> bytes:
    """``G^weight · H^rho``: one contribution's (or, with sums, an aggregate's) ``C``."""
    value = gmpy2.powmod(_g(), weight, _MOD) * _h_pow(rho) % _MOD
    return int(value).to_bytes(WIDTH, "big")


def check(weight: int, rho: int, expected: bytes) -> bool:
    """Whether a decrypted total ``weight`` and blinding sum ``rho`` open ``expected``."""
    return commit(weight, rho) == expected


def _element(blob: bytes) -> Any | None:
    value = gmpy2.mpz(int.from_bytes(blob, "big"))
    if not 1 < value < _MOD - 1 or gmpy2.legendre(value, _MOD) != 1:
        return None
    return value


def _over(h_exponent: int, base: Any, e: int) -> Any:
    """``H^z · base^(-e)``: a Schnorr first message recomputed (or simulated)."""
    return _h_pow(h_exponent) * gmpy2.invert(gmpy2.powmod(base, e, _MOD), _MOD) % _MOD


def _challenge(context: bytes, max_weight: int, elements: list[Any]) -> int:
    h = hashlib.sha256(_DOMAIN)
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(max_weight.to_bytes(8, "big"))
    for value in elements:
        h.update(int(value).to_bytes(WIDTH, "big"))
    return int.from_bytes(h.digest()[: _CHALLENGE_BITS // 8], "big")


def prove(weight: int, rho: int, max_weight: int, context: bytes) -> bytes:
    """A proof, bound to ``context``, that ``commit(weight, rho)`` has ``weight`` in range.

    Raises
    ------
    ConfigurationError
        If ``weight`` lies outside ``[1, max_weight]``: no such proof exists.
    """
    if not 1 <= max_weight <= _LARGEST or not 1 <= weight <= max_weight:
        raise ConfigurationError(f"no range proof exists for weight {weight} in [1, {max_weight}]")
    coefs = coefficients(max_weight)
    bits = _bits(weight - 1, coefs) if coefs else []
    nonce_bits, mask = _nonce_bits(max_weight), (1 << _CHALLENGE_BITS) - 1
    blindings = [secrets.randbits(_binding.RHO_BITS) for _ in coefs]
    witness = rho - sum(c * t for c, t in zip(coefs, blindings, strict=True))
    commitments = [
        _h_pow(t) * _g() % _MOD if b else _h_pow(t) for b, t in zip(bits, blindings, strict=True)
    ]
    nonce = secrets.randbits(nonce_bits)
    firsts, simulated = [_h_pow(nonce)], []
    for b, d in zip(bits, commitments, strict=True):
        e_other, z_other = secrets.randbits(_CHALLENGE_BITS), secrets.randbits(nonce_bits)
        other = d if b else d * _g_inverse() % _MOD  # the statement this bit does not meet
        fake = _over(z_other, other, e_other)
        real_nonce = secrets.randbits(nonce_bits)
        pair = (_h_pow(real_nonce), fake) if b == 0 else (fake, _h_pow(real_nonce))
        firsts.extend(pair)
        simulated.append((e_other, z_other, real_nonce))
    c_value = gmpy2.mpz(int.from_bytes(commit(weight, rho), "big"))
    e = _challenge(context, max_weight, [c_value, *commitments, *firsts])
    width = _response_width(max_weight)
    out = [e.to_bytes(_CHALLENGE_BITS // 8, "big")]
    out.append((nonce + e * witness).to_bytes(width, "big", signed=True))
    for b, d, t, (e_other, z_other, real_nonce) in zip(
        bits, commitments, blindings, simulated, strict=True
    ):
        e_real = (e - e_other) & mask
        z_real = real_nonce + e_real * t
        e0, z0, z1 = (e_real, z_real, z_other) if b == 0 else (e_other, z_other, z_real)
        out.append(int(d).to_bytes(WIDTH, "big"))
        out.append(e0.to_bytes(_CHALLENGE_BITS // 8, "big"))
        out.append(z0.to_bytes(width, "big", signed=True))
        out.append(z1.to_bytes(width, "big", signed=True))
    return b"".join(out)


def verify(commitment: bytes, proof: bytes, max_weight: int, context: bytes) -> bool:
    """Whether ``proof`` shows that ``commitment`` holds a weight in ``[1, max_weight]``."""
    if not 1 <= max_weight <= _LARGEST or len(proof) != proof_size(max_weight):
        return False
    if len(commitment) != WIDTH or (c_value := _element(commitment)) is None:
        return False
    coefs, width = coefficients(max_weight), _response_width(max_weight)
    size, mask = _CHALLENGE_BITS // 8, (1 << _CHALLENGE_BITS) - 1
    e = int.from_bytes(proof[:size], "big")
    z_t = int.from_bytes(proof[size : size + width], "big", signed=True)
    at, step = size + width, WIDTH + size + 2 * width
    commitments, firsts = [], []
    composed = _g()
    for c in coefs:
        chunk = proof[at : at + step]
        at += step
        d = _element(chunk[:WIDTH])
        if d is None:
            return False
        e0 = int.from_bytes(chunk[WIDTH : WIDTH + size], "big")
        z0 = int.from_bytes(chunk[WIDTH + size : WIDTH + size + width], "big", signed=True)
        z1 = int.from_bytes(chunk[WIDTH + size + width :], "big", signed=True)
        firsts.append(_over(z0, d, e0))
        firsts.append(_over(z1, d * _g_inverse() % _MOD, (e - e0) & mask))
        commitments.append(d)
        composed = composed * gmpy2.powmod(d, c, _MOD) % _MOD
    rest = c_value * gmpy2.invert(composed, _MOD) % _MOD
    elements = [c_value, *commitments, _over(z_t, rest, e), *firsts]
    return _challenge(context, max_weight, elements) == e


def bind(binding: bytes, weight: int, rho: int) -> bytes:
    """A contribution's whole binding: its plaintext's commitment, then its weight's ``C``."""
    return binding + commit(weight, rho)


def opens(binding: bytes, weight: int, rho: int) -> bool:
    """Whether the decrypted total ``weight`` and blinding sum ``rho`` open the ``C`` of a
    whole (summed) binding."""
    return len(binding) == 2 * WIDTH and check(weight, rho, binding[WIDTH:])


# A weight proven once per client, linked to every contribution


@dataclass(frozen=True)
class _Pin:
    """A client's weight committed once, ``G^w · H^sigma``, with its range proof."""

    sigma: int = field(repr=False)
    commitment: bytes
    proof: bytes


#: Bits of the link's nonce: its witness ``rho - sigma`` has at most ``RHO_BITS + 1``.
_LINK_NONCE_BITS = _binding.RHO_BITS + 1 + _CHALLENGE_BITS + _HIDING_BITS
_LINK_WIDTH = (_LINK_NONCE_BITS + 2 + 7) // 8


def linked_size(max_weight: int) -> int:
    """Bytes of what a contribution's proof starts with: the pin, its range proof, the link."""
    return WIDTH + proof_size(max_weight) + _CHALLENGE_BITS // 8 + _LINK_WIDTH


def _pin_context(fingerprint: bytes) -> bytes:
    return b"pin|" + fingerprint


def _pinned(pins: dict[Any, Any] | None, weight: int, max_weight: int, fingerprint: bytes) -> _Pin:
    slot = (weight, max_weight, fingerprint)
    if pins is not None and isinstance(pins.get(slot), _Pin):
        return pins[slot]  # type: ignore[no-any-return]
    sigma = secrets.randbits(_binding.RHO_BITS)
    proof = prove(weight, sigma, max_weight, _pin_context(fingerprint))
    pin = _Pin(sigma, commit(weight, sigma), proof)
    if pins is not None:
        pins[slot] = pin
    return pin


#: Pins a process remembers. A round checks every client's pin twice (the aggregator
#: on arrival, the key holder in its batch), in the same order, so a cache smaller
#: than the federation forgets each pin before its next check: at 4,096 a
#: 10,000-client round checked all 20,000 in full. Each entry keeps the pin's bytes
#: (2.4 KB at ``max_weight`` 32, 4.5 KB at 1,000).
PINS_REMEMBERED = 1 << 14


@exact_cache(maxsize=PINS_REMEMBERED)
def _pin_holds(commitment: bytes, proof: bytes, max_weight: int, fingerprint: bytes) -> bool:
    """Whether a pin holds, checked in full once per process for each exact pin.

    A client's pin comes with every contribution, and the check is deterministic. It
    is remembered only when called with exact ``bytes`` and ``int``, under what the
    check read (:mod:`he_fed.crypto._exact_cache`): an object that hashes and compares
    as one pin while holding another is checked and forgotten
    (``test_exact_cache.py``, ``test_weight_range.py``).
    """
    return verify(commitment, proof, max_weight, _pin_context(fingerprint))


def _link_challenge(context: bytes, current: bytes, pinned: bytes, t: Any) -> int:
    h = hashlib.sha256(_DOMAIN + b"/link")
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(current + pinned + int(t).to_bytes(WIDTH, "big"))
    return int.from_bytes(h.digest()[: _CHALLENGE_BITS // 8], "big")


def prove_linked(
    pins: dict[Any, Any] | None,
    weight: int,
    rho: int,
    max_weight: int,
    fingerprint: bytes,
    context: bytes,
) -> bytes:
    """The weight proof a contribution carries: its maker's pin, and the link to ``C``.

    The pin, ``P = G^w · H^sigma`` with its range proof, is made once per weight,
    plan and key and kept in ``pins`` (a dict the caller holds across rounds; with
    None, a fresh pin each time). The link is a Schnorr proof, bound to
    ``context``, that ``C / P = H^(rho - sigma)``: ``C`` holds the pin's weight.

    Raises
    ------
    ConfigurationError
        If ``weight`` lies outside ``[1, max_weight]``.
    """
    pin = _pinned(pins, weight, max_weight, fingerprint)
    current = commit(weight, rho)
    nonce = secrets.randbits(_LINK_NONCE_BITS)
    e = _link_challenge(context, current, pin.commitment, _h_pow(nonce))
    z = nonce + e * (rho - pin.sigma)
    link = e.to_bytes(_CHALLENGE_BITS // 8, "big") + z.to_bytes(_LINK_WIDTH, "big", signed=True)
    return pin.commitment + pin.proof + link


def verify_linked(
    current: bytes, proof: bytes, max_weight: int, fingerprint: bytes, context: bytes
) -> bool:
    """Whether ``proof`` (from :func:`prove_linked`) shows ``current`` holds a weight in range."""
    if len(proof) != linked_size(max_weight) or len(current) != WIDTH:
        return False
    pinned, size = proof[:WIDTH], proof_size(max_weight)
    if not _pin_holds(pinned, proof[WIDTH : WIDTH + size], max_weight, fingerprint):
        return False
    c_value = _element(current)
    if c_value is None:
        return False
    at = WIDTH + size
    e = int.from_bytes(proof[at : at + _CHALLENGE_BITS // 8], "big")
    z = int.from_bytes(proof[at + _CHALLENGE_BITS // 8 :], "big", signed=True)
    ratio = c_value * gmpy2.invert(gmpy2.mpz(int.from_bytes(pinned, "big")), _MOD) % _MOD
    return _link_challenge(context, current, pinned, _over(z, ratio, e)) == e


def verified_rest(
    binding: bytes, proof: bytes, max_weight: int, fingerprint: bytes, context: bytes
) -> bytes | None:
    """The scheme's own proof that follows a valid weight proof in ``proof``, or None.

    ``binding`` is a whole binding (:func:`bind`); the weight proof comes first.
    """
    size = linked_size(max_weight) if 1 <= max_weight <= _LARGEST else -1
    if len(binding) != 2 * WIDTH or size < 0 or len(proof) < size:
        return None
    if not verify_linked(binding[WIDTH:], proof[:size], max_weight, fingerprint, context):
        return None
    return proof[size:]
