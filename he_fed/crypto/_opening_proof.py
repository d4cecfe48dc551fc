"""Proof that a client knows an opening of its binding commitment (CKKS contributions).

A binding commitment ``B = prod_j g_j^(m_j) · h^rho`` (:mod:`he_fed.crypto._binding`)
fixes what an aggregate must decrypt to, but only if every receipt's ``B`` was
made by someone who knows what it commits to. Otherwise a client colluding with
the aggregator could sign a *rogue* ``B_c = B_x / prod_(k != v, c) B_k``, computed
from the other receipts' public commitments, so that the receipts' product is the
commitment of "victim + known plaintext" while the cohort looks full. Computing
``B_c`` is easy; knowing a representation of it in the generators is as hard as
knowing one of ``prod_(k != v, c) B_k``, the honest clients' commitment, which
would break the binding or the hiding of their commitments.

So each CKKS contribution carries a Schnorr proof of knowledge of a
representation, made non-interactive with Fiat-Shamir and bound to the
contribution's context (federation, round, task, client, key, and the digests of
its commitments), the same context the Paillier proof binds:

* the prover draws ``k_j`` of ``exponent_bits + 256`` bits for each exponent and
  ``k_rho`` of ``RHO_BITS + 256``, computes ``T = prod_j g_j^(k_j) · h^(k_rho)``,
  hashes the context, ``B`` and ``T`` into a 128-bit challenge ``e``, and sends
  ``e`` with the integer responses ``z_j = k_j + e·m_j`` and ``z_rho = k_rho + e·rho``;
* the verifier recomputes ``T = prod_j g_j^(z_j) · h^(z_rho) · B^(-e)`` and checks
  that it hashes to ``e``.

Each nonce has 128 bits more than ``e·m_j`` can have, so each response is
statistically close (distance below ``2^-127`` each) to one that does not depend
on ``m_j``: the proof says nothing about the plaintext. The group's order ``Q`` is
known and prime, so two accepting transcripts for one ``T`` with challenges
``e != e'`` give the representation ``(z - z') / (e - e') mod Q``: the proof is
sound with integer responses, which are shorter than reduced ones would be for
the packed exponents of :mod:`he_fed.crypto._ckks_binding`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import gmpy2

from he_fed.crypto import _binding

__all__ = ["proof_size", "prove", "verify"]

_DOMAIN = b"he-fed/binding-opening-pok/v1"
_CHALLENGE_BITS = 128
#: Bits the nonces carry beyond ``e · m``: statistical hiding to ``2^-128``.
_HIDING_BITS = 128


def _response_width(exponent_bits: int) -> int:
    """Bytes of one signed response ``z = k + e·m`` with ``|m| < 2^exponent_bits``."""
    return (exponent_bits + _CHALLENGE_BITS + _HIDING_BITS + 2 + 7) // 8


def proof_size(count: int, exponent_bits: int) -> int:
    """Bytes of a proof for ``count`` exponents below ``2^exponent_bits`` in magnitude.

    The challenge, then ``z_rho``, then one response per exponent.
    """
    return (
        _CHALLENGE_BITS // 8
        + _response_width(_binding.RHO_BITS)
        + count * _response_width(exponent_bits)
    )


def _challenge(context: bytes, binding: bytes, t: bytes, count: int) -> int:
    h = hashlib.sha256(_DOMAIN)
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(count.to_bytes(8, "big"))
    h.update(binding)
    h.update(t)
    return int.from_bytes(h.digest()[: _CHALLENGE_BITS // 8], "big")


def prove(
    exponents: Sequence[int], rho: int, binding: bytes, exponent_bits: int, context: bytes
) -> bytes:
    """A proof that the prover knows ``exponents`` and ``rho`` opening ``binding``.

    ``exponents`` are the ``m_j`` (signed, ``|m_j| < 2^exponent_bits``), ``rho`` the
    blinding (non-negative, below ``2^RHO_BITS``).
    """
    width = _response_width(exponent_bits)
    nonces = [secrets.randbits(exponent_bits + _CHALLENGE_BITS + _HIDING_BITS) for _ in exponents]
    k_rho = secrets.randbits(_binding.RHO_BITS + _CHALLENGE_BITS + _HIDING_BITS)
    t = _binding.commit(nonces, k_rho)
    e = _challenge(context, binding, t, len(nonces))
    out = [e.to_bytes(_CHALLENGE_BITS // 8, "big")]
    out.append((k_rho + e * rho).to_bytes(_response_width(_binding.RHO_BITS), "big", signed=True))
    for k, m in zip(nonces, exponents, strict=True):
        out.append((k + e * int(m)).to_bytes(width, "big", signed=True))
    return b"".join(out)


def verify(binding: bytes, proof: bytes, count: int, exponent_bits: int, context: bytes) -> bool:
    """Whether ``proof`` shows knowledge of an opening of ``binding`` with ``count`` exponents."""
    if count < 1 or len(proof) != proof_size(count, exponent_bits):
        return False
    if _binding.product([binding]) is None:  # size, range and subgroup
        return False
    size, rho_width = _CHALLENGE_BITS // 8, _response_width(_binding.RHO_BITS)
    width = _response_width(exponent_bits)
    e = int.from_bytes(proof[:size], "big")
    z_rho = int.from_bytes(proof[size : size + rho_width], "big", signed=True)
    start = size + rho_width
    responses = [
        int.from_bytes(proof[i : i + width], "big", signed=True)
        for i in range(start, len(proof), width)
    ]
    mod = gmpy2.mpz(_binding.P)
    b_inverse = gmpy2.invert(gmpy2.mpz(int.from_bytes(binding, "big")), mod)
    t = gmpy2.mpz(int.from_bytes(_binding.commit(responses, z_rho), "big"))
    t = t * gmpy2.powmod(b_inverse, e, mod) % mod
    return _challenge(context, binding, int(t).to_bytes(_binding.WIDTH, "big"), count) == e
