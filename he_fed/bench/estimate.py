"""``he-fed estimate``: predict a run's cost before running it.

A short calibration times the real he-fed operations on this machine, at two sizes
each, for one scheme and its parameters: encrypting, serializing, committing and
signing (a client); loading, verifying and adding (the aggregator); checking
receipts and decrypting (the key holder); and local training. Each cost is fitted
as ``a + b·u``, where ``u`` counts ciphertexts (or values for ``plain``), which is
how the work grows. The calibration is cached in a JSON file, keyed by scheme,
parameters, machine and he-fed version, and redone on request.

A round run in process costs, with ``K`` clients and ``u`` units per update::

    K·(train + encrypt + serialize + commit and sign) + K·(load + verify + add)
        + serialize the sum + (verify K receipts + sum K commitments + decrypt)

The benchmark compares these predictions with measured runs and reports the error.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from he_fed import __version__
from he_fed.bench.measure import timed
from he_fed.crypto import CKKS, PackedPaillier, Paillier, Scheme
from he_fed.experiment import environment
from he_fed.models import LogisticRegressionGD
from he_fed.protocol.receipts import Identity, Registry, digest, signed_payload
from he_fed.protocol.messages import EncryptedUpdate, Receipt, RoundStart, Task, encode

__all__ = ["Calibration", "Estimate", "calibrate", "estimate", "load_calibration", "units"]

_OPERATIONS = (
    "encrypt", "serialize", "sign", "load", "verify_add", "serialize_sum", "commit_sum", "decrypt"
)


def units(scheme: Scheme, size: int) -> int:
    """How many ciphertexts (values, for ``plain``) an update of ``size`` values takes."""
    if isinstance(scheme, (Paillier, PackedPaillier)):
        return scheme.ciphertexts_for(size)
    if isinstance(scheme, CKKS):
        return math.ceil((size + 1) / scheme.slots)
    return size + 1


def _sizes_for(scheme: Scheme) -> tuple[int, int]:
    """Two update sizes: one unit, and several."""
    if isinstance(scheme, Paillier):
        return 8, 64
    if isinstance(scheme, PackedPaillier):
        return scheme.layout.slots - 1, 6 * scheme.layout.slots - 1
    if isinstance(scheme, CKKS):
        return scheme.slots - 1, 4 * scheme.slots - 1
    return 100, 20_000


@dataclass(frozen=True)
class Calibration:
    """Fitted costs ``a + b·u`` (seconds) and bytes per update, for one scheme."""

    scheme: str
    params: str
    machine: str
    version: str
    costs: dict[str, tuple[float, float]]
    train: tuple[float, float]  # a + b·(samples·features·epochs)
    bytes_up: tuple[float, float]
    created: str
    #: Protocol bookkeeping per round, a + b·clients: decoding round starts, cloning
    #: models, applying the aggregate, evaluating. Measured on ``plain`` runs.
    overhead: tuple[float, float] = (0.0, 0.0)

    def cost(self, operation: str, u: float) -> float:
        """Predicted seconds of ``operation`` on ``u`` units."""
        a, b = self.costs[operation]
        return max(0.0, a + b * u)


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    (u1, t1), (u2, t2) = points
    slope = (t2 - t1) / (u2 - u1) if u2 != u1 else 0.0
    slope = max(slope, 0.0)
    return max(t1 - slope * u1, 0.0), slope


def _median_time(fn: Any, repeats: int) -> float:
    return float(np.median([timed(fn)[0] for _ in range(repeats)]))


def calibrate(scheme: Scheme, *, repeats: int = 3, with_overhead: bool = True) -> Calibration:
    """Time the he-fed operations for ``scheme`` on this machine (a few seconds)."""
    keys = scheme.keygen()
    public, secret = keys.public, keys.secret
    aggregation = public.aggregation_key()
    identity = Identity()
    registry = Registry({"c": identity.public_bytes})
    rng = np.random.default_rng(0)
    points: dict[str, list[tuple[float, float]]] = {op: [] for op in _OPERATIONS}
    sizes: list[tuple[float, float]] = []
    public.encrypt(np.zeros(1))  # tables and caches, outside timing
    for size in _sizes_for(scheme):
        u = units(scheme, size)
        x = rng.uniform(-scheme.clip, scheme.clip, size)
        vector = public.encrypt(x)
        data = vector.to_bytes()

        def sign(vector: Any = vector, data: bytes = data) -> bytes:
            payload = signed_payload(
                round=1, task=Task.TRAIN, client_id="c", fingerprint=public.fingerprint,
                vector_digest=digest(data), commitment_digest=digest(vector.commitment()),
            )
            return identity.sign(payload)

        signature = sign()
        sizes.append((u, len(encode(EncryptedUpdate(1, Task.TRAIN, "client-0", data, signature)))))
        loaded = aggregation.load_vector(data)
        receipt = Receipt("c", digest(data), loaded.commitment(), signature)

        def verify_add(loaded: Any = loaded, receipt: Receipt = receipt) -> Any:
            registry.verify(receipt, round=1, task=Task.TRAIN, fingerprint=public.fingerprint)
            return loaded + loaded

        total = loaded + loaded
        total_bytes = total.to_bytes()
        commitments = [loaded.commitment()] * 8
        timings = {
            "encrypt": _median_time(lambda x=x: public.encrypt(x), repeats),
            "serialize": _median_time(vector.to_bytes, repeats),
            "sign": _median_time(sign, repeats),
            "load": _median_time(lambda d=data: aggregation.load_vector(d), repeats),
            "verify_add": _median_time(verify_add, repeats),
            "serialize_sum": _median_time(total.to_bytes, repeats),
            # per contributor: sum 8 commitments, divide by 8
            "commit_sum": _median_time(
                lambda c=commitments, s=size: public.sum_commitments(c, s), repeats
            ) / len(commitments),
            "decrypt": _median_time(
                lambda b=total_bytes: secret.decrypt(public.load_vector(b)), repeats
            ),
        }
        for op, seconds in timings.items():
            points[op].append((u, seconds))
    train_points = []
    for n, d in ((200, 50), (200, 2000)):
        X, y = rng.normal(size=(n, d)), rng.integers(0, 2, n)
        model = LogisticRegressionGD(learning_rate=0.5, max_iter=5)
        seconds = _median_time(lambda X=X, y=y, m=model: m.fit(X, y), repeats)
        train_points.append((n * d * 5, seconds))
    return Calibration(
        overhead=_cached_overhead() if with_overhead else (0.0, 0.0),
        scheme=scheme.name,
        params=scheme.params_text(),
        machine=_machine(),
        version=__version__,
        costs={op: _fit(p) for op, p in points.items()},
        train=_fit(train_points),
        bytes_up=_fit(sizes),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _protocol_overhead(rounds: int = 8) -> tuple[float, float]:
    """Per-round cost of everything but crypto and training, as ``a + b·clients``.

    Runs tiny ``plain`` federations with 2 and 8 clients and subtracts what the
    calibrated operations already account for.
    """
    from he_fed.crypto import Plain
    from he_fed.federated import FederatedLogisticRegression
    from sklearn.datasets import make_classification

    points = []
    for clients in (2, 2, 8):  # the first run warms imports and caches; it is discarded
        scheme = Plain(max_clients=clients, max_weight=64)
        X, y = make_classification(n_samples=40 * clients, n_features=30, random_state=0)
        stamps: list[float] = []
        model = FederatedLogisticRegression(
            scheme=scheme, rounds=rounds, local_epochs=1, standardize=False
        )
        start = time.perf_counter()
        model.fit(X, y, np.arange(len(y)) % clients,
                  callback=lambda _: stamps.append(time.perf_counter()))
        measured = float(np.median(np.diff([start, *stamps])[1:]))
        points.append((clients, measured))
    points = points[1:]
    base = calibrate(Plain(max_clients=8, max_weight=64), repeats=3, with_overhead=False)
    modelled = [
        estimate(Plain(), base, features=30, clients=k, rounds=1, samples_per_client=40)
        .time_per_round_s for k, _ in points
    ]
    return _fit([(k, max(0.0, t - m)) for (k, t), m in zip(points, modelled)])


def _cached_overhead() -> tuple[float, float]:
    """The protocol overhead, measured once per machine and he-fed version."""
    key = f"protocol|{_machine()}|{__version__}"
    cache = _read_cache()
    if key not in cache:
        cache[key] = list(_protocol_overhead())
        _write_cache(cache)
    a, b = cache[key]
    return float(a), float(b)


def _machine() -> str:
    env = environment()
    return f"{env['cpu']} x{env['cpu_count']}"


def _read_cache() -> dict[str, Any]:
    path = _cache_file()
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict[str, Any]) -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache, indent=1), encoding="utf-8")


def _cache_file() -> Path:
    root = os.environ.get("HE_FED_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "he-fed"
    )
    return Path(root) / "calibration.json"


def load_calibration(scheme: Scheme, *, refresh: bool = False) -> Calibration:
    """The cached calibration for ``scheme`` on this machine, measuring it if needed."""
    key = f"{scheme.name}|{scheme.params_text()}|{_machine()}|{__version__}"
    cache = _read_cache()
    if refresh:
        cache.pop(f"protocol|{_machine()}|{__version__}", None)
        _write_cache(cache)
    elif key in cache:
        entry = dict(cache[key])
        entry["costs"] = {k: tuple(v) for k, v in entry["costs"].items()}
        for name in ("train", "bytes_up", "overhead"):
            entry[name] = tuple(entry[name])
        return Calibration(**entry)
    calibration = calibrate(scheme)
    cache = _read_cache()
    cache[key] = asdict(calibration)
    _write_cache(cache)
    return calibration


@dataclass(frozen=True)
class Estimate:
    """Predicted cost of a run (in process), before running it.

    Attributes
    ----------
    time_per_round_s : float
        Seconds per training round.
    phases : dict of str to float
        Seconds per round by phase: train, encrypt, sign, serialize, aggregate, decrypt
        (the round also pays the calibrated protocol overhead).
    bytes_up_per_client, bytes_down_per_client : int
        Bytes each client sends and receives per round.
    total_s : float
        All rounds.
    units : int
        Ciphertexts (values, for plain) per update.
    """

    time_per_round_s: float
    phases: dict[str, float]
    bytes_up_per_client: int
    bytes_down_per_client: int
    total_s: float
    units: int


def estimate(
    scheme: Scheme,
    calibration: Calibration,
    *,
    features: int,
    clients: int,
    rounds: int,
    samples_per_client: int = 100,
    local_epochs: int = 1,
    standardize: bool = False,
) -> Estimate:
    """Predict time per round, bytes per client and total time of a training run.

    ``standardize`` only changes the bytes each round start carries (the two
    statistics rounds before training are not included in the per-round figures).
    """
    size = features + 1
    u = units(scheme, size)
    cal = calibration
    per_client_train = max(0.0, cal.train[0] + cal.train[1] * samples_per_client * features
                           * local_epochs)
    phases = {
        "train": clients * per_client_train,
        "encrypt": clients * cal.cost("encrypt", u),
        "sign": clients * cal.cost("sign", u),
        "serialize": clients * cal.cost("serialize", u),
        "aggregate": clients * (cal.cost("load", u) + cal.cost("verify_add", u))
        + cal.cost("serialize_sum", u),
        "decrypt": cal.cost("decrypt", u) + clients * cal.cost("commit_sum", u),
    }
    per_round = sum(phases.values()) + cal.overhead[0] + cal.overhead[1] * clients
    bytes_up = round(cal.bytes_up[0] + cal.bytes_up[1] * u)
    stats = np.zeros(features if standardize else 0)
    bytes_down = len(encode(RoundStart(1, Task.TRAIN, np.zeros(size), stats, stats)))
    return Estimate(per_round, phases, bytes_up, bytes_down, rounds * per_round, u)
