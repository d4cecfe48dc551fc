"""Proof that a client knows the randomness behind its Paillier commitments.

A Paillier commitment is ``R_j = c_j mod n = g^(a_j) mod n`` with ``g = hs mod n``
and the DJN exponent ``a_j`` of ciphertext ``j`` (``he_fed.crypto._djn``). The key
holder checks that an aggregate's commitment is the product of its receipts'. On
its own that check has a hole: a client colluding with the aggregator could sign a
*rogue* commitment ``g^b / Q``, where ``Q`` is the product of the other receipts'
commitments, so that the check passes for an aggregate holding only one victim's
ciphertext and the colluder's known plaintext. Signing ``g^b / Q`` is easy; knowing
its discrete logarithm is as hard as knowing the logarithm of ``Q``.

So each contribution carries one batched Schnorr proof of knowledge of its
exponents, made non-interactive with Fiat-Shamir and bound to the contribution's
context (federation, round, task, client, key):

* coefficients ``c_j`` (128 bits each) come from SHAKE-256 over the context and the
  commitments, so they are fixed only after every ``R_j`` is;
* the prover knows ``B = sum_j c_j a_j`` with ``A = prod_j R_j^(c_j) = g^B``; it
  takes ``t = g^k`` for a random ``k`` of ``|B| + 256`` bits, hashes the context,
  the commitments and ``t`` into a 128-bit challenge ``e``, and sends ``(e, z)``
  with ``z = k + e B`` (193 bytes under a 2048-bit key);
* the verifier recomputes ``t = g^z · A^(-e) (mod n)`` and checks that it hashes
  to ``e``.

``z`` is statistically close (distance below ``2^-128``) to uniform whatever ``B``
is, so the proof says nothing about the exponents: the aggregator, which holds the
ciphertexts, learns nothing it could unmask them with. The group ``Z*_n`` has
unknown order; Schnorr proofs there with integer responses are sound under the
strong RSA assumption (Damgård and Fujisaki, ASIACRYPT 2002). A rogue commitment
would need ``log_g`` of a random-coefficient product of the honest commitments.

The prover pays one exponentiation with a ``|B| + 256``-bit exponent per
contribution and the verifier one such exponentiation, both through a fixed-base
table for ``g`` built once per key (about 11 MiB at 2048 bits, shared in a
process, whatever the proof's length: :func:`table_bits`), and the verifier the
product of one 128-bit power per ciphertext, by buckets
(:mod:`he_fed.crypto._multiexp`; ``benchmarks/commitment_proof.py`` measures both
against encryption).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

import gmpy2

from he_fed.crypto._djn import fixed_base
from he_fed.crypto._multiexp import product_of_powers

__all__ = ["nonce_bits", "proof_size", "prove", "table_bits", "verify"]

_DOMAIN = b"he-fed/paillier-commitment-pok/v1"
_COEFF_BITS = 128
_CHALLENGE_BITS = 128
_HIDING_BITS = 256
#: Ciphertexts per proof that one fixed-base table serves (see :func:`table_bits`).
_TABLE_COUNT = 1 << 20


def _coefficients(n: int, context: bytes, residues: Sequence[int], width: int) -> list[int]:
    h = hashlib.shake_256()
    h.update(_DOMAIN + b"/coefficients")
    h.update(n.to_bytes(width, "big"))
    h.update(len(context).to_bytes(8, "big") + context)
    for r in residues:
        h.update(int(r).to_bytes(width, "big"))
    size = _COEFF_BITS // 8
    stream = h.digest(size * len(residues))
    return [int.from_bytes(stream[i * size : (i + 1) * size], "big") for i in range(len(residues))]


def _challenge(n: int, context: bytes, residues: Sequence[int], t: int, width: int) -> int:
    h = hashlib.sha256(_DOMAIN + b"/challenge")
    h.update(n.to_bytes(width, "big"))
    h.update(len(context).to_bytes(8, "big") + context)
    for r in residues:
        h.update(int(r).to_bytes(width, "big"))
    h.update(int(t).to_bytes(width, "big"))
    return int.from_bytes(h.digest()[: _CHALLENGE_BITS // 8], "big")


def nonce_bits(exponent_bits: int, count: int) -> int:
    """Bits of the prover's nonce ``k`` for ``count`` exponents of ``exponent_bits`` bits."""
    return exponent_bits + _COEFF_BITS + max(count, 1).bit_length() + _HIDING_BITS


