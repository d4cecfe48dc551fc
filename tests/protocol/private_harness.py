"""Private roles wired by hand: a key holder with a budget and clients that add noise."""

from __future__ import annotations

import numpy as np

from he_fed.crypto import KeyPair, Scheme
from he_fed.models import LogisticRegressionGD
from he_fed.privacy import PrivacyBudget, private_setup
from he_fed.protocol import Aggregator, Client, KeyHolder, RunPlan
from tests.protocol.harness import bound

N_FEATURES = 9
PLAN = RunPlan(n_features=N_FEATURES, standardize=False)
_KEYS: dict[Scheme, KeyPair] = {}


def data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, N_FEATURES))
    y = (X @ np.linspace(-1, 1, N_FEATURES) + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def private_roles(
    *,
    level: str = "record",
    sizes=(30, 50, 20),
    min_clients: int = 2,
    epsilon: float = 1.0,
    rounds: int = 3,
    clip: float = 1.0,
    plan: RunPlan = PLAN,
    sampling_rate: float | None = None,
):
    """A key holder with a budget for ``rounds`` releases, an aggregator, and clients."""
    scheme, budget = private_setup(
        "paillier-packed",
        key_bits=1024,
        allow_insecure=True,
        n_clients=len(sizes),
        max_rows=max(sizes),
        size=N_FEATURES + 1,
        target_epsilon=epsilon,
        delta=1e-5,
        rounds=rounds,
        level=level,
        clip=clip,
        min_cohort=min_clients,
        normaliser=sum(sizes) if level == "record" else len(sizes),
        sampling_rate=sampling_rate,
    )
    if scheme not in _KEYS:  # key generation is the slow part: once per plan
        _KEYS[scheme] = scheme.keygen()
    keys = _KEYS[scheme]
    plan = plan if plan.client_plan else bound(plan, privacy=budget.mechanism)
    keyholder = KeyHolder(keys, plan=plan, min_clients=min_clients, privacy=budget)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    clients = [
        Client(
            f"c{i}",
            *data(i, n),
            keyholder.public_key_bytes(),
            keyholder=keyholder.identity_bytes,
            model=LogisticRegressionGD(learning_rate=0.5),
            local_epochs=2,
            classes=np.array([0, 1]),
            allow_insecure=True,
            privacy=budget.mechanism,
        )
        for i, n in enumerate(sizes)
    ]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    return keyholder, aggregator, clients


def budget_of(keyholder: KeyHolder) -> PrivacyBudget:
    assert keyholder.privacy is not None
    return keyholder.privacy
