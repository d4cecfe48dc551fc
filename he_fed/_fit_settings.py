"""Which settings of a federated estimator go together, and the scheme they build.

Private: :mod:`he_fed.federated` calls these before any key is generated, so a
combination that is not supported yet fails in one line, not after training.
"""

from __future__ import annotations

from typing import Any

from he_fed.crypto import Scheme, scheme_from_options
from he_fed.exceptions import ConfigurationError

__all__ = ["check_executor", "check_private", "check_resumable", "scheme_for"]


def check_executor(est: Any) -> None:
    """Refuse what the Flower key-holder policy does not carry yet."""
    name = est.executor if isinstance(est.executor, str) else est.executor.name
    if name == "flower" and (est.validation_split or est.server_optimizer != "avg"):
        raise ConfigurationError(
            "federated evaluation and server optimizers run in process or in worker "
            "processes; the Flower key-holder policy does not carry them yet"
        )


def check_private(est: Any) -> None:
    """Refuse what a private fit does not account for yet."""
    if est.validation_split:
        raise ConfigurationError(
            "dp_epsilon with validation_split is not supported yet: evaluation releases "
            "are not charged to the budget"
        )


def check_resumable(est: Any) -> None:
    """Refuse a checkpoint for what it does not save yet."""
    if est.threshold is not None:
        raise ConfigurationError(
            "checkpoint= with threshold= is not supported yet: each share holder "
            "keeps its own state, which a checkpoint does not save"
        )
    if est.validation_split or est.server_optimizer != "avg" or est.dp_epsilon is not None:
        raise ConfigurationError(
            "checkpoint= with federated evaluation, differential privacy or a server "
            "optimizer other than avg is not supported yet: a checkpoint does not save "
            "their state"
        )


def scheme_for(est: Any, sizes: list[int]) -> Scheme:
    if isinstance(est.scheme, Scheme):
        return est.scheme
    max_weight = est.max_weight
    if max_weight is None:
        max_weight = 1 << (max(sizes) - 1).bit_length()
    return scheme_from_options(
        str(est.scheme),
        clip=est.clip,
        max_clients=len(sizes),
        max_weight=max_weight,
        key_bits=est.key_bits,
        ckks_preset=est.ckks_preset,
        allow_insecure=est.allow_insecure,
    )
