"""What the micro benchmark compares: he-fed's schemes and three baselines.

Every contender runs the same steps a round needs, from the same input: a client
encrypts, then serializes; the aggregator loads and adds the clients' bytes and
serializes the sum; the key holder loads and decrypts it.

Baselines, measured in the same run:

* ``phe-naive``: python-paillier as its documentation shows, one
  ``EncryptedNumber`` per value (floating exponents and all). Its bytes are the
  smallest honest binary form: each ciphertext at full width plus an 8-byte exponent.
* ``tenseal-nvflare``: raw TenSEAL at NVIDIA FLARE's parameters (N=8192,
  primes [60, 40, 40], scale 2^40), chunked into ciphertexts of 4096 values.
* ``plain``: numpy float64 arrays, the cost of federated averaging without
  encryption.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from he_fed.crypto import CKKS, PackedPaillier, Paillier, Plain, Scheme
from he_fed.crypto.ckks import PRESETS

__all__ = ["BASELINES", "Contender", "scheme_contenders"]

#: Plan of every benchmarked scheme: values in [-1, 1], room for 1024 clients.
PLAN = {"clip": 1.0, "max_clients": 1024}


@dataclass
class Contender:
    """One thing being measured. Subclasses implement the four steps."""

    label: str
    params: dict[str, Any]
    per_value: bool = False
    baseline: bool = False
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    def keygen(self) -> None:
        """Generate keys (timed once)."""
        raise NotImplementedError

    def encrypt(self, x: np.ndarray) -> Any:
        """Client: encrypt."""
        raise NotImplementedError

    def serialize(self, encrypted: Any) -> bytes:
        """Client: turn the encrypted vector into bytes."""
        raise NotImplementedError

    def aggregate(self, blobs: list[bytes]) -> bytes:
        """Aggregator: load, add and serialize the sum."""
        raise NotImplementedError

    def decrypt(self, blob: bytes) -> np.ndarray:
        """Key holder: load and decrypt the sum."""
        raise NotImplementedError


class SchemeContender(Contender):
    """An he-fed scheme through its public interface."""

    def __init__(self, label: str, scheme: Scheme, params: dict[str, Any]) -> None:
        super().__init__(label, params, per_value=isinstance(scheme, Paillier))
        self.scheme = scheme

    def keygen(self) -> None:
        keys = self.scheme.keygen()
        self.state.update(keys=keys, aggregation=keys.public.aggregation_key())
        keys.public.encrypt(np.zeros(1))  # builds per-key tables once, outside timing

    def encrypt(self, x: np.ndarray) -> Any:
        return self.state["keys"].public.encrypt(x)

    def serialize(self, encrypted: Any) -> bytes:
        return encrypted.to_bytes()  # type: ignore[no-any-return]

    def aggregate(self, blobs: list[bytes]) -> bytes:
        key = self.state["aggregation"]
        return sum(key.load_vector(b) for b in blobs).to_bytes()  # type: ignore[no-any-return]

    def decrypt(self, blob: bytes) -> np.ndarray:
        keys = self.state["keys"]
        return keys.secret.decrypt(keys.public.load_vector(blob))  # type: ignore[no-any-return]


class PheNaive(Contender):
    """python-paillier, one EncryptedNumber per value."""

    def __init__(self, key_bits: int = 2048) -> None:
        super().__init__("phe-naive", {"key_bits": key_bits}, per_value=True, baseline=True)

    def keygen(self) -> None:
        from phe import paillier

        public, private = paillier.generate_paillier_keypair(n_length=self.params["key_bits"])
        width = (public.nsquare.bit_length() + 7) // 8
        self.state.update(public=public, private=private, width=width)

    def _pack(self, numbers: list[Any]) -> bytes:
        width = self.state["width"]
        return b"".join(
            n.ciphertext(be_secure=False).to_bytes(width, "big") + struct.pack(">q", n.exponent)
            for n in numbers
        )

    def _unpack(self, blob: bytes) -> list[Any]:
        from phe import paillier

        width, public = self.state["width"], self.state["public"]
        step = width + 8
        return [
            paillier.EncryptedNumber(
                public,
                int.from_bytes(blob[i : i + width], "big"),
                struct.unpack(">q", blob[i + width : i + step])[0],
            )
            for i in range(0, len(blob), step)
        ]

    def encrypt(self, x: np.ndarray) -> Any:
        public = self.state["public"]
        return [public.encrypt(float(v)) for v in x]

    def serialize(self, encrypted: Any) -> bytes:
        return self._pack(encrypted)

    def aggregate(self, blobs: list[bytes]) -> bytes:
        vectors = [self._unpack(b) for b in blobs]
        total = vectors[0]
        for other in vectors[1:]:
            total = [a + b for a, b in zip(total, other, strict=False)]
        return self._pack(total)

    def decrypt(self, blob: bytes) -> np.ndarray:
        private = self.state["private"]
        return np.array([private.decrypt(n) for n in self._unpack(blob)])


class TensealNvflare(Contender):
    """Raw TenSEAL at NVIDIA FLARE's parameters."""

    slots = 4096

    def __init__(self) -> None:
        super().__init__(
            "tenseal-nvflare",
            {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40], "scale_bits": 40},
            baseline=True,
        )

    def keygen(self) -> None:
        import tenseal as ts

        ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40])
        ctx.global_scale = 2.0**40
        ctx.generate_galois_keys()  # as NVIDIA FLARE's provisioning does
        self.state.update(ctx=ctx, ts=ts)

    def _join(self, parts: list[bytes]) -> bytes:
        return b"".join(struct.pack(">Q", len(p)) + p for p in parts)

    def _split(self, blob: bytes) -> list[Any]:
        ts, ctx = self.state["ts"], self.state["ctx"]
        out, i = [], 0
        while i < len(blob):
            (size,) = struct.unpack(">Q", blob[i : i + 8])
            out.append(ts.ckks_vector_from(ctx, blob[i + 8 : i + 8 + size]))
            i += 8 + size
        return out

    def encrypt(self, x: np.ndarray) -> Any:
        ts, ctx = self.state["ts"], self.state["ctx"]
        return [
            ts.ckks_vector(ctx, x[i : i + self.slots].tolist())
            for i in range(0, x.size, self.slots)
        ]

    def serialize(self, encrypted: Any) -> bytes:
        return self._join([v.serialize() for v in encrypted])

    def aggregate(self, blobs: list[bytes]) -> bytes:
        vectors = [self._split(b) for b in blobs]
        total = vectors[0]
        for other in vectors[1:]:
            total = [a + b for a, b in zip(total, other, strict=False)]
        return self._join([v.serialize() for v in total])

    def decrypt(self, blob: bytes) -> np.ndarray:
        return np.concatenate([np.array(v.decrypt()) for v in self._split(blob)])


