"""Paillier schemes: per-value (``Paillier``) and packed (``PackedPaillier``).

Both share the keys, the ciphertexts and the fast arithmetic of
:mod:`he_fed.crypto._djn` (DJN encryption with a fixed-base table, CRT
decryption); they differ only in how a contribution becomes plaintext integers.

* ``Paillier`` quantizes every value onto one shared fixed-point scale, multiplies
  it by the contribution's integer weight, reduces it modulo ``n`` (negatives wrap
  to ``n - |m|``) and encrypts it on its own. The weight is one more ciphertext.
* ``PackedPaillier`` (after BatchCrypt, USENIX ATC 2020) quantizes each value to a
  signed ``precision_bits`` integer, shifts it non-negative by a zero point (so
  ``0.0`` stays exact), multiplies by the weight, and packs as many slots as fit
  below ``n``. Each slot has room for ``max_clients`` contributions of weight
  ``max_weight``, so a sum of that many ciphertexts unpacks exactly. The total
  weight rides in the first slot; decoding needs it to remove the zero point.

Either way, a plan that could overflow is refused when it is built, and a
decrypted value outside the plan's range raises ``EncodingOverflowError``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import gmpy2
import numpy as np

from he_fed._validation import check_int
from he_fed.crypto import _binding, _value_range, wire
from he_fed.crypto import _djn as djn
from he_fed.crypto._exact_cache import exact_cache
from he_fed.crypto._packing import Quantizer, SlotLayout
from he_fed.crypto._paillier_keys import (
    PARALLEL_MIN_CIPHERTEXTS,
    PaillierPublicKey,
    PaillierSecretKey,
    PaillierVector,
)
from he_fed.crypto.base import (
    KeyPair,
    Scheme,
    WeightedSum,
)
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    MalformedMessage,
)

__all__ = [
    "PARALLEL_MIN_CIPHERTEXTS",
    "PackedPaillier",
    "Paillier",
    "PaillierPublicKey",
    "PaillierSecretKey",
    "PaillierVector",
]

#: Below 2048 bits a Paillier modulus gives less than 112-bit security
#: (NIST SP 800-57 Part 1, Table 2, read for factoring-based keys).
MIN_SECURE_KEY_BITS = 2048
_MIN_KEY_BITS = 256
#: Largest modulus supported: 8192 bits (192-bit security; key generation takes
#: seconds, and the fixed-base table stays within ``djn.TABLE_BUDGET_BYTES``).
MAX_KEY_BITS = 8192


@dataclass(frozen=True, kw_only=True)
class _PaillierScheme(Scheme):
    """Key parameters shared by the Paillier schemes.

    Parameters
    ----------
    key_bits : int, default=2048
        Size of the modulus ``n``, even, at most 8192. Below 2048 raises
        :class:`InsecureParameters` unless ``allow_insecure`` is true (256 at least,
        and room for the binding commitments' blinding).
    precision_bits : int
        Width of each quantized value, sign included.
    short_randomness : bool, default=False
        Use a randomness exponent of twice the security level (224 bits at 2048)
        instead of ``key_bits / 2``. About 4x faster encryption, under DJN's extra
        small-exponent assumption. Off by default.
    allow_insecure : bool, default=False
        Accept keys below 2048 bits. For fast tests and demos only.
    workers : int or None, default=None
        Processes used to encrypt long vectors (at least 512 ciphertexts); None
        means :func:`default_workers` (``$HE_FED_ENCRYPT_WORKERS``, else all cores).
    """

    key_bits: int = MIN_SECURE_KEY_BITS
    precision_bits: int = 64
    short_randomness: bool = False
    allow_insecure: bool = field(default=False, compare=False, metadata={"wire": False})
    workers: int | None = field(default=None, compare=False, metadata={"wire": False})

    def __post_init__(self) -> None:
        super().__post_init__()
        key_bits = check_int("key_bits", self.key_bits, low=_MIN_KEY_BITS, high=MAX_KEY_BITS)
        if key_bits % 2:
            raise ConfigurationError("key_bits must be even")
        if key_bits < MIN_SECURE_KEY_BITS and not self.allow_insecure:
            raise InsecureParameters(
                f"key_bits={key_bits} is below {MIN_SECURE_KEY_BITS} (about 112-bit security); "
                "pass allow_insecure=True (CLI: --allow-insecure) only for tests and demos"
            )
        if self.workers is not None:
            check_int("workers", self.workers, low=1, high=1024)
        check_int("precision_bits", self.precision_bits, low=2, high=128)

    @property
    def randomness_bits(self) -> int:
        """Bits of the DJN exponent: ``key_bits / 2``, or twice the security level."""
        if self.short_randomness:
            return 2 * djn.security_bits(self.key_bits)
        return self.key_bits // 2

    @cached_property
    def quantizer(self) -> Quantizer:
        """The shared fixed-point scale."""
        return Quantizer(self.clip, self.precision_bits)

    def _room(self) -> int:
        # n has exactly key_bits bits, so n >= 2**(key_bits - 1).
        return 2 ** (self.key_bits - 1) // 3

    def keygen(self) -> KeyPair:
        """Generate ``p ≡ q ≡ 3 (mod 4)``, ``n = pq`` of ``key_bits`` bits, and the DJN ``hs``."""
        p, q = djn.generate_primes(self.key_bits)
        public = PaillierPublicKey(self, p * q, djn.djn_generator(p * q))
        return KeyPair(public, PaillierSecretKey(public, p, q))

    @classmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> PaillierPublicKey:
        """Read ``n`` and ``hs``: sized by the (already checked) header, then checked.

        ``n`` must have exactly ``key_bits`` bits and pass
        :func:`djn.check_public_key`, so a forged modulus is refused here, before
        any client builds a fixed-base table for it.
        """
        if envelope.kind is not wire.Kind.PUBLIC_KEY:
            raise MalformedMessage(f"a {cls.name} scheme has no {envelope.kind.label}")
        r = wire.Reader(envelope.body, "paillier public key")
        n = int.from_bytes(r.blob(max_size=scheme.key_bits // 8 + 1), "big")
        hs = int.from_bytes(r.blob(max_size=scheme.key_bits // 4 + 1), "big")
        r.finish()
        if n.bit_length() != scheme.key_bits:
            raise MalformedMessage("paillier modulus does not match its declared size")
        djn.check_public_key(n, hs)
        key = PaillierPublicKey(scheme, n, hs)
        if key.fingerprint != envelope.fingerprint:
            raise MalformedMessage("paillier key fingerprint does not match its contents")
        return key

    @classmethod
    def _load_secret(cls, public: PaillierPublicKey, body: bytes) -> PaillierSecretKey:
        r = wire.Reader(body, "paillier secret key")
        limit = public.scheme.key_bits // 8 + 1
        p = int.from_bytes(r.blob(max_size=limit), "big")
        q = int.from_bytes(r.blob(max_size=limit), "big")
        r.finish()
        if p * q != int(public.n) or p == q or not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise MalformedMessage("paillier secret key does not factor its public modulus")
        return PaillierSecretKey(public, p, q)

    @property
    def blinding_bits(self) -> int:
        """Bits of each contribution's blinding exponent (:mod:`he_fed.crypto._binding`)."""
        return _binding.RHO_BITS

    def _check_blinding_room(self) -> None:
        """Refuse a key that cannot hold the sum of ``max_clients`` blinding exponents."""
        if self.blinding_bits + self.max_clients.bit_length() > self.key_bits - 1:
            raise EncodingOverflowError(
                f"a {self.key_bits}-bit key cannot hold the sum of {self.max_clients} "
                "blinding exponents of the binding commitments; use a larger key"
            )

    @abstractmethod
    def data_ciphertexts(self, size: int) -> int:
        """Ciphertexts that hold a contribution's values and weight."""

    def blinding_place(self, size: int) -> tuple[int, int]:
        """Which plaintext carries the blinding exponent, and from which bit.

        By default its own plaintext, after the data; the sum of ``max_clients``
        blinding exponents always fits below ``n``.
        """
        return self.data_ciphertexts(size), 0

    def ciphertexts_for(self, size: int) -> int:
        """Ciphertexts of a contribution of ``size`` values, the blinding included."""
        index, _ = self.blinding_place(size)
        return max(self.data_ciphertexts(size), index + 1)

    def attach(self, plaintexts: list[int], size: int, rho: int) -> list[int]:
        """The plaintexts with the blinding exponent ``rho`` put in its place."""
        index, shift = self.blinding_place(size)
        out = list(plaintexts)
        if index == len(out):
            out.append(rho)
        else:
            out[index] += rho << shift
        return out

    def detach(self, plaintexts: list[int], size: int) -> tuple[list[int], int]:
        """Split decrypted plaintexts into the data and the (summed) blinding exponent."""
        index, shift = self.blinding_place(size)
        data = list(plaintexts[: self.data_ciphertexts(size)])
        if index == len(data):
            return data, plaintexts[index]
        rho = data[index] >> shift
        data[index] &= (1 << shift) - 1
        return data, rho

    @abstractmethod
    def exact(self, plaintexts: list[int], size: int, n: int) -> list[int]:
        """The integer of every value slot, the weight's included, of data plaintexts.

        The binding commitment covers these; for a sum they are the slot sums.
        """

    @abstractmethod
    def encode(self, values: np.ndarray, weight: int, n: int) -> list[int]:
        """Plaintext integers (each in ``[0, n)``) of a checked contribution."""

    @abstractmethod
    def decode(self, plaintexts: list[int], size: int, count: int, n: int) -> WeightedSum:
        """The weighted sum a list of decrypted plaintexts holds."""

    def value_layout(self, size: int) -> _value_range.Layout:
        """Where a contribution's values sit in its binding commitment.

        Each value's ``q + levels`` lies in ``[0, 2 · levels]`` (:mod:`_value_range`).
        """
        return _layout(self._weight_first, size, self.quantizer.levels)

    def value_digits(self, integers: list[int], weight: int) -> list[int]:
        """Each value's ``q + levels`` from a contribution's slot integers (:meth:`exact`)."""
        if self._weight_first:
            return [int(v) // weight for v in integers[1:]]
        return [int(v) // weight + self.quantizer.levels for v in integers[:-1]]

    @property
    def _weight_first(self) -> bool:
        """Whether the weight's slot comes first and values are offset by ``levels``."""
        return False

    def _check_weight(self, weight: int, count: int) -> None:
        if not count <= weight <= count * self.max_weight:
            raise EncodingOverflowError(
                f"the decrypted total weight is impossible for {count} contribution(s): "
                "the sum overflowed or holds contributions the plan did not allow"
            )


@dataclass(frozen=True, kw_only=True)
class Paillier(_PaillierScheme):
    """Per-value Paillier encryption with one shared fixed-point scale.

    Parameters
    ----------
    key_bits : int, default=2048
        Size of the modulus (see ``allow_insecure``).
    precision_bits : int, default=64
        Width of each quantized value, sign included. The quantization step is
        ``clip / (2**(precision_bits - 1) - 1)``.
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).
    short_randomness, allow_insecure, workers
        See the Paillier key parameters: short DJN exponents (opt-in), keys under
        2048 bits (opt-in), and processes for long vectors.
    """

    name: ClassVar[str] = "paillier"

    def __post_init__(self) -> None:
        super().__post_init__()
        need = self.max_clients * self.max_weight * self.quantizer.levels
        if need > self._room():
            raise EncodingOverflowError(
                f"a sum of {self.max_clients} contributions of weight up to "
                f"{self.max_weight} needs {need.bit_length()} bits, but a {self.key_bits}-bit "
                f"key holds {self._room().bit_length()}; lower precision_bits, max_clients "
                "or max_weight, or use a larger key"
            )
        self._check_blinding_room()

    def data_ciphertexts(self, size: int) -> int:
        """One ciphertext per value, plus one for the weight (the blinding adds one more)."""
        return size + 1

    def exact(self, plaintexts: list[int], size: int, n: int) -> list[int]:
        """Signed integers: a plaintext above ``n / 2`` stands for a negative value."""
        half = n // 2
        return [m - n if m > half else m for m in plaintexts]

    def encode(self, values: np.ndarray, weight: int, n: int) -> list[int]:
        """Signed fixed-point integers times the weight, modulo ``n``; then the weight."""
        plaintexts = [(weight * int(q)) % n for q in self.quantizer.quantize(values)]
        plaintexts.append(weight)
        return plaintexts

    def decode(self, plaintexts: list[int], size: int, count: int, n: int) -> WeightedSum:
        """Undo :meth:`encode` on a sum, refusing anything honest clients cannot sum to.

        A sum of total weight ``W`` holds at most ``W · levels`` per value (each
        contribution within the clip bound), so anything beyond is refused exactly,
        in integers: the released mean always lies within ``[-clip, clip]``.
        """
        weight = plaintexts[-1]
        self._check_weight(weight, count)
        bound = weight * self.quantizer.levels
        signed = []
        for m in plaintexts[:-1]:
            if m > bound:
                m -= n
                if -m > bound:
                    raise EncodingOverflowError(
                        "a decrypted value lies outside the plan's range: the sum "
                        "overflowed or holds contributions the plan did not allow"
                    )
            signed.append(m)
        units = np.array(signed, dtype=object)
        step = self.quantizer.step
        return WeightedSum(self.quantizer.dequantize(units), weight, count, units, step)


@dataclass(frozen=True, kw_only=True)
class PackedPaillier(_PaillierScheme):
    """Packed, quantized Paillier: dozens of values per ciphertext, exact sums.

    Each value is clipped (by the caller) to ``[-clip, clip]``, quantized to a
    signed ``precision_bits`` integer, shifted by a zero point to be non-negative,
    and multiplied by the contribution's weight. A slot has
    ``bit_length(2 · levels · max_clients · max_weight)`` bits, so it never carries
    into its neighbour for any sum the plan allows; as many slots as fit below
    ``n`` share one ciphertext. With the defaults (16 bits, 1024 clients, weight
    1) a 2048-bit key holds 78 values per ciphertext.

    Parameters
    ----------
    key_bits : int, default=2048
        Size of the modulus (see ``allow_insecure``).
    precision_bits : int, default=16
        Width of each quantized value, sign included.
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).
    short_randomness, allow_insecure, workers
        See :class:`Paillier`.

    Examples
    --------
    >>> import numpy as np
    >>> keys = PackedPaillier(key_bits=1024, allow_insecure=True, clip=1.0).keygen()
    >>> keys.public.scheme.layout.slots
    39
    >>> total = sum(keys.public.encrypt(np.array([1.0, -1.0, 0.0, 0.3])) for _ in range(3))
    >>> keys.secret.decrypt(total).round(4)  # 0, ±clip exact; others within step / 2
    array([ 3. , -3. ,  0. ,  0.9])
    """

    precision_bits: int = 16

    name: ClassVar[str] = "paillier-packed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout.slot_bits > self.key_bits - 1:
            raise EncodingOverflowError(
                f"one slot needs {self.layout.slot_bits} bits (precision, max_clients and "
                f"max_weight together) but a {self.key_bits}-bit key holds "
                f"{self.key_bits - 1}; lower precision_bits, max_clients or max_weight"
            )
        self._check_blinding_room()

    @property
    def _weight_first(self) -> bool:
        return True

    @cached_property
    def layout(self) -> SlotLayout:
        """Slot width and slots per ciphertext (packed below ``2**(key_bits - 1) <= n``)."""
        top = 2 * self.quantizer.levels * self.max_clients * self.max_weight
        slot_bits = top.bit_length()
        return SlotLayout(slot_bits, max(1, (self.key_bits - 1) // slot_bits))

    def data_ciphertexts(self, size: int) -> int:
        """Ciphertexts for ``size`` values and the weight slot."""
        return self.layout.chunks(size + 1)

    def blinding_place(self, size: int) -> tuple[int, int]:
        """Above the last chunk's slots when the sum of blindings fits there, else its own."""
        chunks, layout = self.layout.chunks(size + 1), self.layout
        shift = (size + 1 - (chunks - 1) * layout.slots) * layout.slot_bits
        if shift + self.blinding_bits + self.max_clients.bit_length() <= self.key_bits - 1:
            return chunks - 1, shift
        return chunks, 0

    def exact(self, plaintexts: list[int], size: int, n: int) -> list[int]:
        """Each slot's integer: the weight, then the offset values times the weight."""
        return [int(v) for v in self.layout.unpack(plaintexts, size + 1)]

    def encode(self, values: np.ndarray, weight: int, n: int) -> list[int]:
        """Offset-quantized values times the weight, packed after the weight slot."""
        levels = self.quantizer.levels
        q = self.quantizer.quantize(values)
        if self.layout.slot_bits <= 62 and q.dtype != object:
            shifted = (q + levels) * weight
            slots = np.concatenate([np.array([weight], dtype=np.int64), shifted])
        else:
            slots = np.array([weight] + [(int(v) + levels) * weight for v in q], dtype=object)
        return self.layout.pack(slots)

    def decode(self, plaintexts: list[int], size: int, count: int, n: int) -> WeightedSum:
        """Unpack a sum, check every slot against the plan, remove the zero point."""
        layout = self.layout
        for i, m in enumerate(plaintexts):
            used = min(layout.slots, size + 1 - i * layout.slots)
            if m >> (used * layout.slot_bits):
                raise EncodingOverflowError(
                    "a decrypted plaintext exceeds its slots: the sum overflowed or holds "
                    "contributions the plan did not allow"
                )
        slots = layout.unpack(plaintexts, size + 1)
        weight = int(slots[0])
        self._check_weight(weight, count)
        levels = self.quantizer.levels
        q_sum = slots[1:] - levels * weight
        if np.any(np.abs(q_sum) > levels * weight):
            raise EncodingOverflowError("a decrypted slot lies outside the plan's range")
        step = self.quantizer.step
        return WeightedSum(self.quantizer.dequantize(q_sum), weight, count, q_sum, step)


@exact_cache(maxsize=64)
def _layout(weight_first: bool, size: int, levels: int) -> _value_range.Layout:
    """Packed slots hold the weight, then ``w · (q + levels)``; per-value plaintexts hold
    ``w · q`` for each value, then the weight."""
    generators = _binding._generators(size + 1)
    spans = (2 * levels,) * size
    if weight_first:
        return _value_range.Layout(generators[1:], spans, generators[0])
    bases = generators[:size]
    offset = gmpy2.powmod(_value_range._signed_product([(g, 1) for g in bases]), levels, _binding.P)
    anchor = generators[size] * gmpy2.invert(offset, _binding.P) % _binding.P
    return _value_range.Layout(bases, spans, anchor)
