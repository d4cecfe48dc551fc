"""CKKS keys and ciphertexts: what each role holds, and how SEAL and TenSEAL are driven.

* :class:`CKKSAggregationKey`, the encryption parameters alone (no key at all):
  enough to load, check and add ciphertexts, which is all the aggregator does;
* :class:`CKKSPublicKey`, the parameters and the encryption key: clients quantize
  onto the plan's grid and encrypt, one ciphertext of ``N`` values at a time;
* :class:`CKKSSecretKey`, the private context: it decodes every value of every
  ciphertext and releases only what :mod:`he_fed.crypto._ckks_grid` lets through;
* :class:`CKKSVector`, one ciphertext per ``N`` values, the weight riding last.

The scheme itself, its parameters and its plan live in :mod:`he_fed.crypto.ckks`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from he_fed.crypto import _binding, _ckks_binding, _opening_proof, _weight_range, wire
from he_fed.crypto import _seal_format as seal_format
from he_fed.crypto import _seal_io as seal_io
from he_fed.crypto.base import (
    AggregationKey,
    EncryptedVector,
    PublicKey,
    SecretKey,
    WeightedSum,
    key_fingerprint,
)
from he_fed.crypto.ckks_budget import EXACT_FLOAT, MAX_VALUES
from he_fed.crypto.stream import FrameReader
from he_fed.exceptions import (
    ConfigurationError,
    KeyMismatchError,
    MalformedMessage,
    SecretMaterialError,
    ShapeMismatchError,
)

if TYPE_CHECKING:
    from he_fed.crypto.ckks import CKKS

__all__ = ["CKKSAggregationKey", "CKKSPublicKey", "CKKSSecretKey", "CKKSVector"]

_DOMAIN = "he-fed/ckks/v1"


def _seal_params_only(ctx: ts.Context) -> bytes:
    return ctx.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


def _seal_public(ctx: ts.Context) -> bytes:
    return ctx.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


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
        and tuple(m.value() for m in parms.coeff_modulus()) == scheme.primes
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
        parms_id = tuple(self.context.seal_context().data.first_parms_id())
        return list(self.scheme.primes[:-1]), parms_id  # type: ignore[return-value]

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
        shape = (self.scheme.ciphertexts_for(size), len(primes), n)
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

    def _sum_bindings(self, bindings: list[bytes]) -> bytes:
        combined = _binding.product(bindings, parts=2)
        if combined is None:
            raise MalformedMessage("a ckks binding commitment is malformed")
        return combined

    def _verify_commitment_proofs(
        self, claims: list[tuple[bytes, bytes, bytes, bytes]], size: int
    ) -> bool:
        """Whether each proof shows knowledge of an opening of its binding (not of ``c1``).

        With the binding checked at decryption, ``c1`` needs no proof: any aggregate
        that opens the receipts' bindings decrypts to their openings' sum
        (:mod:`he_fed.crypto._opening_proof`).
        """
        return _ckks_binding.proofs_hold(self.scheme, size, self.fingerprint, claims)

    @property
    def _chunk_bound(self) -> int:
        # Two polynomials of N coefficients per data prime, 8 bytes each, plus what
        # TenSEAL and SEAL add (zstd can grow incompressible data a little).
        raw = 2 * self.scheme.poly_modulus_degree * (len(self.scheme.coeff_mod_bit_sizes) - 1) * 8
        return raw + raw // 64 + 4096

    def _chunk_lengths(self, size: int) -> Iterator[int]:
        """Integers in each chunk of a ``size``-value vector (digits and weight included).

        ``scheme.ciphertexts_for(size)`` chunks of ``N`` integers, the last one
        shorter. Lazy, so a forged length costs nothing until chunks actually arrive.
        """
        per, used = self.scheme.values_per_ciphertext, self.scheme.encoded_length(size)
        return (min(per, used - start) for start in range(0, used, per))

    def _payload_bound(self, size: int) -> int:
        return self.scheme.ciphertexts_for(size) * (8 + self._chunk_bound)

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
        if self.scheme.ciphertexts_for(size) > reader.remaining // 8:
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
        rho = secrets.randbits(_binding.RHO_BITS)
        vector = CKKSVector(self, values.size, 1, blobs=list(self._chunks(values, weight, rho)))
        # The binding commitment is made on request (a protocol client asks for it);
        # plain encryption pays only for carrying the blinding.
        vector._opening = (values, weight, rho)
        return vector

    def _encrypt_frames(self, values: np.ndarray, weight: int) -> Iterator[bytes]:
        rho = secrets.randbits(_binding.RHO_BITS)
        yield from self._chunks(values, weight, rho)  # one ciphertext in memory at a time

    @cached_property
    def _sealapi(self) -> tuple[Any, Any]:
        """SEAL's encoder and an encryptor under this public key."""
        context = self.context.seal_context().data
        return (
            sealapi.CKKSEncoder(context),
            sealapi.Encryptor(context, self.context.public_key().data),
        )

    def _chunks(self, values: np.ndarray, weight: int, rho: int) -> Iterator[bytes]:
        """Encrypt ``[weight * digits(round(values * 2**grid_bits)), weight, rho's digits]``.

        ``N`` integers a chunk. The digits of every value follow one another (one
        digit, the grid integer itself, unless the plan has more); the blinding of
        the binding commitment follows the weight in digits
        (:mod:`he_fed.crypto._ckks_binding`). Every integer is below ``2**52`` (the plan
        sees to it), so the doubles handed to the encoder hold it exactly.
        Consecutive integers ``(a, b)`` are packed as one complex slot ``a + bi``:
        additions act on real and imaginary parts alike, so a ciphertext holds twice
        what real-only slots hold, for the same encryption. Chunks are encoded one
        at a time, so that ``encrypt_to`` holds one ciphertext's integers in memory,
        not the vector's.
        """
        per, digits = self.scheme.values_per_ciphertext, self.scheme.digits
        tail = np.append(float(weight), _ckks_binding.blinding_digits(rho, self.scheme))
        total = self.scheme.encoded_length(values.size)
        tail_at = total - tail.size  # the weight and the blinding follow the values
        scale = 2.0**self.scheme.encode_scale_bits
        quantizer = self.scheme.quantizer
        encoder, encryptor = self._sealapi
        for start in range(0, total, per):
            first, stop = start // digits, min(values.size, -(-(start + per) // digits))
            skip = start - first * digits  # digits of values[first] in the previous chunk
            chunk = quantizer.encode(values[first:stop], weight)[skip : skip + per]
            if start + per > tail_at:
                chunk = np.append(chunk, tail[max(start - tail_at, 0) : start + per - tail_at])
            used = chunk.size
            if used % 2:
                chunk = np.append(chunk, 0.0)
            plain, ciphertext = sealapi.Plaintext(), sealapi.Ciphertext()
            encoder.encode(chunk.view(np.complex128).tolist(), scale, plain)
            encryptor.encrypt(plain, ciphertext)
            yield seal_format.write_ckks_vector(seal_io.save(ciphertext), _slots_for(used), scale)


