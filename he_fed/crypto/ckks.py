"""CKKS on TenSEAL, for aggregation only.

Secure aggregation only adds ciphertexts, so nothing here pays for multiplication:

* the aggregation presets use the shortest modulus chain SEAL allows (one data
  prime and a special prime), so ciphertexts are small and encryption and
  decryption are quick;
* clients get a public context with the encryption key and no Galois or
  relinearization keys;
* the aggregator gets the encryption parameters alone: TenSEAL loads and adds
  CKKS ciphertexts with nothing more, and such a context holds no key at all.

Presets, all at the 128-bit level of the HE standard (checked when a scheme is
built; SEAL enforces it too). Bytes per value and the largest error of a 100-client
sum of values in [-1, 1] (plan ``clip=1, max_clients=100``) are from one run of
``benchmarks/ckks_speed.py`` (``benchmarks/results/ckks_speed.json``); the RMS
error is :attr:`CKKS.error_budget`'s prediction, which that run matches:

====================  =====  ============  ======  =============  ========  =========
preset                N      primes        values  bytes / value  RMS       max error
====================  =====  ============  ======  =============  ========  =========
aggregation-fast      4096   [60, 49]      4096    16.0           6.2e-9    5.8e-8
aggregation-compact   2048   [40, 14]      2048    12.0           1.6e-6    1.0e-5
compat-nvflare        8192   [60, 40, 40]  8192    28.7           1.2e-8    7.9e-8
====================  =====  ============  ======  =============  ========  =========

(``values``: per ciphertext.)

``aggregation-fast`` is the default. ``aggregation-compact`` spends its 54-bit
budget on one 40-bit data prime and the smallest special prime SEAL can find
(12289): the special prime only divides the encryption noise, which needs no more
for additions. Its ciphertexts are smaller (fewer bytes per value, and half as many
values each) and less precise. ``compat-nvflare`` is NVIDIA FLARE's parameter set,
for comparison.

Encoding. A contribution ``weight * x`` is laid out with ``weight`` as one extra
value and split into chunks of ``N`` values, one ciphertext each: consecutive
values ``(a, b)`` fill one complex slot ``a + bi`` (TenSEAL's vectors take reals
only, one per slot, so encoding and encryption go through ``tenseal.sealapi``,
and the SEAL ciphertext is wrapped in TenSEAL's format, which loads and adds it
unchanged). All clients
use one scale, ``2**encode_scale_bits``: the largest (up to ``scale_bits``) that
keeps every sum the plan allows below a quarter of the data modulus, so a sum
never wraps around. A plan that cannot fit, or that would leave fewer than 16 bits
of precision at the clip bound, is refused when it is built, with the knob to turn.

Error. :attr:`CKKS.error_budget` predicts the error of a decrypted sum and bounds
it (see :mod:`he_fed.crypto.ckks_budget`, which also explains the Li-Micciancio
caveat: decrypted CKKS results leak information about the secret key when shared
beyond the key holder). ``flood_bits`` opts in to noise flooding at decryption.

Bytes. ``to_bytes`` writes one envelope; ``write_to`` streams one frame per
ciphertext (:mod:`he_fed.crypto.stream`), and ``PublicKey.encrypt_to`` encrypts
straight into such a stream, one ciphertext in memory at a time (a client's peak
memory for a million values drops from 17 to 8 MiB above its start, measured in
``benchmarks/results/ckks_large.json``). Loaders accept a chunk only if it has
the expected length, two polynomials, a non-transparent form, the first data
level and the plan's scale; another level or scale raises ``KeyMismatchError``.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from he_fed.crypto import seal_format, seal_io, wire
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
from he_fed.crypto.ckks_budget import ErrorBudget
from he_fed.crypto.stream import FrameReader
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


#: Named parameter sets (see the module docstring for sizes and errors).
PRESETS: dict[str, _Preset] = {
    "aggregation-fast": _Preset(
        4096, (60, 49), 40, "N=4096, one 60-bit data prime; the default for aggregation"
    ),
    "aggregation-compact": _Preset(
        2048, (40, 14), 40, "N=2048, one 40-bit data prime; smaller ciphertexts, ~1e-5 error"
    ),
    "compat-nvflare": _Preset(8192, (60, 40, 40), 40, "NVIDIA FLARE's parameters, for comparison"),
}

#: One bit of headroom above the largest sum the plan allows. The noise and the
#: floating-point error are many orders of magnitude smaller.
_GUARD_BITS = 1
#: A plan must keep this many bits between the clip bound and one contribution's
#: root-mean-square error.
_MIN_PRECISION_BITS = 16


@functools.lru_cache(maxsize=64)
def _primes(poly_modulus_degree: int, bit_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The primes SEAL picks for these bit sizes (TenSEAL calls the same function)."""
    try:
        moduli = sealapi.CoeffModulus.Create(poly_modulus_degree, list(bit_sizes))
    except (RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"SEAL cannot find primes of {list(bit_sizes)} bits for N={poly_modulus_degree}: "
            f"{exc} (each prime must be 1 mod 2N; use larger bit sizes)"
        ) from None
    return tuple(int(m.value()) for m in moduli)


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
        Ring dimension ``N``, a power of two from 1024 to 32768; a ciphertext holds
        ``N`` values, two per complex slot.
    coeff_mod_bit_sizes : tuple of int, optional
        Bit sizes of the coefficient-modulus primes. The last is the special prime
        (14 to 60 bits); the others (20 to 60 bits) form the data modulus that sums
        must fit in. Their total must meet the 128-bit bound for ``N`` (54 bits at
        N=2048, 109 at 4096, 218 at 8192), or :class:`InsecureParameters` is raised.
    scale_bits : int, optional
        Largest encoding scale, ``2**scale_bits`` (20 to 60). The plan may choose a
        smaller one (see :attr:`encode_scale_bits`).
    flood_bits : int, default=0
        Opt-in noise flooding at decryption: the key holder adds Gaussian noise of
        ``2**flood_bits`` times the expected norm of a ciphertext's decryption
        error to every released value (see :mod:`he_fed.crypto.ckks_budget`). It
        changes no ciphertext, so it is not written in headers. 0 turns it off.
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).

    Raises
    ------
    InsecureParameters
        If the modulus is too large for 128-bit security at this ``N``.
    EncodingOverflowError
        If the plan's sums cannot fit the data modulus with enough precision.
    ConfigurationError
        For any other invalid parameter.
    """

    preset: str = field(default="aggregation-fast", compare=False, metadata={"wire": False})
    poly_modulus_degree: int = 0
    coeff_mod_bit_sizes: tuple[int, ...] = ()
    scale_bits: int = 0
    flood_bits: int = field(default=0, compare=False, metadata={"wire": False})

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
        self._check_parameters()
        self._check_plan()

    def _check_parameters(self) -> None:
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if isinstance(n, bool) or not isinstance(n, int) or not 1024 <= n <= 32768 or n & (n - 1):
            raise ConfigurationError(
                "poly_modulus_degree must be a power of two from 1024 to 32768"
            )
        if (
            len(bits) < 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bits)
            or not all(20 <= b <= 60 for b in bits[:-1])
            or not 14 <= bits[-1] <= 60
        ):
            raise ConfigurationError(
                "coeff_mod_bit_sizes needs data primes of 20 to 60 bits and a last, special "
                f"prime of 14 to 60 bits, got {list(bits)}"
            )
        allowed = sealapi.CoeffModulus.MaxBitCount(n, sealapi.SEC_LEVEL_TYPE.TC128)
        if sum(bits) > allowed:
            raise InsecureParameters(
                f"primes of {list(bits)} bits ({sum(bits)} in all) exceed the {allowed} bits "
                f"the HE standard allows at N={n} for 128-bit security; SEAL refuses them "
                "(use fewer or smaller primes, or a larger poly_modulus_degree)"
            )
        for name, low in (("scale_bits", 20), ("flood_bits", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 60:
                raise ConfigurationError(
                    f"{name} must be an integer from {low} to 60, got {value!r}"
                )
        _primes(n, bits)

    def _check_plan(self) -> None:
        if self.encode_scale_bits < 1:
            raise EncodingOverflowError(
                f"sums up to {self._encoded_bound:.3g} do not fit the {self.data_bits}-bit data "
                "modulus; lower clip, max_clients or max_weight, or add a data prime to "
                "coeff_mod_bit_sizes"
            )
        budget = self.error_budget
        precision = math.log2(self.clip / budget.rms(1))
        if precision < _MIN_PRECISION_BITS:
            raise EncodingOverflowError(
                f"room for sums up to {self._encoded_bound:.3g} leaves a scale of "
                f"2^{self.encode_scale_bits} and {precision:.1f} bits of precision at the clip "
                f"bound (at least {_MIN_PRECISION_BITS} needed); lower max_clients or "
                "max_weight, or use a larger data modulus (the aggregation-fast preset)"
            )

    @property
    def slots(self) -> int:
        """CKKS slots per ciphertext, ``poly_modulus_degree / 2`` (complex numbers)."""
        return self.poly_modulus_degree // 2

    @property
    def values_per_ciphertext(self) -> int:
        """Real values per ciphertext, ``poly_modulus_degree``: two per complex slot."""
        return self.poly_modulus_degree

    @property
    def data_bits(self) -> int:
        """Bits of the data modulus (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def data_modulus(self) -> int:
        """The data modulus ``q``: the product of SEAL's data primes."""
        return math.prod(_primes(self.poly_modulus_degree, self.coeff_mod_bit_sizes)[:-1])

    @property
    def _encoded_bound(self) -> float:
        # The weight slot holds up to max_clients * max_weight, the values up to bound.
        return max(self.clip, 1.0) * self.max_clients * self.max_weight

    @cached_property
    def encode_scale_bits(self) -> int:
        """Scale actually used: the largest that keeps every allowed sum in range.

        Every value the plan allows, times ``2**encode_scale_bits``, stays below
        ``q / 2**(1 + _GUARD_BITS)``, so decoding (which centres modulo ``q``)
        never wraps around.
        """
        room = self.data_modulus >> (1 + _GUARD_BITS)
        bits = min(self.scale_bits, math.floor(math.log2(room / self._encoded_bound)))
        while bits > 0 and 2.0**bits * self._encoded_bound > room:
            bits -= 1  # guard against rounding in the logarithm
        return bits

    @cached_property
    def error_budget(self) -> ErrorBudget:
        """The error of this plan's decrypted sums: expected size and a bound."""
        primes = _primes(self.poly_modulus_degree, self.coeff_mod_bit_sizes)
        return ErrorBudget(
            poly_modulus_degree=self.poly_modulus_degree,
            scale_bits=self.encode_scale_bits,
            special_prime=primes[-1],
            largest_sum=(self.data_modulus // 2) / 2.0**self.encode_scale_bits,
            plan_bound=self._encoded_bound,
            contribution_bound=max(self.clip, 1.0) * self.max_weight,
            flood_bits=self.flood_bits,
        )

    def _new_context(self) -> ts.Context:
        try:
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=self.poly_modulus_degree,
                coeff_mod_bit_sizes=list(self.coeff_mod_bit_sizes),
            )
        except (ValueError, RuntimeError) as exc:  # __post_init__ checks what SEAL does
            raise ConfigurationError(
                f"SEAL refused N={self.poly_modulus_degree} with primes "
                f"{list(self.coeff_mod_bit_sizes)}: {exc}"
            ) from None
        ctx.global_scale = 2.0**self.scale_bits
        return ctx

    def keygen(self) -> KeyPair:
        """Generate a secret context; the public side gets keys for encryption only."""
        secret_ctx = self._new_context()
        public = CKKSPublicKey(self, _seal_public(secret_ctx))
        return KeyPair(public, CKKSSecretKey(public, secret_ctx))

    @classmethod
    def _load_secret(cls, public: CKKSPublicKey, body: bytes) -> CKKSSecretKey:
        if not body:
            raise MalformedMessage("empty ckks secret context")
        return CKKSSecretKey(public, _load_secret_context(public, body))

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


def _load_secret_context(public: CKKSPublicKey, blob: bytes) -> ts.Context:
    try:
        ctx = ts.context_from(blob)
    except Exception:
        raise MalformedMessage("ckks secret context bytes do not parse") from None
    if not ctx.is_private() or _seal_public(ctx) != public._blob:
        raise MalformedMessage("ckks secret context does not match its public key")
    return ctx


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
    if not _has_parameters(ctx, scheme):
        raise MalformedMessage("ckks context parameters differ from its declared parameters")
    return ctx


def _has_parameters(ctx: ts.Context, scheme: CKKS) -> bool:
    """Whether a loaded context has ``scheme``'s SEAL parameters and TenSEAL settings.

    Compared field by field, never against a freshly generated context: key
    generation for a header that claims N=32768 would cost a second and 500 MiB.
    """
    parms = ctx.seal_context().data.key_context_data().parms()
    try:
        scale = ctx.global_scale
    except ValueError:  # TenSEAL: "no global scale"
        return False
    return (
        parms.scheme().name == "CKKS"  # TenSEAL's enum, not sealapi's
        and parms.poly_modulus_degree() == scheme.poly_modulus_degree
        and tuple(m.value() for m in parms.coeff_modulus())
        == _primes(scheme.poly_modulus_degree, scheme.coeff_mod_bit_sizes)
        and scale == 2.0**scheme.scale_bits
        and ctx.auto_relin
        and ctx.auto_rescale
        and ctx.auto_mod_switch
    )


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

    @cached_property
    def _layout(self) -> tuple[list[int], tuple[int, int, int, int]]:
        """The data primes and the SEAL parameter id of ciphertexts under this context."""
        scheme = self.scheme
        primes = _primes(scheme.poly_modulus_degree, scheme.coeff_mod_bit_sizes)
        parms_id = tuple(self.context.seal_context().data.first_parms_id())
        return list(primes[:-1]), parms_id  # type: ignore[return-value]

    def _parse(self, blob: bytes, slots: int) -> seal_format.SealCiphertext:
        """Validate one serialized chunk ourselves (see :mod:`seal_format`)."""
        primes, parms_id = self._layout
        parsed = seal_format.parse_ckks_vector(
            blob,
            poly_modulus_degree=self.scheme.poly_modulus_degree,
            primes=primes,
            parms_id=parms_id,
            scale=2.0**self.scheme.encode_scale_bits,
            max_values=self.scheme.slots,
        )
        if parsed.values != slots:
            raise MalformedMessage(f"ckks chunk fills {parsed.values} slots, expected {slots}")
        return parsed

    def _sum_commitments(self, commitments: list[bytes], size: int) -> bytes:
        primes, _ = self._layout
        n = self.scheme.poly_modulus_degree
        shape = (math.ceil((size + 1) / self.scheme.values_per_ciphertext), len(primes), n)
        moduli = np.array(primes, dtype=np.uint64).reshape(1, -1, 1)
        total = np.zeros(shape, dtype=np.uint64)
        for blob in commitments:
            if len(blob) != 8 * math.prod(shape):
                raise MalformedMessage("ckks commitment has the wrong length")
            part = np.frombuffer(blob, dtype="<u8").reshape(shape)
            if np.any(part >= moduli):
                raise MalformedMessage("ckks commitment is not reduced modulo its primes")
            total = (total + part) % moduli  # primes < 2**61: no uint64 overflow
        return total.astype("<u8").tobytes()

    @property
    def _chunk_bound(self) -> int:
        # Two polynomials of N coefficients per data prime, 8 bytes each, plus what
        # TenSEAL and SEAL add (zstd can grow incompressible data a little).
        raw = 2 * self.scheme.poly_modulus_degree * (len(self.scheme.coeff_mod_bit_sizes) - 1) * 8
        return raw + raw // 64 + 4096

    def _chunk_lengths(self, size: int) -> Iterator[int]:
        """Values in each chunk of a ``size``-value vector (its weight included).

        Lazy, so a forged length costs nothing until chunks actually arrive.
        """
        per = self.scheme.values_per_ciphertext
        return (min(per, size + 1 - start) for start in range(0, size + 1, per))

    def _payload_bound(self, size: int) -> int:
        return (size // self.scheme.values_per_ciphertext + 1) * (8 + self._chunk_bound)

    def _load_chunk(self, blob: bytes, index: int, expected: int) -> tuple[Any, np.ndarray]:
        """Validate one chunk, then let TenSEAL parse it; returns it and its ``c1``.

        Our own parser checks the structure, the level, the scale and every
        coefficient before TenSEAL sees a byte (TenSEAL accepts empty and corrupted
        input).
        """
        if not blob:
            raise MalformedMessage(f"ckks chunk {index} is empty")
        parsed = self._parse(blob, _slots_for(expected))
        try:
            part = ts.ckks_vector_from(self.context, blob)
        except Exception:  # TenSEAL raises bare ValueError/RuntimeError on bad bytes
            raise MalformedMessage(f"ckks chunk {index} does not parse") from None
        return part, parsed.c1

    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> CKKSVector:
        if size // self.scheme.values_per_ciphertext + 1 > reader.remaining // 8:
            raise MalformedMessage(f"truncated ckks vector of {size} values")
        loaded = [
            self._load_chunk(reader.blob(), i, n) for i, n in enumerate(self._chunk_lengths(size))
        ]
        return CKKSVector(
            self, size, count, parts=[p for p, _ in loaded], c1=[c for _, c in loaded]
        )

    def _read_frames(self, frames: FrameReader, size: int, count: int) -> CKKSVector:
        bound = self._chunk_bound
        loaded = [
            self._load_chunk(frames.read(bound), i, n)
            for i, n in enumerate(self._chunk_lengths(size))
        ]
        return CKKSVector(
            self, size, count, parts=[p for p, _ in loaded], c1=[c for _, c in loaded]
        )


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
        return CKKSVector(self, values.size, 1, blobs=list(self._chunks(values, weight)))

    def _encrypt_frames(self, values: np.ndarray, weight: int) -> Iterator[bytes]:
        yield from self._chunks(values, weight)  # one ciphertext in memory at a time

    @cached_property
    def _sealapi(self) -> tuple[Any, Any]:
        """SEAL's encoder and an encryptor under this public key."""
        context = self.context.seal_context().data
        return (
            sealapi.CKKSEncoder(context),
            sealapi.Encryptor(context, self.context.public_key().data),
        )

    def _chunks(self, values: np.ndarray, weight: int) -> Iterator[bytes]:
        """Encrypt ``[weight * values, weight]``, ``N`` values per ciphertext.

        Consecutive values ``(a, b)`` are packed as one complex slot ``a + bi``:
        additions act on real and imaginary parts alike, so a ciphertext holds
        twice what real-only slots hold, for the same encryption.
        """
        per, size = self.scheme.values_per_ciphertext, values.size
        scale = 2.0**self.scheme.encode_scale_bits
        encoder, encryptor = self._sealapi
        for start in range(0, size + 1, per):
            chunk = np.asarray(weight * values[start : start + per], dtype=np.float64)
            if start + per > size:
                chunk = np.append(chunk, float(weight))
            used = chunk.size
            if used % 2:
                chunk = np.append(chunk, 0.0)
            plain, ciphertext = sealapi.Plaintext(), sealapi.Ciphertext()
            encoder.encode(chunk.view(np.complex128).tolist(), scale, plain)
            encryptor.encrypt(plain, ciphertext)
            yield seal_format.write_ckks_vector(seal_io.save(ciphertext), _slots_for(used), scale)


class CKKSSecretKey(SecretKey):
    """The private context. It never leaves the key holder unless asked.

    If the scheme it was generated under has ``flood_bits``, every decryption adds
    flooding noise to the released values, whatever plan the vector was loaded
    under (never to the total weight, which is rounded to an integer and so
    reveals no error). The noise is drawn from a generator seeded by ``secrets``.
    """

    def __init__(self, public: CKKSPublicKey, secret_ctx: ts.Context) -> None:
        super().__init__(public)
        self._ctx = secret_ctx
        context = secret_ctx.seal_context().data
        self._encoder = sealapi.CKKSEncoder(context)
        self._decryptor = sealapi.Decryptor(context, secret_ctx.secret_key().data)
        self._rng = np.random.default_rng(secrets.randbits(128))

    def _secret_body(self) -> bytes:
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )

    def _decrypt(self, vector: CKKSVector) -> WeightedSum:
        scheme: CKKS = vector.key.scheme  # type: ignore[assignment]
        flat = np.empty(vector.size + 1)
        lengths = vector.key._chunk_lengths(vector.size)  # type: ignore[attr-defined]
        start = 0
        for part, length in zip(vector.parts, lengths, strict=False):
            plain = sealapi.Plaintext()
            self._decryptor.decrypt(part.ciphertext()[0], plain)
            slots = self._encoder.decode_complex(plain)
            pairs = np.fromiter(slots, np.complex128, len(slots)).view(np.float64)
            flat[start : start + length] = pairs[:length]
            start += length
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
        flood_bits = self._public.scheme.flood_bits  # type: ignore[attr-defined]
        if flood_bits:
            std = scheme.error_budget.flood_std(vector.count, flood_bits)
            values = values + self._rng.normal(0.0, std, values.size)
        return WeightedSum(values, weight, vector.count)


def _slots_for(values: int) -> int:
    """Complex slots that ``values`` real values take, two to a slot."""
    return (values + 1) // 2


class CKKSVector(EncryptedVector):
    """One CKKS ciphertext per ``N`` values (the weight rides in the last value).

    Held as TenSEAL vectors (``parts``, for adding) or as their serialization
    (``blobs``, as encrypted or received); each is made from the other on demand.
    """

    def __init__(
        self,
        key: AggregationKey,
        size: int,
        count: int,
        *,
        parts: list[Any] | None = None,
        blobs: list[bytes] | None = None,
        c1: list[np.ndarray] | None = None,
    ) -> None:
        super().__init__(key, size, count)
        self._parts = parts
        self._blobs = blobs
        self._c1 = c1

    @property
    def parts(self) -> list[Any]:
        """TenSEAL vectors, one per ciphertext (loaded from our own bytes once)."""
        if self._parts is None:
            context = self.key.context  # type: ignore[attr-defined]
            self._parts = [ts.ckks_vector_from(context, blob) for blob in self.blobs()]
        return self._parts

    def _add(self, other: CKKSVector, count: int) -> CKKSVector:
        return CKKSVector(
            self.key,
            self.size,
            count,
            parts=[a + b for a, b in zip(self.parts, other.parts, strict=True)],
        )

    def blobs(self) -> list[bytes]:
        """TenSEAL's serialization of each chunk (computed once)."""
        if self._blobs is None:
            self._blobs = [part.serialize() for part in self.parts]
        return self._blobs

    def commitment(self) -> bytes:
        """The ``c1`` polynomials of every chunk (NTT form), which hide the message."""
        if self._c1 is None:
            key: CKKSAggregationKey = self.key  # type: ignore[assignment]
            self._c1 = [
                key._parse(blob, _slots_for(n)).c1
                for blob, n in zip(self.blobs(), key._chunk_lengths(self.size), strict=False)
            ]
        return np.stack(self._c1).astype("<u8").tobytes()

    def _payload(self) -> bytes:
        w = wire.Writer()
        for blob in self.blobs():
            w.blob(blob)
        return w.getvalue()

    def _frames(self) -> Iterator[bytes]:
        yield from self.blobs()
