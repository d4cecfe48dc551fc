"""The cryptographic layer: the only code that encrypts with phe, tenseal or gmpy2.

(The benchmark's baselines, :mod:`he_fed.bench.contenders`, call raw phe and TenSEAL
to be measured against.)

Like cryptography's ``hazmat``, this is the low layer. Most users want the roles in
:mod:`he_fed.protocol` or the estimators in :mod:`he_fed`, which use it safely.

Examples
--------
>>> import numpy as np
>>> from he_fed.crypto import Paillier, load_public
>>> keys = Paillier(key_bits=1024, allow_insecure=True, max_weight=4).keygen()
>>> public = load_public(keys.public.to_bytes(), allow_insecure=True)
>>> total = sum(public.encrypt(np.array([0.25, -1.0]), weight=w) for w in (1, 3))
>>> keys.secret.decrypt_weighted(total).mean
array([ 0.25, -1.  ])
"""

from __future__ import annotations

from he_fed.crypto._registry import (
    SCHEMES,
    load_public,
    load_secret,
    make_scheme,
    scheme_from_options,
)
from he_fed.crypto.base import (
    AggregationKey,
    EncryptedVector,
    KeyPair,
    PublicKey,
    Scheme,
    SecretKey,
    WeightedSum,
)
from he_fed.crypto.ckks import CKKS
from he_fed.crypto.ckks_budget import ErrorBudget
from he_fed.crypto.paillier import PackedPaillier, Paillier
from he_fed.crypto.phe_interop import (
    key_pair_from_phe,
    public_key_from_phe,
    public_key_to_phe,
    secret_key_to_phe,
    vector_from_phe,
    vector_to_phe,
)
from he_fed.crypto.plain import Plain

__all__ = [
    "CKKS",
    "SCHEMES",
    "AggregationKey",
    "EncryptedVector",
    "ErrorBudget",
    "KeyPair",
    "PackedPaillier",
    "Paillier",
    "Plain",
    "PublicKey",
    "Scheme",
    "SecretKey",
    "WeightedSum",
    "key_pair_from_phe",
    "load_public",
    "load_secret",
    "make_scheme",
    "public_key_from_phe",
    "public_key_to_phe",
    "scheme_from_options",
    "secret_key_to_phe",
    "vector_from_phe",
    "vector_to_phe",
]
