"""Threshold Paillier keys: verification keys, shares, partial decryptions, combination.

The mathematics and the security argument are in :mod:`he_fed.crypto.threshold`,
which also holds the dealer; this module holds what each role keeps and exchanges,
and writes it as versioned bytes (the loaders are in
:mod:`he_fed.crypto._threshold_files`). Each object is one :mod:`he_fed.crypto.wire`
envelope whose header carries the public key's scheme, parameters and fingerprint,
and whose body starts with its own format version (:data:`VERSION`). No pickle.
Integers are big-endian, of fixed width ``W`` (the bytes of ``n²``)::

    verification keys (Kind.VERIFICATION_KEYS)
        version u8, threshold u16, holders u16, v (W bytes), v_1 .. v_holders (W bytes each)
    key share (Kind.KEY_SHARE), protected as secret.key (:func:`keyfile.protect`)
        payload: the public key's envelope (blob), then the share (blob):
        version u8, index u16, s_i (W bytes), the verification keys' envelope (blob)
    partial decryption (Kind.PARTIAL_DECRYPTION)
        version u8, index u16, count u32, then per ciphertext: c_i (W bytes), proof
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gmpy2

from he_fed._validation import check_int
from he_fed.crypto import _threshold_proof, keyfile, wire
from he_fed.crypto._paillier_keys import (
    PaillierPublicKey,
    PaillierVector,
    open_plaintexts,
)
from he_fed.crypto.base import EncryptedVector, WeightedSum
from he_fed.exceptions import (
    ConfigurationError,
    InvalidPartialDecryption,
    KeyMismatchError,
)

__all__ = [
    "MAX_HOLDERS",
    "VERSION",
    "KeyShare",
    "PartialDecryption",
    "ThresholdDecryption",
    "ThresholdKeys",
    "VerificationKeys",
    "check_counts",
    "exponent_bits",
    "lagrange_at_zero",
    "parse_threshold",
]

#: Format version of every threshold body.
VERSION = 1

#: Most share holders: ``Δ = holders!`` enters every exponent (64! has 296 bits).
MAX_HOLDERS = 64
_CONTEXT_DOMAIN = b"he-fed/threshold-paillier/partial/v1"


def parse_threshold(text: str) -> tuple[int, int]:
    """``"3/5"`` as ``(3, 5)``: ``t`` of ``holders`` shares decrypt.

    Raises
    ------
    ConfigurationError
        If it is not ``t/n`` with ``2 <= t <= n <= MAX_HOLDERS``.
    """
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigurationError(f"--threshold {text!r} is not t/n, e.g. 3/5")
    threshold, holders = int(parts[0]), int(parts[1])
    check_counts(threshold, holders)
    return threshold, holders


def _header(public: PaillierPublicKey) -> dict[str, Any]:
    scheme = public.scheme
    return {
        "scheme": scheme.name,
        "params": scheme.params_text(),
        "fingerprint": public.fingerprint,
    }


def check_counts(threshold: int, holders: int) -> None:
    """Refuse counts outside ``2 <= threshold <= holders <= MAX_HOLDERS``."""
    check_int("holders", holders, low=2, high=MAX_HOLDERS)
    check_int("threshold", threshold, low=2, high=holders, bounds=f"in [2, holders={holders}]")


def _delta(holders: int) -> int:
    return math.factorial(holders)


def exponent_bits(key_bits: int, holders: int) -> int:
    """Bits of ``Δ·s_i`` (``s_i < nm < n²/4``)."""
    return 2 * key_bits + _delta(holders).bit_length()


@dataclass(frozen=True, eq=False)
class VerificationKeys:
    """Public: the threshold, ``v`` and every holder's ``v_i``, under one public key.

    Parameters
    ----------
    public : PaillierPublicKey
        The federation's public key.
    threshold, holders : int
        ``threshold`` of ``holders`` partial decryptions decrypt.
    v : int
        A random square of ``Z*_(n²)``.
    keys : tuple of int
        ``v_i = v^(Δ·s_i)`` for holders ``1..holders``, in order.
    """

    public: PaillierPublicKey
    threshold: int
    holders: int
    v: int
    keys: tuple[int, ...]
    fingerprint: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_counts(self.threshold, self.holders)
        nsquare = int(self.public.nsquare)
        if len(self.keys) != self.holders:
            raise ConfigurationError("one verification key per holder is needed")
        for value in (self.v, *self.keys):
            if not 1 < value < nsquare or gmpy2.gcd(value, self.public.n) != 1:
                raise ConfigurationError("a verification key is not a unit of Z*_(n^2)")
        object.__setattr__(
            self, "fingerprint", hashlib.sha256(_CONTEXT_DOMAIN + b"/vk" + self._body()).digest()
        )

    @property
    def delta(self) -> int:
        """``Δ = holders!``."""
        return _delta(self.holders)

    @property
    def exponent_bits(self) -> int:
        """Bits of a share times ``Δ``, the exponent the proofs are about."""
        return exponent_bits(self.public.scheme.key_bits, self.holders)

    def _body(self) -> bytes:
        width = self.public._width
        w = wire.Writer()
        w.uint(VERSION, 1)
        w.uint(self.threshold, 2)
        w.uint(self.holders, 2)
        for value in (self.v, *self.keys):
            w.raw(int(value).to_bytes(width, "big"))
        return w.getvalue()

    def to_bytes(self) -> bytes:
        """Versioned bytes; :func:`he_fed.crypto.threshold.load_verification` reads them."""
        return wire.seal_envelope(wire.Kind.VERIFICATION_KEYS, self._body(), **_header(self.public))

    def _vector(self, vector: EncryptedVector) -> PaillierVector:
        if not isinstance(vector, PaillierVector):
            raise KeyMismatchError("threshold decryption takes Paillier vectors")
        if vector.key.fingerprint != self.public.fingerprint:
            raise KeyMismatchError("vector was encrypted under another key")
        return vector

    def verify(self, vector: EncryptedVector, partial: PartialDecryption, context: bytes) -> bool:
        """Whether every proof of ``partial`` holds for ``vector`` and ``context``."""
        vec = self._vector(vector)
        if not 1 <= partial.index <= self.holders:
            return False
        if len(partial.values) != len(vec.ciphertexts) or len(partial.proofs) != len(
            partial.values
        ):
            return False
        nsquare = int(self.public.nsquare)
        v_i = self.keys[partial.index - 1]
        contexts = _contexts(context, vec, partial.index)
        for c, c_i, proof, ctx in zip(
            vec.ciphertexts, partial.values, partial.proofs, contexts, strict=True
        ):
            if not 0 < c_i < nsquare:
                return False
            base = gmpy2.powmod(c, 4, nsquare)
            value = gmpy2.powmod(c_i, 2, nsquare)
            if not _threshold_proof.verify(
                nsquare, base, value, self.v, v_i, proof, self.exponent_bits, ctx
            ):
                return False
        return True

    def combine(
        self,
        vector: EncryptedVector,
        partials: Iterable[PartialDecryption],
        context: bytes,
        *,
        binding: bytes = b"",
    ) -> ThresholdDecryption:
        """Verify the partials, leave out the invalid ones, and decrypt with ``t`` valid ones.

        Parameters
        ----------
        vector : EncryptedVector
            The Paillier aggregate the partials decrypt.
        partials : iterable of PartialDecryption
            One per holder that answered (a holder's second partial counts as invalid).
        context : bytes
            The context the partials were made for.
        binding : bytes, optional
            The product of the contributions' binding commitments, as for
            :meth:`SecretKey.decrypt_weighted`.

        Returns
        -------
        ThresholdDecryption
            The weighted sum, the holders whose partials were used and those refused.

        Raises
        ------
        InvalidPartialDecryption
            If fewer than ``t`` partials are valid; it names the refused holders.
        EncodingOverflowError, AggregateRejected
            As :meth:`SecretKey.decrypt_weighted`.
        """
        vec = self._vector(vector)
        valid: dict[int, PartialDecryption] = {}
        refused: list[int] = []
        for partial in partials:
            if partial.index in valid or not self.verify(vec, partial, context):
                refused.append(partial.index)
            else:
                valid[partial.index] = partial
        if len(valid) < self.threshold:
            raise InvalidPartialDecryption(
                f"{len(valid)} valid partial decryption(s), {self.threshold} needed"
                + (f"; refused from holder(s) {sorted(set(refused))}" if refused else ""),
                holders=tuple(sorted(set(refused))),
            )
        used = sorted(valid)[: self.threshold]
        plaintexts = _combine(self, vec, [valid[i] for i in used])
        result = open_plaintexts(vec, plaintexts, binding)
        return ThresholdDecryption(result, tuple(used), tuple(sorted(set(refused))))


def lagrange_at_zero(indices: Sequence[int], delta: int) -> list[int]:
    """Integer coefficients ``Δ·∏_(j≠i) j/(j−i)`` for the holders ``indices``."""
    out = []
    for i in indices:
        num, den = delta, 1
        for j in indices:
            if j != i:
                num *= j
                den *= j - i
        if num % den:
            raise ConfigurationError("Lagrange coefficient is not an integer: Δ too small")
        out.append(num // den)
    return out


def _combine(
    verification: VerificationKeys, vector: PaillierVector, partials: Sequence[PartialDecryption]
) -> list[int]:
    """The plaintexts in ``[0, n)`` from ``t`` verified partials."""
    n, nsquare = verification.public.n, verification.public.nsquare
    delta = verification.delta
    coefficients = lagrange_at_zero([p.index for p in partials], delta)
    scale = gmpy2.invert(4 * delta * delta, n)
    plaintexts = []
    for j in range(len(vector.ciphertexts)):
        acc = gmpy2.mpz(1)
        for partial, lam in zip(partials, coefficients, strict=True):
            c_i = gmpy2.mpz(partial.values[j])
            if lam < 0:
                c_i, lam = gmpy2.invert(c_i, nsquare), -lam
            acc = acc * gmpy2.powmod(c_i, 2 * lam, nsquare) % nsquare
        plaintexts.append(int((acc - 1) // n * scale % n))
    return plaintexts


def _contexts(context: bytes, vector: PaillierVector, index: int) -> list[bytes]:
    """One proof context per ciphertext: the caller's, the holder, the vector, the position."""
    digest = hashlib.sha256(vector.to_bytes()).digest()
    head = (
        _CONTEXT_DOMAIN
        + len(context).to_bytes(8, "big")
        + context
        + index.to_bytes(2, "big")
        + digest
    )
    return [head + j.to_bytes(8, "big") for j in range(len(vector.ciphertexts))]


@dataclass(frozen=True, eq=False, repr=False)
class KeyShare:
    """One holder's Shamir share of the decryption exponent. SECRET: it stays with its holder.

    Parameters
    ----------
    index : int
        The holder's number, ``1..holders``.
    value : int
        The share ``s_i = f(i) mod nm``.
    verification : VerificationKeys
        Every holder's verification key (this one's included).
    """

    index: int
    value: int
    verification: VerificationKeys

    def __post_init__(self) -> None:
        vk = self.verification
        check_int("index", self.index, low=1, high=vk.holders)
        expected = vk.keys[self.index - 1]
        if gmpy2.powmod(vk.v, vk.delta * self.value, vk.public.nsquare) != expected:
            raise ConfigurationError(f"share {self.index} does not match its verification key")

    @property
    def public(self) -> PaillierPublicKey:
        """The federation's public key."""
        return self.verification.public

    def partial_decrypt(self, vector: EncryptedVector, context: bytes) -> PartialDecryption:
        """This holder's partial decryption of every ciphertext of ``vector``, with proofs.

        Call it only once the holder's own policy accepts the vector (the
        protocol's :class:`~he_fed.protocol.decryptor.Decryptor` does); ``context``
        binds the proofs to the round.
        """
        vk = self.verification
        vec = vk._vector(vector)
        nsquare = vk.public.nsquare
        x = vk.delta * self.value
        v_i = vk.keys[self.index - 1]
        values, proofs = [], []
        for c, ctx in zip(vec.ciphertexts, _contexts(context, vec, self.index), strict=True):
            c_i = gmpy2.powmod(c, 2 * x, nsquare)
            base, value = gmpy2.powmod(c, 4, nsquare), c_i * c_i % nsquare
            proofs.append(
                _threshold_proof.prove(
                    int(nsquare), base, value, vk.v, v_i, x, vk.exponent_bits, ctx
                )
            )
            values.append(int(c_i))
        return PartialDecryption(self.index, tuple(values), tuple(proofs))

    def to_bytes(self, *, passphrase: str | bytes | None = None) -> bytes:
        """A share file, protected as ``secret.key`` is (:mod:`he_fed.crypto.keyfile`).

        :func:`he_fed.crypto.threshold.load_share` reads it.
        """
        public = self.public
        body = wire.Writer()
        body.uint(VERSION, 1)
        body.uint(self.index, 2)
        body.raw(int(self.value).to_bytes(public._width, "big"))
        body.blob(self.verification.to_bytes())
        inner = wire.Writer()
        inner.blob(public.to_bytes())
        inner.blob(body.getvalue())
        return keyfile.protect(
            wire.Kind.KEY_SHARE, inner.getvalue(), passphrase=passphrase, **_header(public)
        )

    def __repr__(self) -> str:
        vk = self.verification
        return f"<KeyShare {self.index} of {vk.holders} (t={vk.threshold}) for {vk.public!r}>"


@dataclass(frozen=True, eq=False)
class PartialDecryption:
    """One holder's partial decryptions of a vector's ciphertexts, each with its proof."""

    index: int
    values: tuple[int, ...]
    proofs: tuple[bytes, ...] = field(repr=False)

    def to_bytes(self, verification: VerificationKeys) -> bytes:
        """Versioned bytes; :func:`he_fed.crypto.threshold.load_partial` reads them."""
        width = verification.public._width
        w = wire.Writer()
        w.uint(VERSION, 1)
        w.uint(self.index, 2)
        w.uint(len(self.values), 4)
        for value, proof in zip(self.values, self.proofs, strict=True):
            w.raw(int(value).to_bytes(width, "big"))
            w.raw(proof)
        return wire.seal_envelope(
            wire.Kind.PARTIAL_DECRYPTION, w.getvalue(), **_header(verification.public)
        )


@dataclass(frozen=True)
class ThresholdDecryption:
    """What :meth:`VerificationKeys.combine` returns."""

    result: WeightedSum
    used: tuple[int, ...]
    refused: tuple[int, ...]


@dataclass(frozen=True, eq=False, repr=False)
class ThresholdKeys:
    """The dealer's output: public key, verification keys and one share per holder."""

    public: PaillierPublicKey
    verification: VerificationKeys
    shares: tuple[KeyShare, ...]
