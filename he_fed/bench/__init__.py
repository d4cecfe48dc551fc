"""Benchmarks of the encryption overhead, and a cost estimator.

``he-fed bench`` and ``he-fed estimate`` are built on this package.


* :mod:`~he_fed.bench.micro`: per-element cost of every step, each scheme against
  ``phe-naive``, ``tenseal-nvflare`` and ``plain`` baselines in the same run.
* :mod:`~he_fed.bench.macro`: whole federated runs for several client counts and
  model sizes, against ``plain``, with the estimator's prediction and its error.
* :mod:`~he_fed.bench.threshold`: t-of-n threshold decryption (the dealer, partial
  decryptions and their proofs, verification, combination) against one key
  holder's decryption in the same run.
* :mod:`~he_fed.bench.estimate`: calibrated predictions, before running anything.
"""

from __future__ import annotations

from he_fed.bench.estimate import Calibration, Estimate, estimate, load_calibration
from he_fed.bench.macro import MacroGrid, run_macro
from he_fed.bench.micro import MicroGrid, ratios, run_micro
from he_fed.bench.report import headline_markdown, write_csv, write_json, write_plots
from he_fed.bench.threshold import ThresholdGrid, run_threshold

__all__ = [
    "Calibration",
    "Estimate",
    "MacroGrid",
    "MicroGrid",
    "ThresholdGrid",
    "estimate",
    "headline_markdown",
    "load_calibration",
    "ratios",
    "run_macro",
    "run_micro",
    "run_threshold",
    "write_csv",
    "write_json",
    "write_plots",
]
