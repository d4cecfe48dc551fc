"""Roles wired by hand, as an attacker or a test would wire them.

Every helper uses only what the role it plays holds: ``signed_update`` signs with
a client's own identity, ``open_round`` forwards the key holder's ticket.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from he_fed.crypto import PublicKey
from he_fed.exceptions import ConfigurationError
from he_fed.models import LogisticRegressionGD
from he_fed.protocol import (
    Aggregator,
    Client,
    EncryptedUpdate,
    Identity,
    KeyHolder,
    RoundStart,
    RunPlan,
    Task,
    decode,
    encode,
    tasks,
)
from he_fed.protocol.receipts import (
    commitment_payload,
    commitments_digest,
    digest,
    ticket_payload,
    update_payload,
)
from he_fed.protocol.spec import ClientPlan, ticket_plan
from tests.conftest import keys_for

N_FEATURES = 3
#: The client options :func:`client` uses unless told otherwise.
DEFAULTS: dict[str, object] = dict(
    model=LogisticRegressionGD(learning_rate=0.5),
    local_epochs=2,
    classes=np.array([0, 1]),
    allow_insecure=True,
)
_PLAN_FIELDS = {f.name for f in dataclasses.fields(ClientPlan)}


def plan_digest(**client_options: object) -> bytes:
    """The digest of the training plan of a :func:`client` built with these options."""
    options = {**DEFAULTS, **client_options}
    return ClientPlan(**{k: v for k, v in options.items() if k in _PLAN_FIELDS}).digest()  # type: ignore[arg-type]


def bound(plan: RunPlan, **client_options: object) -> RunPlan:
    """``plan`` naming the training plan of clients built with ``client_options``."""
    return dataclasses.replace(plan, client_plan=plan_digest(**client_options))


PLAN = bound(RunPlan(n_features=N_FEATURES, standardize=False))


def data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    y = (X @ [1.0, -2.0, 0.5] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def _options(holder: KeyHolder, **kwargs: object) -> dict[str, object]:
    options: dict[str, object] = dict(keyholder=holder.identity_bytes, **DEFAULTS)
    options.update(kwargs)
    return options


def client(holder: KeyHolder, name: str, seed: int, n: int, **kwargs: object) -> Client:
    """A client trusting ``holder``, with ``n`` rows of synthetic data."""
    options = _options(holder, **kwargs)
    public = options.pop("public_key", holder.public_key_bytes())
    return Client(name, *data(seed, n), public, **options)  # type: ignore[arg-type]


def roles(scheme_name: str, sizes=(30, 50, 20), min_clients: int | None = 2, plan=PLAN, keys=None):
    """A key holder, an aggregator and one client per size, registered with both.

    The key holder has the session's keys for ``scheme_name``, or ``keys``; a
    ``plan`` that names no client plan is made to name :func:`client`'s default.
    """
    keys = keys_for(scheme_name) if keys is None else keys
    plan = plan if plan.client_plan else bound(plan)
    keyholder = KeyHolder(keys, plan=plan, min_clients=min_clients)
    aggregator = Aggregator(
        keyholder.aggregation_key_bytes(),
        plan=plan,
        keyholder=keyholder.identity_bytes,
        allow_insecure=True,
    )
    clients = [client(keyholder, f"c{i}", i, n) for i, n in enumerate(sizes)]
    for c in clients:
        keyholder.register(c.client_id, c.verify_key)
        aggregator.register(c.client_id, c.verify_key)
    return keyholder, aggregator, clients


def open_round(keyholder: KeyHolder, aggregator: Aggregator, task: Task = Task.TRAIN) -> bytes:
    """The key holder's next ticket, opened by the aggregator; the bytes clients get."""
    return aggregator.open_round(keyholder.start_round(task))


