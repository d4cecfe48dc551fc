"""Which settings of a federated estimator go together, and the scheme they build.

Private: :mod:`he_fed.federated` calls these before any key is generated, so a
combination that is not supported yet fails in one line, not after training.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from he_fed._validation import check_bool, check_float, check_int
from he_fed.crypto import Scheme, scheme_from_options
from he_fed.data import iid_groups
from he_fed.exceptions import ConfigurationError

__all__ = [
    "check_executor",
    "check_private",
    "check_settings",
    "check_unused",
    "client_groups",
    "scheme_for",
]


def client_groups(est: Any, n_rows: int, groups: Any) -> np.ndarray:
    """Which client holds each row: ``groups``, or rows dealt IID to ``n_clients``.

    Raises
    ------
    ConfigurationError
        If neither is given, or ``groups`` has the wrong shape.
    """
    if groups is None:
        if est.n_clients is None:
            raise ConfigurationError(
                "fit needs groups= (which client holds each row) or the estimator's "
                "n_clients= (rows dealt IID); inside cross_val_score or GridSearchCV, "
                "turn on sklearn.set_config(enable_metadata_routing=True) and call "
                "set_fit_request(groups=True)"
            )
        check_int("n_clients", est.n_clients, low=1)
        groups = iid_groups(n_rows, est.n_clients, random_state=est.random_state)
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise ConfigurationError(f"groups has shape {groups.shape}, expected ({n_rows},)")
    return groups


#: Integers as scikit-learn takes them, numpy's included (a parameter grid's values).
_INTS = (int, np.integer)


def check_settings(est: Any) -> None:
    """Refuse switches, seeds and rates of the wrong type before anything runs.

    ``standardize="no"`` is true, so it standardised; a seed past ``2**32``, a
    ``dropout`` given as text or ``executor=None`` reached numpy or the executors
    and came out as their own errors (an audit).
    """
    check_bool("standardize", est.standardize)
    check_bool("allow_insecure", est.allow_insecure)
    if est.random_state is not None:
        check_int("random_state", est.random_state, low=0, high=2**32 - 1, types=_INTS)
    check_float("dropout", est.dropout, low=0, high=1)
    if est.workers is not None:
        check_int("workers", est.workers, low=1, bounds=">= 1 (or None)", types=_INTS)
    if not isinstance(est.executor, str) and not hasattr(est.executor, "name"):
        raise ConfigurationError(
            f"executor must be a name ('inprocess', 'processes', 'flower') or an Executor, "
            f"not {est.executor!r}"
        )


def check_executor(est: Any) -> None:
    """Refuse what the Flower key-holder policy does not carry yet."""
    name = est.executor if isinstance(est.executor, str) else est.executor.name
    if name == "flower" and (est.validation_split or est.server_optimizer != "avg"):
        raise ConfigurationError(
            "federated evaluation and server optimizers run in process or in worker "
            "processes; the Flower key-holder policy does not carry them yet"
        )


def check_unused(est: Any) -> None:
    """Refuse differential privacy's settings on a fit without ``dp_epsilon``.

    Raises
    ------
    ConfigurationError
        Naming the first one whose value is not its default.
    """
    if est.dp_epsilon is not None:
        return
    defaults = inspect.signature(type(est).__init__).parameters
    for name in ("dp_delta", "dp_level", "dp_clip", "dp_noise_multiplier", "dp_sampling_rate"):
        if getattr(est, name) != defaults[name].default:
            raise ConfigurationError(f"{name} sets differential privacy; add dp_epsilon")
    for name in ("feature_bounds", "target_bounds"):
        if getattr(est, name) is not None:
            raise ConfigurationError(
                f"{name} are the public bounds of a private fit; add dp_epsilon, or leave "
                "them out (a fit without privacy standardises with federated statistics)"
            )


def check_private(est: Any) -> None:
    """Refuse what a private fit does not account for yet, or would not use."""
    if est.validation_split:
        raise ConfigurationError(
            "dp_epsilon with validation_split is not supported yet: evaluation releases "
            "are not charged to the budget"
        )
    # A private fit clips to dp_clip, and at record level takes one DP-SGD step per
    # round: a setting it would ignore is refused, not silently unused.
    unused = ("clip", "local_epochs", "batch_size", "prox_mu")[
        : 4 if est.dp_level == "record" else 1
    ]
    defaults = inspect.signature(type(est).__init__).parameters
    changed = [name for name in unused if getattr(est, name) != defaults[name].default]
    if changed:
        given = ", ".join(f"{name}={getattr(est, name)!r}" for name in changed)
        raise ConfigurationError(
            f"dp_epsilon does not use {given}: a private fit clips to dp_clip"
            + (" and takes one DP-SGD step a round (dp_level='record')" if len(unused) > 1 else "")
            + "; leave them at their defaults"
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
