"""Per-value Paillier on python-paillier (phe), with gmpy2 for the arithmetic.

Every value is quantized onto the plan's one shared fixed-point scale (see
:class:`~he_fed.crypto.packing.Quantizer`), multiplied by the contribution's integer
weight, reduced modulo ``n`` (negatives wrap to ``n - |m|``) and encrypted on its
own. The weight is one more ciphertext. Sums decode exactly; the plan guarantees
that no honest sum can leave ``(-n/3, n/3)``, and decryption raises if one does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import gmpy2
import numpy as np
from phe import paillier as phe_paillier

from he_fed.crypto import wire
from he_fed.crypto.base import (
    EncryptedVector,
    KeyPair,
    PublicKey,
    Scheme,
    SecretKey,
    WeightedSum,
    key_fingerprint,
)
from he_fed.crypto.packing import Quantizer
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    MalformedMessage,
)

__all__ = ["Paillier"]

_DOMAIN = "he-fed/paillier/v1"
#: Below 2048 bits a Paillier modulus gives less than 112-bit security
#: (NIST SP 800-57 Part 1, Table 2, read for factoring-based keys).
MIN_SECURE_KEY_BITS = 2048
_MIN_KEY_BITS = 256


def _check_key_bits(key_bits: int, allow_insecure: bool) -> None:
    if isinstance(key_bits, bool) or not isinstance(key_bits, int):
        raise ConfigurationError(f"key_bits must be an integer, got {key_bits!r}")
    if key_bits < _MIN_KEY_BITS or key_bits % 2:
        raise ConfigurationError(f"key_bits must be an even number >= {_MIN_KEY_BITS}")
    if key_bits < MIN_SECURE_KEY_BITS and not allow_insecure:
        raise InsecureParameters(
            f"key_bits={key_bits} is below {MIN_SECURE_KEY_BITS} (about 112-bit security); "
            "pass allow_insecure=True (CLI: --allow-insecure) only for tests and demos"
        )


def _capacity_check(scheme: Paillier, levels: int, knobs: str) -> None:
    """Refuse a plan whose largest sum could reach the wrap-around region."""
    need = scheme.max_clients * scheme.max_weight * levels
    # n has exactly key_bits bits, so n >= 2**(key_bits - 1).
    room = 2 ** (scheme.key_bits - 1) // 3
    if need > room:
        raise EncodingOverflowError(
            f"a sum of {scheme.max_clients} contributions of weight up to "
            f"{scheme.max_weight} needs {need.bit_length()} bits, but a {scheme.key_bits}-bit "
            f"key holds {room.bit_length()}; lower {knobs} or use a larger key"
        )


@dataclass(frozen=True, kw_only=True)
class Paillier(Scheme):
    """Per-value Paillier encryption with one shared fixed-point scale.

    Parameters
    ----------
    key_bits : int, default=2048
        Size of the modulus ``n``. Below 2048 raises :class:`InsecureParameters`
        unless ``allow_insecure`` is true.
    precision_bits : int, default=64
        Width of each quantized value, sign included. The quantization step is
        ``clip / (2**(precision_bits - 1) - 1)``.
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).
    allow_insecure : bool, default=False
        Accept keys below 2048 bits. For fast tests only.
    """

    key_bits: int = MIN_SECURE_KEY_BITS
    precision_bits: int = 64
    allow_insecure: bool = field(default=False, compare=False, metadata={"wire": False})

    name: ClassVar[str] = "paillier"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_key_bits(self.key_bits, self.allow_insecure)
        if (
            isinstance(self.precision_bits, bool)
            or not isinstance(self.precision_bits, int)
            or not 2 <= self.precision_bits <= 128
        ):
            raise ConfigurationError("precision_bits must be an integer between 2 and 128")
        _capacity_check(self, self.quantizer.levels, "precision_bits, max_clients or max_weight")

    @cached_property
    def quantizer(self) -> Quantizer:
        """The shared fixed-point scale."""
        return Quantizer(self.clip, self.precision_bits)

    def keygen(self) -> KeyPair:
        """Generate a key pair with phe (``n`` of exactly ``key_bits`` bits)."""
        pub, priv = phe_paillier.generate_paillier_keypair(n_length=self.key_bits)
        public = PaillierPublicKey(self, int(pub.n))
        return KeyPair(public, PaillierSecretKey(public, int(priv.p), int(priv.q)))

    @classmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> PaillierPublicKey:
        if envelope.kind is not wire.Kind.PUBLIC_KEY:
            raise MalformedMessage(f"a paillier scheme has no {envelope.kind.label}")
        r = wire.Reader(envelope.body, "paillier public key")
        n = int.from_bytes(r.blob(max_size=scheme.key_bits // 8 + 1), "big")
        r.finish()
        if n.bit_length() != scheme.key_bits or n % 2 == 0:
            raise MalformedMessage("paillier modulus does not match its declared size")
        key = PaillierPublicKey(scheme, n)
        if key.fingerprint != envelope.fingerprint:
            raise MalformedMessage("paillier key fingerprint does not match its modulus")
        return key


class PaillierPublicKey(PublicKey):
    """Paillier public key: the modulus ``n``."""

    def __init__(self, scheme: Paillier, n: int) -> None:
        self._n_bytes = n.to_bytes((n.bit_length() + 7) // 8, "big")
        super().__init__(scheme, key_fingerprint(_DOMAIN, self._n_bytes))
        self.n = gmpy2.mpz(n)
        self.nsquare = self.n * self.n
        self._phe = phe_paillier.PaillierPublicKey(n)
        self._width = (int(self.nsquare).bit_length() + 7) // 8

    @property
    def scheme(self) -> Paillier:
        """Scheme parameters and encoding plan."""
        return self._scheme  # type: ignore[return-value]

    def _key_body(self) -> bytes:
        w = wire.Writer()
        w.blob(self._n_bytes)
        return w.getvalue()

    def _encrypt(self, values: np.ndarray, weight: int) -> PaillierVector:
        n = int(self.n)
        plaintexts = [(weight * int(q)) % n for q in self.scheme.quantizer.quantize(values)]
        plaintexts.append(weight)
        ciphertexts = [gmpy2.mpz(self._phe.raw_encrypt(m)) for m in plaintexts]
        return PaillierVector(self, ciphertexts, 1)

    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> PaillierVector:
        width = self._width
        if size + 1 > reader.remaining // width:
            raise MalformedMessage(f"truncated paillier vector of {size} values")
        raw = reader.raw((size + 1) * width)
        ciphertexts = []
        for i in range(size + 1):
            c = gmpy2.mpz(int.from_bytes(raw[i * width : (i + 1) * width], "big"))
            if not 0 < c < self.nsquare or gmpy2.gcd(c, self.n) != 1:
                raise MalformedMessage(f"paillier ciphertext {i} is not in Z*_(n^2)")
            ciphertexts.append(c)
        return PaillierVector(self, ciphertexts, count)


class PaillierSecretKey(SecretKey):
    """Paillier secret key: the primes ``p`` and ``q`` (phe decrypts with CRT)."""

    def __init__(self, public: PaillierPublicKey, p: int, q: int) -> None:
        super().__init__(public)
        if p * q != int(public.n):
            raise ConfigurationError("p * q does not equal the public modulus")
        self._phe = phe_paillier.PaillierPrivateKey(public._phe, p, q)

    def _raw_decrypt(self, ciphertexts: list[Any]) -> list[int]:
        return [int(self._phe.raw_decrypt(int(c))) for c in ciphertexts]

    def _decrypt(self, vector: PaillierVector) -> WeightedSum:
        scheme: Paillier = vector.key.scheme  # type: ignore[assignment]
        n = int(self._public.n)  # type: ignore[attr-defined]
        quantizer = scheme.quantizer
        bound = vector.count * scheme.max_weight * quantizer.levels
        plain = self._raw_decrypt(vector.ciphertexts)
        signed = []
        for m in plain[:-1]:
            if m > bound:
                m -= n
                if -m > bound:
                    raise EncodingOverflowError(
                        "a decrypted value lies outside the plan's range: the sum "
                        "overflowed or holds contributions the plan did not allow"
                    )
            signed.append(m)
        weight = plain[-1]
        if not vector.count <= weight <= vector.count * scheme.max_weight:
            raise EncodingOverflowError(f"decrypted total weight {weight} is out of range")
        total = quantizer.dequantize(np.array(signed, dtype=object))
        return WeightedSum(total, weight, vector.count)


class PaillierVector(EncryptedVector):
    """One Paillier ciphertext per value, plus one for the weight."""

    def __init__(self, key: PaillierPublicKey, ciphertexts: list[Any], count: int) -> None:
        super().__init__(key, len(ciphertexts) - 1, count)
        self.ciphertexts = ciphertexts

    def _add(self, other: PaillierVector, count: int) -> PaillierVector:
        nsquare = self.key.nsquare  # type: ignore[attr-defined]
        summed = [a * b % nsquare for a, b in zip(self.ciphertexts, other.ciphertexts)]
        return PaillierVector(self.key, summed, count)  # type: ignore[arg-type]

    def _payload(self) -> bytes:
        width = self.key._width  # type: ignore[attr-defined]
        return b"".join(int(c).to_bytes(width, "big") for c in self.ciphertexts)
