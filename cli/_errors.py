"""Library errors become one clear line and a non-zero exit, never a traceback.

A :class:`~he_fed.data.DatasetWarning` (the loader ignored an index column or
dropped rows) becomes one ``Warning:`` line on stderr.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click

from he_fed.data import DatasetWarning
from he_fed.exceptions import HEFedError


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn :class:`HEFedError` into :class:`click.ClickException`, and show data warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", DatasetWarning)
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, DatasetWarning):
                # sys.stderr, not click.echo: rich's progress bar redirects it above the bar.
                print(f"Warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            yield
        except HEFedError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
        except MemoryError:
            raise click.ClickException(
                "out of memory; try fewer --samples, --features or --clients"
            ) from None
        except OSError as exc:
            raise click.ClickException(str(exc)) from None