class NumpyPlain(Contender):
    """Federated averaging without encryption: float64 arrays."""

    def __init__(self) -> None:
        super().__init__("plain", {}, baseline=True)

    def keygen(self) -> None:
        return None

    def encrypt(self, x: np.ndarray) -> Any:
        return np.array(x, dtype=np.float64)

    def serialize(self, encrypted: Any) -> bytes:
        return encrypted.tobytes()  # type: ignore[no-any-return]

    def aggregate(self, blobs: list[bytes]) -> bytes:
        return sum(np.frombuffer(b) for b in blobs).tobytes()  # type: ignore[union-attr]

    def decrypt(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob).copy()


#: Baselines by label.
BASELINES = {"phe-naive": PheNaive, "tenseal-nvflare": TensealNvflare, "plain": NumpyPlain}


def scheme_contenders(key_bits: int = 2048, *, allow_insecure: bool = False) -> list[Contender]:
    """Every he-fed scheme and parameter set, under the benchmark plan."""
    paillier = {"key_bits": key_bits, "workers": 1, "allow_insecure": allow_insecure, **PLAN}
    out: list[Contender] = [
        SchemeContender("plain", Plain(**PLAN), {}),
        SchemeContender("paillier", Paillier(**paillier), {"key_bits": key_bits}),
        SchemeContender(
            "paillier-packed",
            PackedPaillier(**paillier),
            {"key_bits": key_bits, "precision_bits": 16},
        ),
    ]
    for preset in PRESETS:
        out.append(SchemeContender("ckks", CKKS(preset=preset, **PLAN), {"preset": preset}))
    return out