class CKKSSecretKey(SecretKey):
    """The private context. It never leaves the key holder unless asked.

    Decryption releases only what rounding onto the plan's grid leaves: the exact
    sum of the clients' grid integers, a function of the plaintext alone, or an
    :class:`~he_fed.exceptions.AggregateRejected` (see :mod:`he_fed.crypto._ckks_grid`).
    The unrounded values, which carry the key-dependent error, never leave this
    object.
    """

    def __init__(self, public: CKKSPublicKey, secret_ctx: ts.Context) -> None:
        super().__init__(public)
        self._ctx = secret_ctx
        context = secret_ctx.seal_context().data
        self._encoder = sealapi.CKKSEncoder(context)
        self._decryptor = sealapi.Decryptor(context, secret_ctx.secret_key().data)

    def _secret_body(self) -> bytes:
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )

    def _decrypt(self, vector: CKKSVector, binding: bytes) -> WeightedSum:
        """Decode every value of every ciphertext, then round and check them all.

        How many values and ciphertexts there are comes from ``vector.size`` alone
        (which the protocol fixes from the task), never from a length inside the
        ciphertexts; the slots beyond the vector's values are decoded and checked
        like the others.
        """
        scheme: CKKS = vector.key.scheme  # type: ignore[assignment]
        per, size = scheme.values_per_ciphertext, vector.size
        if scheme.encoded_length(size) > MAX_VALUES:
            most = (MAX_VALUES - 1 - _ckks_binding.blinding_slots(scheme)) // scheme.digits
            raise ShapeMismatchError(
                f"a ckks vector holds at most {most} values under this plan "
                f"({scheme.digits} slot(s) each, beside the weight and the blinding)"
            )
        chunks = scheme.ciphertexts_for(size)
        if len(vector.parts) != chunks:
            raise MalformedMessage(
                f"a ckks vector of {size} values has {chunks} ciphertext(s), "
                f"not {len(vector.parts)}"
            )
        scale = 2.0**scheme.encode_scale_bits
        decoded = np.empty(chunks * per)
        for index, part in enumerate(vector.parts):
            ciphertext = part.ciphertext()[0]
            if ciphertext.scale != scale:  # loaders check it; a vector built otherwise may not
                raise KeyMismatchError("a ckks ciphertext is not at the plan's scale")
            plain = sealapi.Plaintext()
            self._decryptor.decrypt(ciphertext, plain)
            slots = self._encoder.decode_complex(plain)
            pairs = np.fromiter(slots, np.complex128, len(slots)).view(np.float64)
            decoded[index * per : (index + 1) * per] = pairs
        largest = min(scheme.data_modulus / 4, EXACT_FLOAT) / scale
        return _ckks_binding.release(scheme, decoded, size, vector.count, largest, binding)


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
        #: The values, weight and blinding its binding commitment opens to, held only
        #: by a vector fresh from ``encrypt`` (they are its plaintext); never written.
        self._opening: tuple[np.ndarray, int, int] | None = None
        self._binding: bytes | None = None

    def _packed(self) -> tuple[list[int], int]:
        """The packed slot integers and the blinding (:mod:`he_fed.crypto._ckks_binding`)."""
        if self._opening is None:
            raise ConfigurationError(
                "only a vector fresh from encrypt has a binding commitment and can prove "
                "it: a sum's is the product of its contributions'"
            )
        values, weight, rho = self._opening
        scheme = self.key.scheme
        integers = np.append(scheme.quantizer.encode(values, weight), float(weight))
        return _ckks_binding.pack(integers, scheme), rho  # type: ignore[arg-type]

    def binding(self) -> bytes:
        """The commitment that binds this contribution's plaintext (see the base class)."""
        if self._binding is None:
            packed, rho = self._packed()
            weight = self._opening[1] if self._opening else 0  # _packed saw to it
            self._binding = _weight_range.bind(_binding.commit(packed, rho), weight, rho)
        return self._binding

    def prove_commitment(self, context: bytes, pins: dict[Any, Any] | None = None) -> bytes:
        """Proofs that its weight is in range and its maker knows an opening of :meth:`binding`."""
        packed, rho = self._packed()
        scheme = self.key.scheme
        bits = _ckks_binding.slot_bits(scheme) * _ckks_binding.pack_bits(scheme)  # type: ignore[arg-type]
        weight = self._opening[1] if self._opening else 0  # _packed saw to it
        fingerprint = self.key.fingerprint
        ranged = _weight_range.prove_linked(
            pins, weight, rho, scheme.max_weight, fingerprint, context
        )
        binding, values = self.binding(), self._opening[0] if self._opening else np.zeros(0)
        ranged += _ckks_binding.prove_values(scheme, values, weight, rho, binding, context)  # type: ignore[arg-type]
        return ranged + _opening_proof.prove(packed, rho, binding[: _binding.WIDTH], bits, context)

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