def signed_update(c: Client, start: bytes, vector, *, task: Task | None = None) -> bytes:
    """An update carrying any vector, validly signed by ``c``'s own identity."""
    ticket = decode(start, RoundStart)
    task = ticket.task if task is None else task
    data_bytes = vector.to_bytes()
    fields = dict(
        federation=ticket.federation,
        round=ticket.round,
        task=task,
        client_id=c.client_id,
        fingerprint=vector.key.fingerprint,
    )
    try:
        binding = vector.binding()
    except ConfigurationError:  # a sum or a vector read from bytes: its maker's is unknown
        binding = b""
    commitment = commitments_digest(vector.commitment(), binding)
    identity = c._identity
    signature = identity.sign(
        update_payload(**fields, vector_digest=digest(data_bytes), commitment_digest=commitment)
    )
    payload = commitment_payload(**fields, commitment_digest=commitment)
    alone = identity.sign(payload)
    try:
        proof = vector.prove_commitment(payload)
    except ConfigurationError:  # a sum or a vector read from bytes: no randomness to prove
        proof = b""
    return encode(
        EncryptedUpdate(
            ticket.round, task, c.client_id, data_bytes, signature, alone, proof, binding
        )
    )


def ticket(
    signer: Identity,
    round_id: int,
    weights,
    *,
    key: PublicKey,
    task: Task = Task.TRAIN,
    center=(),
    scale=(),
    plan: bytes = PLAN.client_plan,
) -> bytes:
    """A round start for ``key`` signed by ``signer``, as a key holder with that identity
    and a run plan naming the clients' plan ``plan`` signs one."""
    unsigned = RoundStart(
        bytes(16), round_id, task, key.fingerprint, weights, center, scale,
        ticket_plan(plan, key.scheme),
    )  # fmt: skip
    signature = signer.sign(ticket_payload(unsigned.signed_bytes()))
    return encode(dataclasses.replace(unsigned, signature=signature))


def local_delta(c: Client, weights: np.ndarray) -> np.ndarray:
    """What a client's update should be, recomputed in the clear."""
    model = LogisticRegressionGD(learning_rate=0.5, max_iter=2).fit(
        c._X, c._y, coef_init=weights[:-1], intercept_init=weights[-1], classes=[0, 1]
    )
    return np.append(model.coef_.ravel(), model.intercept_) - weights


class SplitCohort:
    """Four registered clients, standardised Paillier, and an aggregator with a colluder.

    The victim holds the first ``split`` of 80 honest rows, alice the rest (the same
    rows whatever the split); bob never answers; the colluder answers as it likes.
    The key holder's default policy (3 of 4) makes {victim, alice, colluder} the
    smallest cohort it decrypts, and the first release pins it.
    """

    def __init__(self, split: int, local_epochs: int) -> None:
        plan = bound(RunPlan(n_features=N_FEATURES, standardize=True), local_epochs=local_epochs)
        self.keyholder = KeyHolder(keys_for("paillier"), plan=plan)
        self.aggregator = Aggregator(
            self.keyholder.aggregation_key_bytes(),
            plan=plan,
            keyholder=self.keyholder.identity_bytes,
            allow_insecure=True,
        )
        X, y = (np.concatenate(p) for p in zip(data(11, 30), data(12, 50), strict=True))
        rows = {"victim": slice(0, split), "alice": slice(split, 80)}
        clients = [
            Client(
                name,
                X[part],
                y[part],
                self.keyholder.public_key_bytes(),
                **_options(self.keyholder, local_epochs=local_epochs),
            )
            for name, part in rows.items()
        ]
        self.honest = clients
        self.colluder = client(self.keyholder, "colluder", 14, 10)
        for c in [*clients, client(self.keyholder, "bob", 13, 20), self.colluder]:
            self.keyholder.register(c.client_id, c.verify_key)
            self.aggregator.register(c.client_id, c.verify_key)

    def release(self, task: Task, values, weight: int) -> np.ndarray:
        """One round: the honest clients' updates and the colluder's ``values`` at ``weight``."""
        start = open_round(self.keyholder, self.aggregator, task)
        for c in self.honest:
            self.aggregator.add(c.participate(start).update)
        key = tasks.plan_for(self.colluder._key, task)
        vector = key.encrypt(np.asarray(values, dtype=np.float64), weight=weight)
        self.aggregator.add(signed_update(self.colluder, start, vector))
        finished = self.aggregator.finish_round()
        return self.aggregator.apply(self.keyholder.decrypt_aggregate(finished)).mean
