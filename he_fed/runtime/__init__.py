"""Executors: they move bytes between roles and call role methods, nothing else."""

from __future__ import annotations

from he_fed.runtime.inprocess import ClientResult, InProcessExecutor

__all__ = ["ClientResult", "InProcessExecutor"]
