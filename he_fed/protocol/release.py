"""What a key holder may release: a sum that honest contributions under the plan can produce.

Without zero-knowledge range proofs nobody can check one encrypted update, so the
key holder checks the decrypted sum instead: the total weight must lie in
``[count, count · max_weight]`` and every weighted sum within ``± weight · clip``
(the schemes check the same exactly, in integers, while decoding). Anything else
is a malicious client or a tampered ciphertext, and is refused with
:class:`~he_fed.exceptions.AggregateRejected`, whose text never carries a
decrypted value.
"""

from __future__ import annotations

import numpy as np

from he_fed.crypto import EncryptedVector, Scheme, SecretKey
from he_fed.exceptions import AggregateRejected, HEFedError

__all__ = ["checked_mean"]


def checked_mean(secret: SecretKey, vector: EncryptedVector, plan: Scheme) -> np.ndarray:
    """Decrypt ``vector`` and return its weighted mean, if honest contributions can produce it.

    Raises
    ------
    AggregateRejected
        If the sum lies outside what the plan lets honest contributions reach.
    """
    try:
        result = secret.decrypt_weighted(vector)
    except AggregateRejected:
        raise
    except HEFedError:
        # The scheme's own range checks; their text may describe the plaintext.
        raise AggregateRejected(
            "the decrypted aggregate lies outside what the plan can represent"
        ) from None
    count, weight = result.count, result.weight
    if not count <= weight <= count * plan.max_weight:
        raise AggregateRejected(
            f"the total weight is not one {count} contributions of weight 1 to "
            f"{plan.max_weight} can have"
        )
    limit = weight * plan.clip * (1 + 1e-9)
    if not np.all(np.abs(result.total) <= limit):
        raise AggregateRejected(
            "a weighted sum exceeds what contributions within the clip bound can reach"
        )
    return np.asarray(result.mean, dtype=np.float64)
