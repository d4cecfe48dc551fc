"""Keys and per-value ciphertexts to and from python-paillier (``phe``).

he-fed's Paillier is standard Paillier with ``g = n + 1``, which is also what phe
uses. So a modulus, its primes and a ciphertext integer mean the same in both
libraries. Only two things differ:

* **The public key.** he-fed's key also carries the DJN generator ``hs`` (see
  :mod:`he_fed.crypto._djn`), which phe has no place for. A key brought in from phe
  gets a generator derived from ``n`` alone (SHAKE-256 of ``n``, then
  ``hs = (-x²)^n mod n²``). Every party that brings in the same phe key therefore
  builds the same he-fed key, with the same fingerprint. As in DJN's construction,
  the root ``-x²`` need not be secret. DJN's analysis takes primes
  ``p ≡ q ≡ 3 (mod 4)``. he-fed's own key generation guarantees that, but phe's
  does not.
* **The encoding.** phe encodes each number with its own base-16 exponent. he-fed
  quantizes every value onto one fixed-point grid of step
  ``scheme.quantizer.step``, which is not a power of 16, and multiplies by the
  contribution's integer weight. No phe exponent expresses that scale exactly, so
  a phe number here always has exponent 0, and its integer is he-fed's plaintext:
  ``Σ_k weight_k · round(x_k / step)``, with negatives wrapped modulo ``n``, as
  phe wraps them.

Examples
--------
>>> import numpy as np
>>> from phe import paillier
>>> from he_fed.crypto import Paillier, key_pair_from_phe, vector_to_phe
>>> phe_public, phe_private = paillier.generate_paillier_keypair(n_length=1024)
>>> scheme = Paillier(key_bits=1024, allow_insecure=True, clip=1.0, max_weight=4)
>>> keys = key_pair_from_phe(phe_private, scheme=scheme)
>>> total = keys.public.encrypt(np.array([0.5, -0.25]), weight=3) + keys.public.encrypt(
...     np.array([0.25, 1.0]), weight=1
... )
>>> *sums, weight = [phe_private.decrypt(c) for c in vector_to_phe(total)]
>>> [s * scheme.quantizer.step for s in sums], weight
([1.75, 0.25], 4)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import gmpy2
import phe

from he_fed._validation import check_int
from he_fed.crypto._paillier_keys import PaillierPublicKey, PaillierSecretKey, PaillierVector
from he_fed.crypto.base import KeyPair
from he_fed.crypto.paillier import PackedPaillier, Paillier
from he_fed.exceptions import (
    ConfigurationError,
    EncodingError,
    KeyMismatchError,
    MalformedMessage,
    ShapeMismatchError,
)

__all__ = [
    "key_pair_from_phe",
    "public_key_from_phe",
    "public_key_to_phe",
    "secret_key_to_phe",
    "vector_from_phe",
    "vector_to_phe",
]

_GENERATOR_DOMAIN = b"he-fed/phe-interop/djn-generator/v1"


def _derived_generator(n: int) -> int:
    """The DJN ``hs`` of a phe modulus: ``(-x²)^n mod n²``, ``x`` drawn from SHAKE-256 of ``n``."""
    width = (n.bit_length() + 7) // 8
    n_ = gmpy2.mpz(n)
    counter = 0
    while True:
        seed = _GENERATOR_DOMAIN + n.to_bytes(width, "big") + counter.to_bytes(4, "big")
        # 64 extra bits make x mod n as good as uniform.
        x = gmpy2.mpz(int.from_bytes(hashlib.shake_256(seed).digest(width + 8), "big")) % n_
        if x > 1 and gmpy2.gcd(x, n_) == 1:
            return int(gmpy2.powmod(-x * x % n_, n_, n_ * n_))
        counter += 1


def _paillier_public(key: object) -> PaillierPublicKey:
    if not isinstance(key, PaillierPublicKey):
        scheme = getattr(getattr(key, "scheme", None), "name", type(key).__name__)
        raise KeyMismatchError(f"expected a Paillier public key, got a {scheme} key")
    return key


def _per_value_public(key: object) -> PaillierPublicKey:
    public = _paillier_public(key)
    if not isinstance(public.scheme, Paillier):
        raise KeyMismatchError(
            f"a {public.scheme.name} ciphertext packs many values into one integer, but a "
            "phe EncryptedNumber holds one; convert vectors of the per-value 'paillier' "
            "scheme, or decrypt packed ones with phe's raw_decrypt and scheme.decode"
        )
    return public


def public_key_to_phe(key: PaillierPublicKey) -> phe.PaillierPublicKey:
    """The phe public key with the same modulus.

    Parameters
    ----------
    key : PaillierPublicKey
        A public key of either Paillier scheme.

    Returns
    -------
    phe.PaillierPublicKey

    Raises
    ------
    KeyMismatchError
        If ``key`` is not a Paillier public key.
    """
    return phe.PaillierPublicKey(int(_paillier_public(key).n))


def public_key_from_phe(
    key: phe.PaillierPublicKey,
    *,
    scheme: Paillier | PackedPaillier | None = None,
    allow_insecure: bool = False,
) -> PaillierPublicKey:
    """An he-fed public key for a phe modulus, with the DJN generator derived from it.

    Parameters
    ----------
    key : phe.PaillierPublicKey
        The phe public key.
    scheme : Paillier or PackedPaillier, optional
        The encoding plan, with ``key_bits`` equal to the modulus size. The default
        is ``Paillier(key_bits=n.bit_length())``.
    allow_insecure : bool, default=False
        Accept a modulus under 2048 bits when building the default scheme. A
        scheme passed in carries its own opt-in.

    Returns
    -------
    PaillierPublicKey
        The same key for the same ``key`` and ``scheme``, in every process.

    Raises
    ------
    InsecureParameters
        If the modulus is under 2048 bits and insecure sizes were not allowed.
    ConfigurationError
        If ``key`` is not a phe public key with ``g = n + 1``, or ``scheme`` is not
        a Paillier scheme of the modulus's size.
    """
    if not isinstance(key, phe.PaillierPublicKey):
        raise ConfigurationError(f"expected a phe PaillierPublicKey, got {type(key).__name__}")
    n = int(key.n)
    if key.g != n + 1 or n < 3 or n % 2 == 0:
        raise ConfigurationError("the phe key is not a standard Paillier key (odd n, g = n + 1)")
    if scheme is None:
        scheme = Paillier(key_bits=n.bit_length(), allow_insecure=allow_insecure)
    if not isinstance(scheme, (Paillier, PackedPaillier)):
        raise ConfigurationError(f"a phe key needs a Paillier scheme, got {type(scheme).__name__}")
    if scheme.key_bits != n.bit_length():
        raise ConfigurationError(
            f"the phe modulus has {n.bit_length()} bits but the scheme has "
            f"key_bits={scheme.key_bits}"
        )
    return PaillierPublicKey(scheme, n, _derived_generator(n))


def secret_key_to_phe(key: PaillierSecretKey) -> phe.PaillierPrivateKey:
    """The phe private key with the same primes, under :func:`public_key_to_phe` of its public key.

    Raises
    ------
    KeyMismatchError
        If ``key`` is not a Paillier secret key.
    """
    if not isinstance(key, PaillierSecretKey):
        raise KeyMismatchError(f"expected a Paillier secret key, got {type(key).__name__}")
    crt = key._crt
    public = public_key_to_phe(_paillier_public(key.public))
    return phe.PaillierPrivateKey(public, int(crt.p), int(crt.q))


def key_pair_from_phe(
    key: phe.PaillierPrivateKey,
    *,
    scheme: Paillier | PackedPaillier | None = None,
    allow_insecure: bool = False,
) -> KeyPair:
    """An he-fed key pair from a phe private key (which holds its public key).

    Parameters
    ----------
    key : phe.PaillierPrivateKey
        The phe private key; its ``public_key`` becomes the he-fed public key, as
        :func:`public_key_from_phe` builds it.
    scheme, allow_insecure
        See :func:`public_key_from_phe`.

    Returns
    -------
    KeyPair

    Raises
    ------
    InsecureParameters
        If the modulus is under 2048 bits and insecure sizes were not allowed.
    ConfigurationError
        If ``key`` is not a phe private key whose ``p`` and ``q`` are distinct
        primes, or the scheme does not fit (see :func:`public_key_from_phe`).
    """
    if not isinstance(key, phe.PaillierPrivateKey):
        raise ConfigurationError(f"expected a phe PaillierPrivateKey, got {type(key).__name__}")
    public = public_key_from_phe(key.public_key, scheme=scheme, allow_insecure=allow_insecure)
    p, q = int(key.p), int(key.q)
    if p == q or not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
        raise ConfigurationError("the phe private key's p and q are not two distinct primes")
    return KeyPair(public, PaillierSecretKey(public, p, q))


def vector_to_phe(vector: PaillierVector) -> list[phe.EncryptedNumber]:
    """A per-value Paillier vector as phe numbers of exponent 0: its values, then its weight.

    phe's ``private_key.decrypt`` turns number ``i < vector.size`` into the signed
    integer ``Σ_k weight_k · round(x_ki / step)``, where ``step`` is
    ``vector.key.scheme.quantizer.step``. Multiplied by ``step``, it is exactly
    what he-fed's ``decrypt`` returns. The last number decrypts to the total
    weight ``Σ_k weight_k``. Every such integer lies well within phe's range
    (a third of ``n``), since the plan keeps sums below it.

    Parameters
    ----------
    vector : PaillierVector
        A contribution or a sum of contributions under a per-value ``Paillier`` scheme.

    Returns
    -------
    list of phe.EncryptedNumber
        ``vector.size + 1`` numbers under :func:`public_key_to_phe` of its key.

    Raises
    ------
    KeyMismatchError
        If ``vector`` is not a Paillier vector, or is packed.
    """
    if not isinstance(vector, PaillierVector):
        raise KeyMismatchError(f"expected a Paillier vector, got {type(vector).__name__}")
    key = _per_value_public(vector.key)
    public = public_key_to_phe(key)
    # The last ciphertext holds the binding commitment's blinding, not a value.
    data = vector.ciphertexts[: key.scheme.data_ciphertexts(vector.size)]
    return [phe.EncryptedNumber(public, int(c), 0) for c in data]


def vector_from_phe(
    numbers: Sequence[phe.EncryptedNumber], key: PaillierPublicKey, *, count: int = 1
) -> PaillierVector:
    """A per-value Paillier vector from phe numbers of he-fed's plaintexts: values, then weight.

    Each number must hold an integer on he-fed's grid: a contribution ``x`` of
    weight ``w`` is ``phe_public.encrypt(w * int(q))`` for every ``q`` of
    ``key.scheme.quantizer.quantize(x)``, then ``phe_public.encrypt(w)``. Sums of
    such lists, added number by number in phe, are vectors too, with ``count``
    contributions. Ciphertexts are taken as they are (phe's
    ``ciphertext(be_secure=False)``): phe's ``encrypt`` has randomised them
    already, and randomising again would change the vector's commitment, which a
    key holder checks against the contributors' receipts. So
    ``vector_from_phe(vector_to_phe(v), v.key, count=v.count)`` has ``v``'s
    ciphertexts, byte for byte, but for the last: he-fed's vectors end with the
    blinding of a binding commitment (:meth:`~he_fed.crypto.EncryptedVector.binding`),
    which phe's numbers do not carry, and a fresh encryption of zero takes its place.
    Such a vector decrypts as any other, but has no binding commitment, so a key
    holder that requires one will not accept it as a contribution.

    Parameters
    ----------
    numbers : sequence of phe.EncryptedNumber
        The values' numbers, then the weight's, under the phe key of ``key``.
    key : PaillierPublicKey
        The he-fed public key of a per-value ``Paillier`` scheme.
    count : int, default=1
        Contributions summed into ``numbers``.

    Returns
    -------
    PaillierVector
        Adds to he-fed vectors under ``key``; ``decrypt_weighted`` checks it as
        any other vector.

    Raises
    ------
    KeyMismatchError
        If ``key`` is not a per-value Paillier key, or a number is under another key.
    EncodingError
        If a number holds a fraction (a negative phe exponent).
    ShapeMismatchError
        If there is not at least one value and the weight.
    ConfigurationError
        If ``count`` is outside ``[1, max_clients]`` or a number is not a phe number.
    MalformedMessage
        If a ciphertext is not in ``Z*_(n²)``.
    """
    public = _per_value_public(key)
    max_clients = public.scheme.max_clients
    check_int("count", count, low=1, high=max_clients)
    if len(numbers) < 2:
        raise ShapeMismatchError("a vector needs at least one value and the weight")
    ciphertexts = [_ciphertext(number, public) for number in numbers]
    # phe's numbers carry no blinding for a binding commitment: add an encryption
    # of zero in its place, so that the vector has he-fed's shape (and no binding).
    ciphertexts += public.raw_encrypt([0])
    return PaillierVector(public, ciphertexts, len(numbers) - 1, count)


def _ciphertext(number: object, key: PaillierPublicKey) -> Any:
    if not isinstance(number, phe.EncryptedNumber):
        raise ConfigurationError(f"expected a phe EncryptedNumber, got {type(number).__name__}")
    if number.public_key.n != key.n:
        raise KeyMismatchError("a phe number was encrypted under another key")
    if number.exponent < 0:
        raise EncodingError(
            f"a phe number has exponent {number.exponent}: it holds a fraction, but he-fed "
            "reads integers on its grid (encrypt w * q for q in scheme.quantizer.quantize(x))"
        )
    # A positive exponent is an integer too: multiply it into the plaintext.
    integer = number.decrease_exponent_to(0) if number.exponent > 0 else number
    c = gmpy2.mpz(integer.ciphertext(be_secure=False))
    if not 0 < c < key.nsquare or gmpy2.gcd(c, key.n) != 1:
        raise MalformedMessage("a phe ciphertext is not in Z*_(n^2)")
    return c
