"""Paillier keys and ciphertexts: what each role holds, and the DJN arithmetic they drive.

* :class:`PaillierPublicKey`, ``n`` and the DJN generator ``hs``: clients encrypt
  with it, and the aggregator, which only adds, holds the same key;
* :class:`PaillierSecretKey`, the primes: it decrypts by CRT;
* :class:`PaillierVector`, standard Paillier ciphertexts, one per value or per
  packed chunk. A vector fresh from ``encrypt`` also holds its DJN exponents, so
  that it can prove knowledge of its commitment (:mod:`he_fed.crypto._commitment_proof`).

The schemes, their parameters and their encodings live in :mod:`he_fed.crypto.paillier`.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np

from he_fed.crypto import (
    _binding,
    _commitment_proof,
    _value_check,
    _value_range,
    _weight_range,
    wire,
)
from he_fed.crypto import _djn as djn
from he_fed.crypto.base import (
    EncryptedVector,
    PublicKey,
    SecretKey,
    WeightedSum,
    key_fingerprint,
)
from he_fed.exceptions import (
    AggregateRejected,
    ConfigurationError,
    EncodingOverflowError,
    MalformedMessage,
)

if TYPE_CHECKING:  # pragma: no cover
    from he_fed.crypto.paillier import _PaillierScheme

__all__ = [
    "PARALLEL_MIN_CIPHERTEXTS",
    "WORKERS_ENV",
    "PaillierPublicKey",
    "PaillierSecretKey",
    "PaillierVector",
    "default_workers",
    "open_plaintexts",
    "usable_cores",
]

_DOMAIN = "he-fed/paillier/v1"
#: Encryptions per call from which worker processes are used (their start-up and
#: tables cost about a second, which short vectors would not win back).
PARALLEL_MIN_CIPHERTEXTS = 512
#: Environment variable that sets the default number of encryption processes (a
#: scheme's own ``workers`` wins). Processes that are themselves pool workers set
#: it to 1, so that they never start pools of their own.
WORKERS_ENV = "HE_FED_ENCRYPT_WORKERS"


def default_workers() -> int:
    """Encryption processes used when a scheme does not set ``workers``.

    ``$HE_FED_ENCRYPT_WORKERS`` if it is set, else the cores this process may use.
    """
    configured = os.environ.get(WORKERS_ENV, "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return usable_cores()


def usable_cores() -> int:
    """The cores this process may use (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PaillierPublicKey(PublicKey):
    """Paillier public key: the modulus ``n`` and the DJN generator ``hs``."""

    def __init__(self, scheme: _PaillierScheme, n: int, hs: int) -> None:
        self._n_bytes = n.to_bytes((n.bit_length() + 7) // 8, "big")
        self._hs_bytes = hs.to_bytes((n.bit_length() * 2 + 7) // 8, "big")
        super().__init__(scheme, key_fingerprint(_DOMAIN, self._n_bytes, self._hs_bytes))
        self.n = gmpy2.mpz(n)
        self.nsquare = self.n * self.n
        self.hs = gmpy2.mpz(hs)
        self._width = (int(self.nsquare).bit_length() + 7) // 8
        # The fixed-base table is built on the first encryption (djn.fixed_base);
        # the aggregator, which only adds, never builds one.

    @property
    def scheme(self) -> _PaillierScheme:
        """Scheme parameters and encoding plan."""
        return self._scheme  # type: ignore[return-value]

    def _key_body(self) -> bytes:
        w = wire.Writer()
        w.blob(self._n_bytes)
        w.blob(self._hs_bytes)
        return w.getvalue()

    def _randomisers(self, exponents: list[int]) -> list[Any]:
        bits = self.scheme.randomness_bits
        workers = self.scheme.workers or default_workers()
        if workers > 1 and len(exponents) >= PARALLEL_MIN_CIPHERTEXTS:
            from he_fed.crypto import _parallel

            if _parallel.available():
                hs, nsquare = int(self.hs), int(self.nsquare)
                made = _parallel.randomisers(hs, nsquare, bits, exponents, workers)
                if made is not None:
                    return made
        table = djn.fixed_base(int(self.hs), int(self.nsquare), bits)
        return [table.pow(a) for a in exponents]

    def expect_contributions(self, count: int, size: int, *, proofs: int = 0) -> None:
        """Size the fixed-base tables for ``count`` encryptions of ``size`` values.

        The randomisers' table (``hs`` modulo ``n²``) is planned for ``count`` times
        the ciphertexts of one contribution, the proofs' table (``g`` modulo ``n``)
        for ``proofs`` exponentiations; see the base class.
        """
        number = self.scheme.ciphertexts_for(max(int(size), 1))
        bits = self.scheme.randomness_bits
        djn.plan_uses(int(self.hs), int(self.nsquare), bits, int(count) * number)
        if proofs:
            g, n = int(self.hs % self.n), int(self.n)
            djn.plan_uses(g, n, _commitment_proof.table_bits(bits, number), int(proofs))

    def raw_encrypt(self, plaintexts: list[int]) -> list[Any]:
        """Encrypt integers in ``[0, n)`` as standard Paillier ciphertexts.

        You probably want :meth:`encrypt`, which encodes real vectors under the plan.
        """
        return self._raw_encrypt(plaintexts)[0]

    def _raw_encrypt(self, plaintexts: list[int]) -> tuple[list[Any], list[int]]:
        bits = self.scheme.randomness_bits
        exponents = [secrets.randbits(bits) for _ in plaintexts]
        n, nsquare = self.n, self.nsquare
        randomisers = self._randomisers(exponents)
        pairs = zip(plaintexts, randomisers, strict=True)
        ciphertexts = [(1 + m * n) * r % nsquare for m, r in pairs]
        return ciphertexts, exponents

    def _encrypt(self, values: np.ndarray, weight: int) -> PaillierVector:
        scheme, n = self.scheme, int(self.n)
        plaintexts = scheme.encode(values, weight, n)
        rho = secrets.randbits(scheme.blinding_bits)
        ciphertexts, exponents = self._raw_encrypt(scheme.attach(plaintexts, values.size, rho))
        vector = PaillierVector(self, ciphertexts, values.size, 1)
        vector._exponents = exponents
        # The binding commitment is made on request (a protocol client asks for it);
        # plain encryption pays only for carrying the blinding.
        vector._opening = (scheme.exact(plaintexts, values.size, n), rho)
        vector._weight = weight
        return vector

    def _sum_bindings(self, bindings: list[bytes]) -> bytes:
        combined = _binding.product(bindings, parts=2)
        if combined is None:
            raise MalformedMessage("a paillier binding commitment is malformed")
        return combined

    def _residues(self, commitment: bytes, size: int) -> list[Any] | None:
        width, n = len(self._n_bytes), self.n
        if len(commitment) != self.scheme.ciphertexts_for(size) * width:
            return None
        residues = [
            gmpy2.mpz(int.from_bytes(commitment[i : i + width], "big"))
            for i in range(0, len(commitment), width)
        ]
        return residues if all(0 < r < n for r in residues) else None

    def _verify_commitment_proofs(
        self, claims: list[tuple[bytes, bytes, bytes, bytes]], size: int
    ) -> bool:
        layout, half = self.scheme.value_layout(size), _binding.WIDTH
        cut = _value_range.proof_size(layout)
        g, bits = int(self.hs % self.n), self.scheme.randomness_bits
        ranges: list[_value_check.Claim] = []
        for commitment, proof, context, binding in claims:
            residues = self._residues(commitment, size)
            rest = _weight_range.verified_rest(
                binding, proof, self.scheme.max_weight, self.fingerprint, context
            )
            if residues is None or rest is None:
                return False
            if not _commitment_proof.verify(int(self.n), g, residues, rest[cut:], bits, context):
                return False
            ranges.append((layout, binding[:half], binding[half:], rest[:cut], context))
        return _value_check.verify_all(ranges)

    def _sum_commitments(self, commitments: list[bytes], size: int) -> bytes:
        width = len(self._n_bytes)
        number = self.scheme.ciphertexts_for(size)
        n = self.n
        product = [gmpy2.mpz(1)] * number
        for blob in commitments:
            if len(blob) != number * width:
                raise MalformedMessage("paillier commitment has the wrong length")
            for i in range(number):
                r = gmpy2.mpz(int.from_bytes(blob[i * width : (i + 1) * width], "big"))
                if not 0 < r < n:
                    raise MalformedMessage("paillier commitment is out of range")
                product[i] = product[i] * r % n
        return b"".join(int(v).to_bytes(width, "big") for v in product)

    def _read_vector(self, reader: wire.Reader, size: int, count: int) -> PaillierVector:
        width = self._width
        number = self.scheme.ciphertexts_for(size)
        if number > reader.remaining // width:
            raise MalformedMessage(f"truncated paillier vector of {size} values")
        raw = reader.raw(number * width)
        ciphertexts = []
        for i in range(number):
            c = gmpy2.mpz(int.from_bytes(raw[i * width : (i + 1) * width], "big"))
            if not 0 < c < self.nsquare or gmpy2.gcd(c, self.n) != 1:
                raise MalformedMessage(f"paillier ciphertext {i} is not in Z*_(n^2)")
            ciphertexts.append(c)
        return PaillierVector(self, ciphertexts, size, count)

    def _payload_bound(self, size: int) -> int:
        return self.scheme.ciphertexts_for(size) * self._width


class PaillierSecretKey(SecretKey):
    """Paillier secret key: the primes ``p`` and ``q``; decrypts with CRT."""

    def __init__(self, public: PaillierPublicKey, p: int, q: int) -> None:
        super().__init__(public)
        if p * q != int(public.n):
            raise ConfigurationError("p * q does not equal the public modulus")
        self._crt = djn.CRTDecryptor(p, q)

    def _secret_body(self) -> bytes:
        w = wire.Writer()
        for prime in (self._crt.p, self._crt.q):
            w.blob(int(prime).to_bytes((int(prime).bit_length() + 7) // 8, "big"))
        return w.getvalue()

    def raw_decrypt(self, ciphertexts: list[Any]) -> list[int]:
        """Plaintext integers in ``[0, n)``. You probably want :meth:`decrypt`."""
        return [self._crt.decrypt(c) for c in ciphertexts]

    def _decrypt(self, vector: PaillierVector, binding: bytes) -> WeightedSum:
        plaintexts = self.raw_decrypt(vector.ciphertexts)
        return open_plaintexts(vector, plaintexts, binding)


def open_plaintexts(vector: PaillierVector, plaintexts: list[int], binding: bytes) -> WeightedSum:
    """The weighted sum that ``vector``'s decrypted ``plaintexts`` hold, checked.

    Shared by the single secret key and threshold decryption
    (:mod:`he_fed.crypto.threshold`), which obtain the same plaintexts differently.

    Raises
    ------
    EncodingOverflowError
        If a value, the weight or the blinding lies outside the plan's range.
    AggregateRejected
        If ``binding`` is given and the plaintext does not open it.
    """
    scheme: _PaillierScheme = vector.key.scheme  # type: ignore[assignment]
    n = int(vector.key.n)  # type: ignore[attr-defined]
    data, rho = scheme.detach(plaintexts, vector.size)
    # Every range check first: the binding check must only ever see a sum that
    # honest contributions could have, so that whether it passes never depends
    # on where a tampered plaintext wrapped modulo n.
    result = scheme.decode(data, vector.size, vector.count, n)
    if rho >> (scheme.blinding_bits + vector.count.bit_length()):
        raise EncodingOverflowError("the decrypted blinding exceeds what the plan allows")
    if binding and not (
        _binding.check(scheme.exact(data, vector.size, n), rho, binding[: _binding.WIDTH])
        and _weight_range.opens(binding, result.weight, rho)
    ):
        raise AggregateRejected(
            "the aggregate's plaintext does not open its contributions' binding "
            "commitments: someone added to the sum"
        )
    return result


class PaillierVector(EncryptedVector):
    """Standard Paillier ciphertexts (one per value, or one per packed chunk)."""

    def __init__(
        self, key: PaillierPublicKey, ciphertexts: list[Any], size: int, count: int
    ) -> None:
        super().__init__(key, size, count)
        self.ciphertexts = ciphertexts
        #: The DJN exponents, held only by a vector fresh from ``encrypt``; never written.
        self._exponents: list[int] | None = None
        #: The slot integers and blinding its binding commitment opens to, held only
        #: by a vector fresh from ``encrypt`` (they are its plaintext); never written.
        self._opening: tuple[list[int], int] | None = None
        self._weight: int | None = None
        self._binding: bytes | None = None

    def binding(self) -> bytes:
        """The commitment that binds this contribution's plaintext (see the base class)."""
        if self._binding is None:
            if self._opening is None:
                raise ConfigurationError(
                    "only a vector fresh from encrypt has a binding commitment: a sum's is "
                    "the product of its contributions'"
                )
            integers, rho = self._opening
            weight = int(self._weight or 0)  # set with the opening
            self._binding = _weight_range.bind(_binding.commit(integers, rho), weight, rho)
        return self._binding

    def prove_commitment(self, context: bytes, pins: dict[Any, Any] | None = None) -> bytes:
        """A proof that its weight is in range and its maker knows its DJN exponents.

        The weight's proof (:mod:`he_fed.crypto._weight_range`) comes first.
        """
        if self._exponents is None or self._opening is None or self._weight is None:
            raise ConfigurationError(
                "only a vector fresh from encrypt can prove its commitment: sums and "
                "vectors read from bytes do not hold their randomness"
            )
        key: PaillierPublicKey = self.key  # type: ignore[assignment]
        n = key.n
        residues = [c % n for c in self.ciphertexts]
        bits = key.scheme.randomness_bits
        integers, rho = self._opening
        ranged = _weight_range.prove_linked(
            pins, self._weight, rho, key.scheme.max_weight, key.fingerprint, context
        )
        binding, half = self.binding(), _binding.WIDTH
        values = _value_range.prove(
            key.scheme.value_layout(self.size),
            key.scheme.value_digits(integers, self._weight),
            self._weight,
            rho,
            binding[:half],
            binding[half:],
            context,
        )
        return (
            ranged
            + values
            + _commitment_proof.prove(
                int(n), int(key.hs % n), residues, self._exponents, bits, context
            )
        )

    def _add(self, other: PaillierVector, count: int) -> PaillierVector:
        nsquare = self.key.nsquare  # type: ignore[attr-defined]
        summed = [a * b % nsquare for a, b in zip(self.ciphertexts, other.ciphertexts, strict=True)]
        return PaillierVector(self.key, summed, self.size, count)  # type: ignore[arg-type]

    def commitment(self) -> bytes:
        """Each ciphertext modulo ``n``: ``r^n mod n``, independent of the message."""
        key: PaillierPublicKey = self.key  # type: ignore[assignment]
        width = len(key._n_bytes)
        return b"".join(int(c % key.n).to_bytes(width, "big") for c in self.ciphertexts)

    def _payload(self) -> bytes:
        width = self.key._width  # type: ignore[attr-defined]
        return b"".join(int(c).to_bytes(width, "big") for c in self.ciphertexts)
