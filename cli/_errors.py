"""Library errors become one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from he_fed.exceptions import HEFedError


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn :class:`HEFedError` into :class:`click.ClickException`."""
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
