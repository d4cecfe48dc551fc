"""Exact sampling of the discrete Gaussian ``N_Z(0, sigma^2)`` from a CSPRNG.

The discrete Gaussian on the integers gives ``P[X = x] ∝ exp(-x^2 / (2 sigma^2))``.
This is the rejection sampler of Canonne, Kamath and Steinke ("The Discrete
Gaussian for Differential Privacy", NeurIPS 2020, Algorithms 1 to 3): a discrete
Laplace proposal, accepted with a Bernoulli of probability ``exp(-bias)``, where
every Bernoulli is drawn from uniform integers and compared with exact rationals.

There is no floating-point step. ``sigma^2`` is taken as the exact rational value
of the float it is given (:class:`fractions.Fraction` of a float is exact), so the
distribution sampled is exactly ``N_Z(0, sigma^2)`` for that rational, the very
number the accountant is given. Every random bit comes from :mod:`secrets`
(the operating system's CSPRNG); nothing here can be seeded, so two runs with the
same ``--seed`` add different noise. (Timing is not constant: the number of
rejections depends on the draw, a side channel that is out of scope.)
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from math import isqrt

import numpy as np

__all__ = ["sample_discrete_gaussian"]


def _bernoulli(p: Fraction) -> bool:
    """True with probability ``p`` in ``[0, 1]``, exactly."""
    return secrets.randbelow(p.denominator) < p.numerator


def _bernoulli_exp_at_most_one(gamma: Fraction) -> bool:
    """True with probability ``exp(-gamma)`` for ``gamma`` in ``[0, 1]`` (CKS Alg. 1)."""
    k = 1
    while _bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability ``exp(-gamma)`` for any ``gamma >= 0``."""
    while gamma > 1:
        if not _bernoulli_exp_at_most_one(Fraction(1)):
            return False
        gamma -= 1
    return _bernoulli_exp_at_most_one(gamma)


def _geometric_exp(rate: Fraction) -> int:
    """``k >= 0`` with ``P[k] ∝ exp(-rate · k)`` for ``rate > 0`` (CKS Alg. 2)."""
    s, t = rate.numerator, rate.denominator
    while True:
        u = secrets.randbelow(t)
        if _bernoulli_exp(Fraction(u, t)):
            break
    v = 0
    while _bernoulli_exp(Fraction(1)):
        v += 1
    return (v * t + u) // s


def _discrete_laplace(scale: int) -> int:
    """``x`` in Z with ``P[x] ∝ exp(-|x| / scale)`` (CKS Alg. 2)."""
    rate = Fraction(1, scale)
    while True:
        negative = _bernoulli(Fraction(1, 2))
        magnitude = _geometric_exp(rate)
        if negative and magnitude == 0:
            continue  # zero would be counted twice
        return -magnitude if negative else magnitude


def _one(sigma2: Fraction) -> int:
    """One draw of ``N_Z(0, sigma2)`` (CKS Alg. 3)."""
    t = isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        candidate = _discrete_laplace(t)
        bias = (abs(candidate) - sigma2 / t) ** 2 / (2 * sigma2)
        if _bernoulli_exp(bias):
            return candidate


def sample_discrete_gaussian(sigma2: float, size: int) -> np.ndarray:
    """``size`` independent draws of the discrete Gaussian ``N_Z(0, sigma2)``.

    Parameters
    ----------
    sigma2 : float
        The variance parameter, positive and finite; used as its exact rational value.
    size : int
        How many draws.

    Returns
    -------
    ndarray of shape (size,)
        Python integers (dtype object), so that no draw is ever rounded.
    """
    exact = Fraction(float(sigma2))
    if not exact > 0:
        raise ValueError("sigma2 must be positive")
    return np.array([_one(exact) for _ in range(int(size))], dtype=object)
