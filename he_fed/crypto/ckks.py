"""CKKS on TenSEAL, for aggregation only.

Secure aggregation only adds ciphertexts, so the contexts here carry no Galois and
no relinearization keys, and the aggregator receives the encryption parameters
alone: TenSEAL can load and add CKKS ciphertexts with nothing more, and such a
context holds no key at all.

A contribution ``weight * x`` is laid out with ``weight`` in one extra slot and
split into chunks of ``poly_modulus_degree / 2`` slots, one ciphertext each.

CKKS is approximate: a decrypted sum carries a small error. The encoding scale is
chosen from the plan so that the largest sum the plan allows still fits the data
modulus (CKKS would otherwise wrap around silently); the plan is refused when it
cannot fit with a useful scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import tenseal as ts

from he_fed.crypto import wire
from he_fed.crypto.base import (
    AggregationKey,
    EncryptedVector,
    KeyPair,
    PublicKey,
    Scheme,
    SecretKey,
    WeightedSum,
    key_fingerprint,
)
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    MalformedMessage,
    SecretMaterialError,
)

__all__ = ["CKKS", "PRESETS"]

_DOMAIN = "he-fed/ckks/v1"


@dataclass(frozen=True)
class _Preset:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    summary: str


#: Named parameter sets. All meet the 128-bit bound of the HE standard (SEAL
#: enforces it when the context is built).
PRESETS: dict[str, _Preset] = {
    "aggregation-fast": _Preset(
        4096, (60, 49), 40, "N=4096, one 60-bit data prime; the default for aggregation"
    ),
    "compat-nvflare": _Preset(
        8192, (60, 40, 40), 40, "NVIDIA FLARE's parameters, for comparison"
    ),
}

#: Bits kept free above the largest encoded sum, for noise and rounding.
_GUARD_BITS = 3
#: A scale below this leaves too little precision to be useful.
_MIN_SCALE_BITS = 20


def _seal_params_only(ctx: ts.Context) -> bytes:
    return ctx.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


def _seal_public(ctx: ts.Context) -> bytes:
    return ctx.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


@dataclass(frozen=True, kw_only=True)
class CKKS(Scheme):
    """CKKS approximate encryption (TenSEAL), with addition-only contexts.

    Parameters
    ----------
    preset : str, default="aggregation-fast"
        Named parameters (see :data:`PRESETS`). Explicit ``poly_modulus_degree``,
        ``coeff_mod_bit_sizes`` and ``scale_bits`` override it.
    poly_modulus_degree : int, optional
        Ring dimension ``N``; a ciphertext holds ``N / 2`` values.
    coeff_mod_bit_sizes : tuple of int, optional
        Bit sizes of the coefficient-modulus primes. The last is the special prime;
        the others form the data modulus that sums must fit in.
    scale_bits : int, optional
        Largest encoding scale, ``2**scale_bits``. The plan may choose a smaller one
        (see :attr:`encode_scale_bits`).
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).
    """

    preset: str = field(default="aggregation-fast", compare=False, metadata={"wire": False})
    poly_modulus_degree: int = 0
    coeff_mod_bit_sizes: tuple[int, ...] = ()
    scale_bits: int = 0

    name: ClassVar[str] = "ckks"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigurationError(
                f"unknown CKKS preset {self.preset!r}; choose one of {sorted(PRESETS)}"
            )
        preset = PRESETS[self.preset]
        for name in ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits"):
            if not getattr(self, name):
                object.__setattr__(self, name, getattr(preset, name))
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        n = self.poly_modulus_degree
        if not isinstance(n, int) or n < 1024 or n & (n - 1):
            raise ConfigurationError("poly_modulus_degree must be a power of two >= 1024")
        if len(self.coeff_mod_bit_sizes) < 2 or not all(
            isinstance(b, int) and 20 <= b <= 60 for b in self.coeff_mod_bit_sizes
        ):
            raise ConfigurationError(
                "coeff_mod_bit_sizes needs at least two primes of 20 to 60 bits "
                "(the last is the special prime)"
            )
        if not isinstance(self.scale_bits, int) or not 20 <= self.scale_bits <= 60:
            raise ConfigurationError("scale_bits must be between 20 and 60")
        if self.encode_scale_bits < _MIN_SCALE_BITS:
            raise EncodingOverflowError(
                f"sums up to {self._encoded_bound:.3g} need {math.ceil(math.log2(self._encoded_bound))}"
                f" of the {self.data_bits} data-modulus bits, leaving a scale of "
                f"2^{self.encode_scale_bits}; lower clip, max_clients or max_weight, or add "
                "a data prime to coeff_mod_bit_sizes"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext, ``poly_modulus_degree / 2``."""
        return self.poly_modulus_degree // 2

    @property
    def data_bits(self) -> int:
        """Bits of the data modulus (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def _encoded_bound(self) -> float:
        # The weight slot holds up to max_clients * max_weight, the values up to bound.
        return max(self.clip, 1.0) * self.max_clients * self.max_weight

    @cached_property
    def encode_scale_bits(self) -> int:
        """Scale actually used: the largest that keeps every allowed sum in range."""
        room = self.data_bits - 1 - _GUARD_BITS - math.ceil(math.log2(self._encoded_bound))
        return min(self.scale_bits, room)

    def _new_context(self) -> ts.Context:
        try:
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=self.poly_modulus_degree,
                coeff_mod_bit_sizes=list(self.coeff_mod_bit_sizes),
            )
        except ValueError as exc:
            raise InsecureParameters(
                f"SEAL refused N={self.poly_modulus_degree} with primes "
                f"{list(self.coeff_mod_bit_sizes)}: {exc} (the 128-bit bound allows at most "
                "109 modulus bits at N=4096, 218 at N=8192, 438 at N=16384)"
            ) from None
        ctx.global_scale = 2.0**self.scale_bits
        return ctx

    def keygen(self) -> KeyPair:
        """Generate a secret context; the public side gets keys for encryption only."""
        secret_ctx = self._new_context()
        public = CKKSPublicKey(self, _seal_public(secret_ctx))
        return KeyPair(public, CKKSSecretKey(public, secret_ctx))

    @classmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> AggregationKey:
        r = wire.Reader(envelope.body, "ckks key")
        blob = r.blob()
        r.finish()
        if envelope.kind is wire.Kind.PUBLIC_KEY:
            key: AggregationKey = CKKSPublicKey(scheme, blob)
            if key.fingerprint != envelope.fingerprint:
                raise MalformedMessage("ckks key fingerprint does not match its context")
            return key
        if len(envelope.fingerprint) != 32:
            raise MalformedMessage("ckks aggregation key lacks a fingerprint")
        return CKKSAggregationKey(scheme, blob, envelope.fingerprint)

    @classmethod
    def _load_secret(cls, public: Any, body: bytes) -> CKKSSecretKey:
        try:
            ctx = ts.context_from(body)
        except Exception:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
            raise MalformedMessage("ckks secret context bytes do not parse") from None
        if not ctx.is_private() or _seal_public(ctx) != public._blob:
            raise MalformedMessage("ckks secret context does not match its public key")
        return CKKSSecretKey(public, ctx)


def _load_context(scheme: CKKS, blob: bytes) -> ts.Context:
    """Load a serialized context and check it matches ``scheme`` and holds no secret."""
    if not blob:
        raise MalformedMessage("empty ckks context")
    try:
        ctx = ts.context_from(blob)
    except Exception:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
        raise MalformedMessage("ckks context bytes do not parse") from None
    if ctx.is_private():
        raise SecretMaterialError("these ckks bytes hold a secret key; public material expected")
    reference = _seal_params_only(scheme._new_context())
    if _seal_params_only(ctx) != reference:
        raise MalformedMessage("ckks context parameters differ from its declared parameters")
    return ctx


class CKKSAggregationKey(AggregationKey):
    """Encryption parameters only: enough to load and add ciphertexts, no key at all."""

    def __init__(self, scheme: CKKS, params_blob: bytes, fingerprint: bytes) -> None:
        super().__init__(scheme, fingerprint)
        self._blob = params_blob
        self.context = _load_context(scheme, params_blob)
        if self.context.has_public_key():
            raise MalformedMessage("a ckks aggregation key must hold parameters only")

    @property
    def scheme(self) -> CKKS:
        """Scheme parameters and encoding plan."""
        return self._scheme  # type: ignore[return-value]

    def _key_body(self) -> bytes:
        w = wire.Writer()
        w.blob(self._blob)
        return w.getvalue()

    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> CKKSVector:
        scheme = self.scheme
        chunks = math.ceil((size + 1) / scheme.slots)
        if chunks > reader.remaining // 8:
            raise MalformedMessage(f"truncated ckks vector of {size} values")
        scale = 2.0**scheme.encode_scale_bits
        parts = []
        for i in range(chunks):
            blob = reader.blob()
            expected = min(scheme.slots, size + 1 - i * scheme.slots)
            if not blob:
                raise MalformedMessage(f"ckks chunk {i} is empty")
            try:
                part = ts.ckks_vector_from(self.context, blob)
                (ct,) = part.ciphertext()
                ok = (
                    part.size() == expected
                    and ct.size() == 2
                    and not ct.is_transparent()
                    and ct.scale == scale
                )
            except MalformedMessage:
                raise
            except Exception:
                raise MalformedMessage(f"ckks chunk {i} does not parse") from None
            if not ok:
                raise MalformedMessage(f"ckks chunk {i} has the wrong size, form or scale")
            parts.append(part)
        return CKKSVector(self, parts, size, count)


class CKKSPublicKey(CKKSAggregationKey, PublicKey):
    """CKKS public context: parameters and the encryption key, nothing else."""

    kind = wire.Kind.PUBLIC_KEY

    def __init__(self, scheme: CKKS, public_blob: bytes) -> None:
        AggregationKey.__init__(self, scheme, key_fingerprint(_DOMAIN, public_blob))
        self._blob = public_blob
        self.context = _load_context(scheme, public_blob)
        if not self.context.has_public_key():
            raise MalformedMessage("a ckks public key must hold the encryption key")

    def aggregation_key(self) -> CKKSAggregationKey:
        """Parameters only (about 0.1 KiB): what the aggregator needs to add."""
        return CKKSAggregationKey(self.scheme, _seal_params_only(self.context), self.fingerprint)

    def _encrypt(self, values: np.ndarray, weight: int) -> CKKSVector:
        scheme = self.scheme
        flat = np.append(weight * values, float(weight))
        scale = 2.0**scheme.encode_scale_bits
        parts = [
            ts.ckks_vector(self.context, flat[i : i + scheme.slots].tolist(), scale)
            for i in range(0, flat.size, scheme.slots)
        ]
        return CKKSVector(self, parts, values.size, 1)


class CKKSSecretKey(SecretKey):
    """The private context. It never leaves the key holder unless asked."""

    def __init__(self, public: CKKSPublicKey, secret_ctx: ts.Context) -> None:
        super().__init__(public)
        self._ctx = secret_ctx
        self._sk = secret_ctx.secret_key()

    def _secret_body(self) -> bytes:
        return self._ctx.serialize(
            save_public_key=True, save_secret_key=True, save_galois_keys=False,
            save_relin_keys=False,
        )

    def _decrypt(self, vector: CKKSVector) -> WeightedSum:
        scheme: CKKS = vector.key.scheme  # type: ignore[assignment]
        flat = np.concatenate([np.asarray(p.decrypt(self._sk)) for p in vector.parts])
        values, raw_weight = flat[:-1], flat[-1]
        weight = int(round(raw_weight))
        if abs(raw_weight - weight) > 0.25 or not (
            vector.count <= weight <= vector.count * scheme.max_weight
        ):
            raise EncodingOverflowError(
                f"decrypted total weight {raw_weight:.6g} is not a plausible integer: "
                "the sum overflowed or is corrupted"
            )
        limit = vector.count * scheme.max_weight * scheme.clip
        if np.any(np.abs(values) > limit * (1 + 1e-6) + 1e-6):
            raise EncodingOverflowError("a decrypted value lies outside the plan's range")
        return WeightedSum(values, weight, vector.count)


class CKKSVector(EncryptedVector):
    """One CKKS ciphertext per ``N / 2`` values (the weight rides in the last slot)."""

    def __init__(self, key: AggregationKey, parts: list[Any], size: int, count: int) -> None:
        super().__init__(key, size, count)
        self.parts = parts

    def _add(self, other: CKKSVector, count: int) -> CKKSVector:
        return CKKSVector(
            self.key, [a + b for a, b in zip(self.parts, other.parts)], self.size, count
        )

    def _payload(self) -> bytes:
        w = wire.Writer()
        for part in self.parts:
            w.blob(part.serialize())
        return w.getvalue()
