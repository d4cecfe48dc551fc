"""Encrypted vectors and the weighted sums they decrypt to.

Private: :mod:`he_fed.crypto.base` re-exports both classes. An
:class:`EncryptedVector` adds with ``+`` and ``sum()`` and turns into bytes: one
envelope (``to_bytes``), or a stream of frames (``write_to``) written by the key it
was made under.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from he_fed.crypto import wire
from he_fed.exceptions import EncodingOverflowError, KeyMismatchError, ShapeMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from he_fed.crypto.base import AggregationKey

__all__ = ["EncryptedVector", "WeightedSum"]


@dataclass(frozen=True)
class WeightedSum:
    """A decrypted sum of contributions.

    Attributes
    ----------
    total : ndarray of shape (n,)
        ``sum_k weight_k * x_k``.
    weight : int
        ``sum_k weight_k``.
    count : int
        Number of contributions summed.
    units : ndarray of shape (n,) or None
        ``total`` in grid steps, exactly: the integers ``sum_k weight_k * q_k``,
        where ``q_k`` is contribution ``k``'s values quantized onto the scheme's
        grid (``int64``, or Python integers where they may not fit). ``total`` is
        ``units * step`` rounded to doubles. None for :class:`~he_fed.crypto.Plain`,
        whose values lie on no grid.
    step : float or None
        Real value of one unit: the grid step every client quantizes its values
        to (weights are integers, so the weighted sums lie on the same grid).
    """

    total: np.ndarray
    weight: int
    count: int
    units: np.ndarray | None = None
    step: float | None = None

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean ``total / weight``."""
        return self.total / self.weight


class EncryptedVector(ABC):
    """An encrypted contribution, or a sum of them.

    Attributes
    ----------
    key : AggregationKey
        The key and encoding plan it was made or loaded under.
    size : int
        Number of values (the weight is carried separately).
    count : int
        Number of contributions summed into it (public metadata).
    """

    def __init__(self, key: AggregationKey, size: int, count: int) -> None:
        self.key = key
        self.size = size
        self.count = count

    def __add__(self, other: object) -> EncryptedVector:
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        if type(other) is not type(self) or other.key.fingerprint != self.key.fingerprint:
            raise KeyMismatchError("cannot add vectors made under different keys")
        if other.key.scheme != self.key.scheme:
            raise KeyMismatchError("cannot add vectors made under different encoding plans")
        if other.size != self.size:
            raise ShapeMismatchError(f"cannot add vectors of {self.size} and {other.size} values")
        count = self.count + other.count
        if count > self.key.scheme.max_clients:
            raise EncodingOverflowError(
                f"a sum of {count} contributions exceeds the plan's max_clients="
                f"{self.key.scheme.max_clients}"
            )
        return self._add(other, count)

    def __radd__(self, other: object) -> EncryptedVector:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self  # so that sum([...]) works
        return NotImplemented

    def to_bytes(self) -> bytes:
        """Versioned bytes; ``key.load_vector`` reads them back."""
        w = wire.Writer()
        w.uint(self.size)
        w.uint(self.count)
        w.raw(self._payload())
        scheme = self.key.scheme
        return wire.seal_envelope(
            wire.Kind.VECTOR,
            w.getvalue(),
            scheme=scheme.name,
            params=scheme.params_text(),
            fingerprint=self.key.fingerprint,
        )

    def write_to(self, stream: BinaryIO) -> int:
        """Write to ``stream`` one frame per ciphertext (or per payload); return the bytes written.

        ``key.read_vector_from`` reads it back; only one payload frame is held in memory
        at a time.
        """
        return self.key._write_stream(stream, self.size, self.count, self._frames())

    def _frames(self) -> Iterator[bytes]:
        """Payload frames for :meth:`write_to`; by default the whole payload in one."""
        yield self._payload()

    @abstractmethod
    def commitment(self) -> bytes:
        """A binding value that adds as the ciphertext does and hides the plaintext.

        For Paillier it is each ciphertext modulo ``n`` (that is ``r^n mod n``, which
        does not depend on the message); for CKKS it is the second ciphertext
        polynomial ``c1 = pk1·u + e1``, which does not either. Any ciphertext that
        has the commitment of a sum decrypts to that sum plus at most an offset the
        forger already knew, so an aggregator cannot pass off one client's
        ciphertext as an aggregate. (``Plain`` hides nothing, and its commitment is
        its values.)
        """

    def binding(self) -> bytes:
        """A commitment that binds this contribution's plaintext, or ``b""``.

        The :meth:`commitment` fixes a ciphertext's randomness, not its message: a
        Paillier ciphertext times ``1 + x·n`` keeps it and decrypts to the message
        plus ``x``, and a CKKS ciphertext's ``c0`` takes any known plaintext. A
        Paillier or CKKS vector fresh from ``encrypt`` therefore also commits to its
        plaintext integers (:mod:`he_fed.crypto._binding`,
        :mod:`he_fed.crypto._ckks_binding`), and the key holder checks the decrypted
        sum against the product of the contributors'. ``Plain`` has none and returns
        ``b""``.

        Raises
        ------
        ConfigurationError
            If the vector is a sum or was read from bytes.
        """
        return b""

    def prove_commitment(self, context: bytes, pins: dict[Any, Any] | None = None) -> bytes:
        """A proof, bound to ``context``, that its maker knows the commitment's randomness.

        Without it, a client colluding with the aggregator could sign a *rogue*
        commitment (one that cancels the other receipts') and the key holder's sum
        check would pass for an aggregate holding a single victim's ciphertext.
        Paillier vectors fresh from ``encrypt`` prove their DJN exponents
        (:mod:`he_fed.crypto._commitment_proof`); CKKS vectors prove an opening of
        their :meth:`binding` instead (:mod:`he_fed.crypto._opening_proof`), which,
        with the binding check, makes ``c1`` irrelevant to privacy. ``Plain`` makes
        none and returns ``b""``.

        Both start with a proof that the weight lies in ``[1, max_weight]``
        (:mod:`he_fed.crypto._weight_range`): a range proof of a commitment to the
        weight made once, its *pin*, and a proof linking this contribution to it.

        Parameters
        ----------
        context : bytes
            What the proof is bound to (the protocol's commitment payload).
        pins : dict, optional
            Where the caller keeps its pins across contributions, so that each weight
            is range-proven once (a client's own dict: pins hold its secrets). None
            makes a fresh pin.

        Raises
        ------
        ConfigurationError
            If the vector is a sum or was read from bytes: only its maker holds the
            randomness.
        """
        return b""

    @abstractmethod
    def _add(self, other: Any, count: int) -> EncryptedVector:
        """Add a compatible vector of the same type."""

    @abstractmethod
    def _payload(self) -> bytes:
        """Scheme-specific ciphertext bytes."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self.size} count={self.count}>"
