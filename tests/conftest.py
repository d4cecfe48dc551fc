"""Shared fixtures. Fast tests use small keys through the explicit opt-in."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

from he_fed.crypto import CKKS, KeyPair, PackedPaillier, Paillier, Plain, Scheme

# Flower reads these when it is imported: no usage reports or update checks from
# the test suite (CI machines may have no network at all).
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

# Tests never read or write the user's calibration cache (~/.cache/he-fed): every
# run calibrates into a folder of its own, which the notebooks' kernels inherit.
_CACHE = tempfile.mkdtemp(prefix="he-fed-test-cache-")
os.environ["HE_FED_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

#: Fast schemes: 1024-bit Paillier needs allow_insecure=True, on purpose.
#: Each with a weighted plan: up to 64 contributions of weight up to 128.
_PLAN = {"max_clients": 64, "max_weight": 128}
FAST_SCHEMES: dict[str, Scheme] = {
    "plain": Plain(**_PLAN),
    "paillier": Paillier(key_bits=1024, allow_insecure=True, **_PLAN),
    "paillier-packed": PackedPaillier(key_bits=1024, allow_insecure=True, **_PLAN),
    "ckks": CKKS(**_PLAN),
}

_KEYS: dict[str, KeyPair] = {}


def keys_for(name: str) -> KeyPair:
    """One key pair per scheme per session (key generation is the slow part)."""
    if name not in _KEYS:
        _KEYS[name] = FAST_SCHEMES[name].keygen()
    return _KEYS[name]


@pytest.fixture(params=sorted(FAST_SCHEMES))
def scheme_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def keys(scheme_name: str) -> KeyPair:
    return keys_for(scheme_name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
