"""Chaum-Pedersen proof that a partial decryption used the share behind its verification key.

A share holder ``i`` with share ``s_i`` publishes, for a ciphertext ``c``, the
partial decryption ``c_i = c^(2Δ·s_i) mod n²``; its verification key is
``v_i = v^(Δ·s_i) mod n²``. It proves, without revealing ``x = Δ·s_i``, that

    log_(c^4) (c_i²) = log_v (v_i) = x

as in Shoup (EUROCRYPT 2000) and Fouque, Poupard and Stern (FC 2000): it draws
``r`` of ``|x| + 256`` bits, commits to ``a = (c^4)^r`` and ``b = v^r``, hashes
the context, the four group elements and ``(a, b)`` into a 128-bit challenge
``e`` (Fiat-Shamir), and sends ``(e, z = r + e·x)``. The verifier recomputes
``a = (c^4)^z · (c_i²)^(-e)`` and ``b = v^z · v_i^(-e)`` and checks that they hash
to ``e``.

* *Zero knowledge:* ``z`` is statistically close (distance below ``2^-128``) to a
  uniform ``|x| + 256``-bit integer whatever ``x`` is.
* *Soundness:* in the squares of ``Z*_(n²)`` (the proof is on squares, ``c^4`` and
  ``c_i²``, for that reason), whose order has no factor below ``2^(|p|-1)`` for
  safe primes, a prover who answers two challenges knows ``x`` modulo the order:
  a wrong ``c_i`` passes with probability about ``2^-128``.
* *Binding to its context:* the hash covers the caller's context (federation,
  round, share index, the vector's digest and the ciphertext's position), so a
  proof cannot be replayed for another ciphertext, round or holder.
"""

from __future__ import annotations

import hashlib
import secrets

import gmpy2

__all__ = ["proof_size", "prove", "verify"]

_DOMAIN = b"he-fed/threshold-paillier/chaum-pedersen/v1"
_CHALLENGE_BITS = 128
_HIDING_BITS = 256


def _nonce_bits(exponent_bits: int) -> int:
    return exponent_bits + _HIDING_BITS


def proof_size(exponent_bits: int) -> int:
    """Bytes of one proof: the 16-byte challenge ``e``, then ``z``."""
    return _CHALLENGE_BITS // 8 + (_nonce_bits(exponent_bits) + 1 + 7) // 8


def _challenge(modulus: int, context: bytes, elements: tuple[int, ...]) -> int:
    width = (modulus.bit_length() + 7) // 8
    h = hashlib.sha256(_DOMAIN)
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(modulus.to_bytes(width, "big"))
    for value in elements:
        h.update(int(value).to_bytes(width, "big"))
    return int.from_bytes(h.digest()[: _CHALLENGE_BITS // 8], "big")


def prove(
    modulus: int,
    base: int,
    value: int,
    v: int,
    v_i: int,
    x: int,
    exponent_bits: int,
    context: bytes,
) -> bytes:
    """A proof that ``log_base(value) = log_v(v_i) = x`` modulo ``modulus`` (``n²``).

    ``base`` is ``c^4`` and ``value`` is ``c_i²``; ``x`` has at most
    ``exponent_bits`` bits.
    """
    mod = gmpy2.mpz(modulus)
    r = secrets.randbits(_nonce_bits(exponent_bits))
    a = gmpy2.powmod(base, r, mod)
    b = gmpy2.powmod(v, r, mod)
    e = _challenge(modulus, context, (base, value, v, v_i, a, b))
    z = r + e * x
    return e.to_bytes(_CHALLENGE_BITS // 8, "big") + z.to_bytes(
        proof_size(exponent_bits) - _CHALLENGE_BITS // 8, "big"
    )


def verify(
    modulus: int,
    base: int,
    value: int,
    v: int,
    v_i: int,
    proof: bytes,
    exponent_bits: int,
    context: bytes,
) -> bool:
    """Whether ``proof`` shows ``log_base(value) = log_v(v_i)`` for this context."""
    if len(proof) != proof_size(exponent_bits):
        return False
    mod = gmpy2.mpz(modulus)
    if gmpy2.gcd(value, mod) != 1 or gmpy2.gcd(v_i, mod) != 1:
        return False
    e = int.from_bytes(proof[: _CHALLENGE_BITS // 8], "big")
    z = int.from_bytes(proof[_CHALLENGE_BITS // 8 :], "big")
    if z.bit_length() > _nonce_bits(exponent_bits) + 1:
        return False
    a = gmpy2.powmod(base, z, mod) * gmpy2.powmod(gmpy2.invert(value, mod), e, mod) % mod
    b = gmpy2.powmod(v, z, mod) * gmpy2.powmod(gmpy2.invert(v_i, mod), e, mod) % mod
    return _challenge(modulus, context, (base, value, v, v_i, a, b)) == e