def table_bits(exponent_bits: int, count: int) -> int:
    """Exponent size of the fixed-base table for ``g`` that serves a proof of ``count``.

    Sized for :data:`_TABLE_COUNT` ciphertexts (or ``count`` if more), so that the
    proofs of every round under a key share one table, whatever their length: the
    statistics rounds' contributions are longer or shorter than the training
    rounds', and each built a table of its own (about 11 MiB at 2048 bits). It
    costs 20 exponent bits more than the smallest table: two rows, 0.13 MiB at
    2048 bits.
    """
    return nonce_bits(exponent_bits, max(count, _TABLE_COUNT)) + 1


def proof_size(n: int, exponent_bits: int, count: int) -> int:
    """Bytes of a proof for ``count`` ciphertexts: the challenge ``e``, then ``z``."""
    z_bits = nonce_bits(exponent_bits, count) + 1
    return _CHALLENGE_BITS // 8 + (z_bits + 7) // 8


def prove(
    n: int,
    g: int,
    residues: Sequence[Any],
    exponents: Sequence[int],
    exponent_bits: int,
    context: bytes,
) -> bytes:
    """A proof that the prover knows each ``a_j`` behind ``R_j = g^(a_j) mod n``.

    ``residues`` are the ``R_j`` (the commitment), ``exponents`` the ``a_j``.
    """
    width = (n.bit_length() + 7) // 8
    coeffs = _coefficients(n, context, residues, width)
    b = sum(c * a for c, a in zip(coeffs, exponents, strict=True))
    bits = nonce_bits(exponent_bits, len(exponents))
    k = secrets.randbits(bits)
    table = fixed_base(g, n, table_bits(exponent_bits, len(exponents)))
    e = _challenge(n, context, residues, table.pow(k), width)
    z = k + e * b
    z_size = proof_size(n, exponent_bits, len(exponents)) - _CHALLENGE_BITS // 8
    return e.to_bytes(_CHALLENGE_BITS // 8, "big") + z.to_bytes(z_size, "big")


def verify(
    n: int, g: int, residues: Sequence[Any], proof: bytes, exponent_bits: int, context: bytes
) -> bool:
    """Whether ``proof`` shows knowledge of the exponents of ``residues`` (``R_j``) base ``g``.

    It recomputes ``t = g^z · A^(-e)`` and checks that ``e`` is the hash of it.
    """
    width = (n.bit_length() + 7) // 8
    if len(proof) != proof_size(n, exponent_bits, len(residues)) or not residues:
        return False
    mod = gmpy2.mpz(n)
    e = int.from_bytes(proof[: _CHALLENGE_BITS // 8], "big")
    z = gmpy2.mpz(int.from_bytes(proof[_CHALLENGE_BITS // 8 :], "big"))
    coeffs = _coefficients(n, context, residues, width)
    a = product_of_powers(list(zip(residues, coeffs, strict=True)), mod)
    if gmpy2.gcd(a, mod) != 1:
        return False
    z_bits = nonce_bits(exponent_bits, len(residues)) + 1
    if z.bit_length() > z_bits:
        return False
    # Verifiers check a proof per contribution per round under one key: a fixed-base
    # table for g (shared per key and size, see djn.fixed_base) makes g^z about 8x
    # cheaper than powmod.
    g_z = fixed_base(g, n, table_bits(exponent_bits, len(residues))).pow(int(z))
    t = g_z * gmpy2.powmod(gmpy2.invert(a, mod), e, mod) % mod
    return _challenge(n, context, residues, t, width) == e
