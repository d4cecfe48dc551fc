"""``he-fed estimate``: predict a run's cost before running it.

The calibration runs the real roles on this machine: tiny in-process federations
of the scheme in question, at two update sizes and two client counts, and times
every round phase exactly as a run reports it. Each phase is then fitted with how
it grows, in ``u`` (ciphertexts per update, or values for ``plain``) and ``K``
(clients):

* per client, ``a + b·u``: encrypt, commit and sign, serialize;
* per client, ``a + b·(samples·features·epochs)``: local training, fitted on the
  federations above and on an unencrypted one with large updates, for the slope;
* per round, ``K·(a + b·u) + c + d·u``: aggregate (load, verify, add; then the sum);
* per round, ``a + b·u + K·(c + d·u)``: the key holder's receipt checks and decryption;
* per round, ``a + b·(K·samples·features)``: evaluating the model on the clients'
  rows after the round, timed directly at two sizes;
* per round, ``a + b·K``: what is left of the wall clock (round starts, applying
  the mean).

Every update proves its weight and each value's range, and those proofs grow with
the values' bits, not with the ciphertexts (a CKKS ciphertext holds thousands of
values). They are timed apart, on the scheme's own keys at two small layouts
(:func:`_proof_fit`), in the work ``w`` of :func:`_proof_work` (the bits over
``log2`` of the values): a client's proof ``a + b·w``, the aggregator's check of one
``a + b·w``, and the key holder's check of a round's receipts in one batch
``a + b·w + K·(c + d·w)``. The federations' phases are fitted with those
subtracted, and a prediction adds them back at the run's own ``w``.

Long Paillier updates (at least 512 ciphertexts) are encrypted by worker
processes on every core, and the prediction divides their encryption time
accordingly. Every calibration runs under one encoding plan (:func:`calibration_scheme`):
what it times depends on the scheme and its key parameters, not on the run's clip,
client count or sample counts, so one calibration serves them all. It is cached in
a JSON file, keyed by scheme, key parameters, machine and he-fed version, and
redone on request.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from he_fed._version import __version__
from he_fed.bench.measure import timed
from he_fed.crypto import (
    CKKS,
    PackedPaillier,
    Paillier,
    Plain,
    Scheme,
    _ckks_binding,
    _value_range,
    _weight_range,
)
from he_fed.crypto.base import DEFAULT_CLIP
from he_fed.crypto.paillier import PARALLEL_MIN_CIPHERTEXTS
from he_fed.exceptions import ConfigurationError
from he_fed.experiment import environment
from he_fed.protocol.messages import RoundStart

__all__ = [
    "Calibration",
    "Estimate",
    "calibrate",
    "calibration_scheme",
    "estimate",
    "load_calibration",
    "units",
]

_T = TypeVar("_T")
_ROWS = 8  # rows per calibration client: training stays a small, fitted share
_PARALLEL_EFFICIENCY = 0.9


def units(scheme: Scheme, size: int) -> int:
    """How many ciphertexts (values, for ``plain``) an update of ``size`` values takes."""
    if isinstance(scheme, (Paillier, PackedPaillier, CKKS)):
        return scheme.ciphertexts_for(size)
    return size + 1


def _features_for(scheme: Scheme) -> tuple[int, int]:
    """Two model sizes: an update of one unit, and one of enough units to fix the slope."""
    if isinstance(scheme, Paillier):
        return 8, 48
    if isinstance(scheme, PackedPaillier):
        slots = scheme.layout.slots  # every bit of every value is range-proven: 4 chunks
        return max(1, slots - 2), 4 * slots - 2
    if isinstance(scheme, CKKS):
        # One ciphertext, then two: the intercept, the weight and the binding's blinding
        # fill the first out. Every value is range-proven, so the second size is kept
        # as small as two ciphertexts allow (four ciphertexts took half an hour).
        per, tail = scheme.values_per_ciphertext, 1 + scheme.encoded_length(0)
        return 1, per - tail + 1
    return 100, 20_000


@dataclass(frozen=True)
class Calibration:
    """Fitted costs (seconds) of every round phase, and bytes per update, for one scheme."""

    scheme: str
    params: str
    machine: str
    version: str
    client: dict[str, list[float]]  # phase -> [a, b]: per client, a + b·u
    train: list[float]  # per client, a + b·(samples·features·epochs)
    aggregate: list[float]  # per round, K·(a + b·u) + c + d·u
    decrypt: list[float]  # per round, a + b·u + K·(c + d·u)
    evaluate: list[float]  # per round, a + b·(K·samples·features)
    overhead: list[float]  # per round, a + b·K
    bytes_up: list[float]  # per update, a + b·u
    prove: list[float]  # per update (in sign), a + b·w (w: _proof_work)
    verify: list[float]  # per update (in aggregate), a + b·w
    check: list[float]  # per round (in decrypt), a + b·w + K·(c + d·w)
    created: str


def _solve(rows: list[list[float]], values: list[float]) -> list[float]:
    """Least-squares coefficients, clipped at zero (costs are not negative)."""
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    return [max(0.0, float(v)) for v in solution]


def calibration_scheme(scheme: Scheme) -> Scheme:
    """``scheme`` under the one encoding plan every calibration measures.

    The calibration federations re-plan for their own 2 and 5 clients of
    ``_ROWS`` rows anyway; fixing the clip too makes the calibrated scheme, and
    so the cache key, depend on the scheme and its key parameters alone.
    """
    return scheme.with_plan(clip=DEFAULT_CLIP, max_clients=5, max_weight=_ROWS)


def _layout(scheme: Scheme, size: int) -> _value_range.Layout | None:
    """The values' range proof's layout of an update of ``size`` values (None for plain)."""
    if isinstance(scheme, Plain):
        return None
    if isinstance(scheme, CKKS):
        return _ckks_binding.value_layout(scheme, size)
    return scheme.value_layout(size)  # type: ignore[attr-defined,no-any-return]


def _proof_shape(scheme: Scheme, size: int) -> tuple[int, int, int]:
    """Bytes, bits and values of the values' range proof of an update of ``size`` values,
    from the plan's layout of one value (:func:`~he_fed.crypto._value_range.repeated_shape`);
    zeros for ``plain``."""
    one = _layout(scheme, 1)
    return (0, 0, 0) if one is None else _value_range.repeated_shape(one, size)


def _proof_bytes(scheme: Scheme, size: int) -> int:
    """Bytes of an update's weight and values' range proofs, exactly: the weight's is set
    by ``max_weight``, the values' by their count and the plan's precision."""
    if isinstance(scheme, Plain):
        return 0
    return _weight_range.linked_size(scheme.max_weight) + _proof_shape(scheme, size)[0]


def _proof_work(scheme: Scheme, size: int) -> float:
    """The work of an update's proofs: the bits its values' range proof commits to, over
    ``log2`` of its values.

    Proving and checking are products of powers over the values' bases, whose cost
    by buckets grows as ``n·b / log2(n)`` for ``n`` bases of ``b``-bit exponents
    (:func:`~he_fed.crypto._multiexp.bucket_window`): a line in the bits alone,
    fitted at small updates, overestimated an update of 3,000 values by half.
    """
    _, bits, values = _proof_shape(scheme, size)
    return bits / math.log2(values + 1) if values else 0.0


def _proof_sizes(scheme: Scheme) -> tuple[int, int]:
    """Two update sizes (values) whose proofs fix the lines in ``w``.

    The larger reaches the largest calibration federation's update where that is
    wider (CKKS: two ciphertexts), so that its proofs are interpolated, not
    extrapolated, when the federations' phases are fitted.
    """
    if isinstance(scheme, Paillier):
        return 8, 48
    return 40, max(1000, _features_for(scheme)[1] + 1)


def _proof_fit(scheme: Scheme, rng: np.random.Generator) -> tuple[list[float], ...]:
    """The proofs' costs in :func:`_proof_work`, timed on ``scheme``'s own keys (fastest of 3).

    Returns ``prove`` and ``verify`` as ``[a, b]`` (one update) and ``check`` as
    ``[a, b, c, d]`` (a round's receipts in one batch, ``a + b·w + K·(c + d·w)``).
    Zeros for ``plain``, which proves nothing.
    """
    if isinstance(scheme, Plain):
        return [0.0, 0.0], [0.0, 0.0], [0.0] * 4
    public = _planned(scheme, 3).keygen().public
    prove_points, verify_points, check_points = [], [], []
    for size in _proof_sizes(scheme):
        work = _proof_work(public.scheme, size)
        pins: dict[Any, Any] = {}
        claims, proving = [], []
        for k in range(3):
            vector = public.encrypt(rng.uniform(-1, 1, size), weight=_ROWS)
            context = b"calibration|%d|%d" % (size, k)
            if not pins:
                vector.prove_commitment(context, pins)  # the client's pin, made once
            seconds, proof = timed(partial(vector.prove_commitment, context, pins))
            proving.append(seconds)
            claims.append((vector.commitment(), proof, context, vector.binding()))
        commitment, proof, context, binding = claims[0]
        one = partial(public.verify_commitment_proof, commitment, proof, size, context)
        prove_points.append((work, min(proving)))
        verify_points.append((work, _fastest(partial(one, binding=binding))[0]))
        for count in (1, 3):
            batch = partial(public.verify_commitment_proofs, claims[:count], size)
            check_points.append(([1.0, work, count, count * work], _fastest(batch)[0]))
    return (
        _solve([[1.0, b] for b, _ in prove_points], [t for _, t in prove_points]),
        _solve([[1.0, b] for b, _ in verify_points], [t for _, t in verify_points]),
        _solve([r for r, _ in check_points], [t for _, t in check_points]),
    )


def _fastest(fn: Callable[[], _T]) -> tuple[float, _T]:
    """The fastest of three timed calls of ``fn``, and its result."""
    return min((timed(fn) for _ in range(3)), key=lambda pair: pair[0])


def _check_cost(fit: list[float], work: float, clients: int) -> float:
    return fit[0] + fit[1] * work + clients * (fit[2] + fit[3] * work)


def _planned(scheme: Scheme, clients: int) -> Scheme:
    """``scheme`` re-planned for a calibration federation of ``clients`` clients."""
    return scheme.with_plan(max_clients=max(clients, 2), max_weight=_ROWS)


def _mini_round(scheme: Scheme, clients: int, features: int, rng: np.random.Generator) -> Any:
    """Timed training rounds of a tiny federation, run as the estimators run one.

    Returns the median round's phase timings, its upload size and its wall time
    (which includes evaluating the model after the round, as the estimators do).
    """
    from he_fed.federated import FederatedLogisticRegression

    X = rng.normal(size=(clients * _ROWS, features))
    y = np.arange(len(X)) % 2
    stamps: list[float] = []
    model = FederatedLogisticRegression(scheme=scheme, rounds=4, local_epochs=1, standardize=False)
    start = time.perf_counter()
    model.fit(
        X, y, np.arange(len(X)) % clients, callback=lambda _: stamps.append(time.perf_counter())
    )
    walls = np.diff([start, *stamps])[1:]  # the first round warms tables and caches
    middle = int(np.argsort(walls)[len(walls) // 2])
    entry = model.history_[1 + middle]
    return entry.timings, entry.bytes_up, float(walls[middle])


def _evaluate_fit(rng: np.random.Generator) -> list[float]:
    """Evaluating the model on ``n`` rows of ``d`` features, ``a + b·n·d`` (fastest of 3)."""
    from he_fed.federated import FederatedLogisticRegression

    evaluator = FederatedLogisticRegression()
    evaluator.classes_ = np.array([0, 1])
    points = []
    for n, d in ((_ROWS, 50), (400, 5000)):
        X, y = rng.normal(size=(n, d)), np.arange(n) % 2
        coef = rng.normal(size=d) / np.sqrt(d)
        best = min(
            timed(lambda X=X, y=y, c=coef: evaluator._metrics(X, y, c, 0.0))[0] for _ in range(3)
        )
        points.append((n * d, best))
    return _solve([[1.0, w] for w, _ in points], [s for _, s in points])


def _train_points(rng: np.random.Generator) -> list[tuple[float, float]]:
    """Per-client training in unencrypted federations with large updates: the slope."""
    clients, features = 4, 50_000
    scheme = Plain(max_clients=clients, max_weight=_ROWS)
    runs = [_mini_round(scheme, clients, features, rng) for _ in range(2)]
    return [(_ROWS * features, min(run[0]["train"] for run in runs) / clients)]


def _linear(fit: list[float], work: float) -> float:
    return fit[0] + fit[1] * work


def calibrate(scheme: Scheme) -> Calibration:
    """Time the real roles of ``scheme`` on this machine (a minute, several for CKKS).

    Every configuration runs three times and each phase keeps its fastest time: noise on a
    shared machine only ever adds time. The plan of ``scheme`` does not matter
    (see :func:`calibration_scheme`).
    """
    scheme = calibration_scheme(scheme)
    rng = np.random.default_rng(0)
    evaluate_fit = _evaluate_fit(rng)
    train_points = _train_points(rng)
    prove_fit, verify_fit, check_fit = _proof_fit(scheme, rng)
    client_points: dict[str, list[tuple[float, float]]] = {
        p: [] for p in ("encrypt", "sign", "serialize")
    }
    aggregate_points, decrypt_points = [], []
    overhead_points, size_points = [], []
    for features in _features_for(scheme):
        for clients in (2, 5):
            planned = _planned(scheme, clients)
            u = units(planned, features + 1)
            runs = [_mini_round(planned, clients, features, rng) for _ in range(3)]
            t = {p: min(run[0][p] for run in runs) for p in runs[0][0]}
            rest = min(run[2] - sum(run[0].values()) for run in runs)
            # The proofs are fitted apart, in their work: what is left grows with u.
            work = _proof_work(planned, features + 1)
            t["sign"] -= clients * _linear(prove_fit, work)
            t["aggregate"] -= clients * _linear(verify_fit, work)
            t["decrypt"] -= _check_cost(check_fit, work, clients)
            bytes_up = runs[0][1] - _proof_bytes(planned, features + 1)
            for phase in client_points:
                client_points[phase].append((u, t[phase] / clients))
            aggregate_points.append(([clients, clients * u, 1.0, u], t["aggregate"]))
            decrypt_points.append(([1.0, u, clients, clients * u], t["decrypt"]))
            train_points.append((_ROWS * features, t["train"] / clients))
            overhead_points.append(
                ([1.0, clients], rest - _linear(evaluate_fit, clients * _ROWS * features))
            )
            size_points.append((u, bytes_up))
    return Calibration(
        scheme=scheme.name,
        params=scheme.params_text(),
        machine=_machine(),
        version=__version__,
        client={
            phase: _solve([[1.0, u] for u, _ in pts], [s for _, s in pts])
            for phase, pts in client_points.items()
        },
        train=_solve([[1.0, w] for w, _ in train_points], [s for _, s in train_points]),
        aggregate=_solve([r for r, _ in aggregate_points], [s for _, s in aggregate_points]),
        decrypt=_solve([r for r, _ in decrypt_points], [s for _, s in decrypt_points]),
        evaluate=evaluate_fit,
        overhead=_solve([r for r, _ in overhead_points], [s for _, s in overhead_points]),
        bytes_up=_solve([[1.0, u] for u, _ in size_points], [s for _, s in size_points]),
        prove=prove_fit,
        verify=verify_fit,
        check=check_fit,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _machine() -> str:
    env = environment()
    return f"{env['cpu']} x{env['cpu_count']}"


def _cache_file() -> Path:
    root = os.environ.get("HE_FED_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "he-fed"
    )
    return Path(root) / "calibration.json"


def _read_cache() -> dict[str, Any]:
    try:
        return dict(json.loads(_cache_file().read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def load_calibration(
    scheme: Scheme,
    *,
    refresh: bool = False,
    announce: Callable[[str], None] | None = None,
) -> Calibration:
    """The cached calibration for ``scheme`` on this machine, measuring it if needed.

    One per scheme and key parameters: ``scheme``'s encoding plan (clip, client
    count, weights) is not part of the key (see :func:`calibration_scheme`).
    ``announce`` is told, before a calibration is measured, what is being measured:
    it takes minutes (README, "Benchmarks", gives the figures).
    """
    calibrated = calibration_scheme(scheme)
    key = f"{calibrated.name}|{calibrated.params_text()}|{_machine()}|{__version__}"
    cache = _read_cache()
    if not refresh and key in cache:
        try:
            return Calibration(**cache[key])
        except TypeError:  # written by another layout: measure again
            pass
    if announce is not None:
        announce(
            f"calibrating {calibrated.name} for these keys on this machine: "
            f"minutes, once; cached in {_cache_file()}"
        )
    calibration = calibrate(scheme)
    cache = _read_cache()
    cache[key] = asdict(calibration)
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache, indent=1), encoding="utf-8")
    return calibration


@dataclass(frozen=True)
class Estimate:
    """Predicted cost of a run (in process), before running it.

    Attributes
    ----------
    time_per_round_s : float
        Seconds per training round, wall clock.
    phases : dict of str to float
        Seconds per round by phase: train, encrypt, sign, serialize, aggregate,
        decrypt, and overhead (the rest of the round).
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
    classes: int = 2,
) -> Estimate:
    """Predict time per round, bytes per client and total time of a training run.

    ``standardize`` only changes the bytes each round start carries (the two
    statistics rounds before training are not included in the per-round figures).
    ``classes`` above 2 trains a multinomial model: one row of ``features + 1``
    weights per class, in the update, the ticket and the local training's work.
    """
    if classes < 2:
        raise ConfigurationError(f"a target has at least 2 classes, not {classes}")
    rows = 1 if classes == 2 else classes
    size = rows * (features + 1)
    u = units(scheme, size)
    cal = calibration

    def per_client(phase: str) -> float:
        a, b = cal.client[phase]
        return a + b * u

    encrypt = per_client("encrypt")
    cores = os.cpu_count() or 1
    if isinstance(scheme, (Paillier, PackedPaillier)) and u >= PARALLEL_MIN_CIPHERTEXTS:
        encrypt /= max(1.0, cores * _PARALLEL_EFFICIENCY)  # worker processes on every core
    agg = cal.aggregate
    dec = cal.decrypt
    over = cal.overhead
    work = _proof_work(scheme, size)
    phases = {
        "train": clients * _linear(cal.train, samples_per_client * features * local_epochs * rows),
        "encrypt": clients * encrypt,
        "sign": clients * (per_client("sign") + _linear(cal.prove, work)),
        "serialize": clients * per_client("serialize"),
        "aggregate": clients * (agg[0] + agg[1] * u + _linear(cal.verify, work))
        + agg[2]
        + agg[3] * u,
        "decrypt": dec[0]
        + dec[1] * u
        + clients * (dec[2] + dec[3] * u)
        + _check_cost(cal.check, work, clients),
        "overhead": over[0]
        + over[1] * clients
        + _linear(cal.evaluate, clients * samples_per_client * features),
    }
    per_round = sum(phases.values())
    bytes_up = round(cal.bytes_up[0] + cal.bytes_up[1] * u) + _proof_bytes(scheme, size)
    bytes_down = RoundStart.encoded_size(size, features if standardize else 0)
    return Estimate(per_round, phases, bytes_up, bytes_down, rounds * per_round, u)
