"""The threshold benchmark: what t-of-n decryption costs against one key holder, in one run.

Measured per ciphertext of a packed update, and per gradient value (a ciphertext
holds :attr:`~he_fed.crypto.PackedPaillier` ``layout.slots`` values), with the
single key holder's CRT decryption measured in the same run, interleaved, as the
baseline every ratio divides by:

* the dealer's key ceremony (two safe primes; ``deal``) against one key's ``keygen``;
* one share holder's partial decryption with its Chaum-Pedersen proof;
* verifying one partial's proofs (a releasing holder checks ``t - 1`` others');
* combining ``t`` partials (the Lagrange exponentiations);
* a releasing holder's whole share, ``partial + (t - 1) verify + combine``.

Every repetition's combination is checked: the ``t`` partials must decrypt the
encrypted values. ``benchmarks/threshold.py`` runs the same measurement on its
own grid and extrapolates whole rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from he_fed.bench.measure import timed
from he_fed.crypto import KeyPair, PackedPaillier
from he_fed.crypto._safe_primes import safe_prime
from he_fed.crypto._threshold_keys import _combine
from he_fed.crypto.threshold import ThresholdKeys, deal
from he_fed.protocol.council import quorum_size

__all__ = ["FULL", "QUICK", "ThresholdGrid", "council_times", "run_threshold"]

#: What the partials are bound to; any bytes do for a benchmark.
CONTEXT = b"he-fed bench|round|train"
_STEPS = ("decrypt", "partial", "verify", "combine")


@dataclass(frozen=True)
class ThresholdGrid:
    """What the threshold benchmark runs.

    Parameters
    ----------
    councils : tuple of (int, int)
        The ``(t, n)`` measured.
    ciphertexts : int
        Ciphertexts in the measured update.
    repeats : int
        Timed repetitions per council (steps interleaved with the baseline).
    keygen_repeats : int
        Dealer ceremonies (3-of-5, or the first council) and single keygens.
    """

    councils: tuple[tuple[int, int], ...]
    ciphertexts: int
    repeats: int
    keygen_repeats: int


QUICK = ThresholdGrid(councils=((3, 5),), ciphertexts=2, repeats=3, keygen_repeats=1)
FULL = ThresholdGrid(councils=((2, 3), (3, 5), (5, 9)), ciphertexts=17, repeats=5, keygen_repeats=3)


def bench_scheme(key_bits: int, allow_insecure: bool) -> PackedPaillier:
    """The packed plan measured: 100 clients of weight up to 1000, one worker."""
    return PackedPaillier(
        key_bits=key_bits,
        max_clients=100,
        max_weight=1000,
        workers=1,
        allow_insecure=allow_insecure,
    )


def council_times(
    keys: ThresholdKeys, single: KeyPair, x: np.ndarray, repeats: int
) -> tuple[dict[str, list[float]], int, int]:
    """Seconds per repetition of each step on ``x`` encrypted, one partial's bytes, ciphertexts.

    Raises
    ------
    AssertionError
        If a proof fails to verify or the ``t`` partials do not decrypt ``x``.
    """
    t = keys.verification.threshold
    weight = 7
    baseline = single.public.encrypt(x, weight=weight)
    vector = keys.public.encrypt(x, weight=weight)
    times: dict[str, list[float]] = {step: [] for step in _STEPS}
    partials: list[Any] = []
    for _ in range(repeats):
        times["decrypt"].append(timed(lambda: single.secret.raw_decrypt(baseline.ciphertexts))[0])
        partials = []
        elapsed = 0.0
        for share in keys.shares[:t]:
            elapsed, partial = timed(lambda s=share: s.partial_decrypt(vector, CONTEXT))
            partials.append(partial)
        times["partial"].append(elapsed)  # one holder's: the last of the t
        elapsed, ok = timed(lambda p=partials: keys.verification.verify(vector, p[0], CONTEXT))
        if not ok:
            raise AssertionError("a partial decryption's proof did not verify")
        times["verify"].append(elapsed)
        times["combine"].append(timed(lambda p=partials: _combine(keys.verification, vector, p))[0])
    result = keys.verification.combine(vector, partials, CONTEXT).result
    step = keys.public.scheme.quantizer.step  # type: ignore[attr-defined]
    if result.weight != weight or np.max(np.abs(result.total - weight * x)) > weight * float(step):
        raise AssertionError("the t partial decryptions did not decrypt the encrypted values")
    return times, len(partials[0].to_bytes(keys.verification)), len(vector.ciphertexts)


def _keygen(
    scheme: PackedPaillier, grid: ThresholdGrid, say: Callable[[str], None]
) -> tuple[dict[str, Any], tuple[int, int]]:
    """The ceremony's and one keygen's median seconds, and the first ceremony's primes.

    A ceremony is timed as ``deal`` does it: two safe primes, then the sharing.
    Its primes are kept for the measured keys, which saves drawing two more (the
    per-ciphertext steps do not depend on which safe primes they are).
    """
    t, n = (3, 5) if (3, 5) in grid.councils else grid.councils[0]
    bits = scheme.key_bits
    dealer, single, kept = [], [], None
    for rep in range(grid.keygen_repeats):
        say(f"threshold keygen {rep + 1}/{grid.keygen_repeats}: dealer {t}-of-{n}")
        drawn, primes = timed(lambda: (safe_prime(bits // 2), safe_prime(bits - bits // 2)))
        shared, _ = timed(lambda p=primes: deal(scheme, threshold=t, holders=n, primes=p))
        dealer.append(drawn + shared)
        single.append(timed(scheme.keygen)[0])
        kept = kept or primes
    d, s = statistics.median(dealer), statistics.median(single)
    summary = {"t": t, "n": n, "dealer_s": d, "single_s": s, "dealer_over_single": d / s}
    return summary, kept  # type: ignore[return-value]  # keygen_repeats >= 1


def run_threshold(
    grid: ThresholdGrid,
    *,
    key_bits: int = 2048,
    allow_insecure: bool = False,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure each council of ``grid`` against one key holder, in this run.

    Returns
    -------
    dict
        ``key_bits``, ``values_per_ciphertext``, ``keygen`` (median seconds of the
        dealer and of one key, and their ratio), and ``rows``, one per ``(t, n)``:
        ``quorum``, ``ciphertexts``, ``{decrypt,partial,verify,combine,holder}`` as
        ``*_ms_per_ciphertext`` and ``*_us_per_value`` (medians), ``over_decrypt``
        (each step ÷ the key holder's decryption), ``partial_bytes_per_ciphertext``.
    """
    say = progress or (lambda _text: None)
    scheme = bench_scheme(key_bits, allow_insecure)
    slots = scheme.layout.slots
    rng = np.random.default_rng(seed)
    d = grid.ciphertexts * slots
    while scheme.ciphertexts_for(d) > grid.ciphertexts:  # the weight and padding take slots
        d -= 1
    x = rng.uniform(-1, 1, d)
    keygen, primes = _keygen(scheme, grid, say)
    single = scheme.keygen()
    rows = []
    for t, n in grid.councils:
        say(f"threshold {t}-of-{n}: {grid.repeats} repetitions")
        keys = deal(scheme, threshold=t, holders=n, primes=primes)
        times, partial_bytes, k = council_times(keys, single, x, grid.repeats)
        per_ct = {step: statistics.median(v) / k for step, v in times.items()}
        per_ct["holder"] = per_ct["partial"] + (t - 1) * per_ct["verify"] + per_ct["combine"]
        row: dict[str, Any] = {"t": t, "n": n, "quorum": quorum_size(t, n), "ciphertexts": k}
        for step, seconds in per_ct.items():
            row[f"{step}_ms_per_ciphertext"] = 1e3 * seconds
            row[f"{step}_us_per_value"] = 1e6 * seconds / slots
        row["over_decrypt"] = {
            step: per_ct[step] / per_ct["decrypt"]
            for step in ("partial", "verify", "combine", "holder")
        }
        row["partial_bytes_per_ciphertext"] = partial_bytes / k
        rows.append(row)
    return {
        "key_bits": key_bits,
        "values_per_ciphertext": slots,
        "repeats": grid.repeats,
        "keygen": keygen,
        "rows": rows,
    }
