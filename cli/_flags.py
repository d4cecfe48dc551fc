"""Flags that would be silently ignored are refused, or warned about.

The rule: a flag whose being ignored changes *what* is computed (another data
split, another dataset, other cryptographic parameters than the user asked for)
is refused with a one-line :class:`~he_fed.exceptions.ConfigurationError`; a flag
whose being ignored changes only *how fast* (``--workers`` with clients that run
in this process) gets a warning on stderr and the run goes on. A flag counts as
given when its value came from the command line or the environment, not from
its default (:meth:`click.Context.get_parameter_source`), so ``--alpha 0.5``
counts even though 0.5 is the default.
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from he_fed.crypto.threshold import parse_threshold
from he_fed.data import SYNTHETIC_DATASETS, builtin_name, has_own_size
from he_fed.exceptions import ConfigurationError
from he_fed.protocol.council import quorum_size

__all__ = ["check_run_flags", "check_scheme_flags", "given"]


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user set parameter ``name`` (on the command line or in the environment)."""
    return ctx.get_parameter_source(name) in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )


def check_scheme_flags(ctx: click.Context, scheme: str) -> None:
    """Refuse ``--key-bits`` without a Paillier scheme, and ``--ckks-preset`` without CKKS.

    Raises
    ------
    ConfigurationError
        If either was given for a scheme that has no such parameter.
    """
    if given(ctx, "key_bits") and not scheme.startswith("paillier"):
        hint = "; its parameters are --ckks-preset" if scheme == "ckks" else ""
        raise ConfigurationError(
            f"--key-bits sets the Paillier modulus, and --scheme {scheme} has none{hint}"
        )
    if given(ctx, "ckks_preset") and scheme != "ckks":
        raise ConfigurationError(f"--ckks-preset applies to --scheme ckks, not {scheme}")


def check_run_flags(ctx: click.Context, options: dict[str, Any]) -> list[str]:
    """Refuse ``he-fed run`` flags that its other flags make meaningless.

    Parameters
    ----------
    ctx : click.Context
        The ``run`` command's context.
    options : dict
        Its options, by parameter name.

    Returns
    -------
    list of str
        Warnings about flags that change nothing but speed, and about a
        ``--threshold`` whose quorum leaves no share holder free to be absent.

    Raises
    ------
    ConfigurationError
        For ``--alpha`` without ``--partition dirichlet``, ``--samples`` or
        ``--features`` on a dataset of fixed size, ``--target`` on a built-in
        dataset, ``--dp-delta``, ``--dp-level`` or ``--dp-clip`` without
        ``--dp-epsilon``, and the scheme flags of :func:`check_scheme_flags`.
    """
    dataset = str(options["dataset"])
    builtin = builtin_name(dataset)
    if given(ctx, "dirichlet_alpha") and options["partition"] != "dirichlet":
        raise ConfigurationError(
            "--alpha sets the concentration of --partition dirichlet, and the partition "
            f"is {options['partition']}; add --partition dirichlet"
        )
    fixed_size = has_own_size(dataset)
    for name in ("samples", "features"):
        if given(ctx, name) and fixed_size:
            raise ConfigurationError(
                f"--{name} sizes the synthetic datasets ({', '.join(SYNTHETIC_DATASETS)}); "
                f"{dataset} has a size of its own"
            )
    if given(ctx, "target") and builtin is not None:
        raise ConfigurationError(
            f"--target names the column to predict in a CSV file; {builtin} is built in "
            "and has its own target"
        )
    check_scheme_flags(ctx, str(options["scheme"]))
    for name in ("dp_delta", "dp_level", "dp_clip", "dp_noise_multiplier", "dp_sampling_rate"):
        if given(ctx, name) and options["dp_epsilon"] is None:
            flag = "--" + name.replace("_", "-")
            raise ConfigurationError(f"{flag} sets differential privacy; add --dp-epsilon")
    warnings = []
    if given(ctx, "workers") and options["executor"] == "inprocess":
        warnings.append(
            "--workers has no effect with --executor inprocess (clients run one after "
            "another in this process); use --executor processes to spread them"
        )
    if options.get("threshold") is not None:
        threshold, holders = parse_threshold(str(options["threshold"]))
        quorum = quorum_size(threshold, holders)
        if quorum == holders:
            warnings.append(
                f"--threshold {threshold}/{holders}: every round needs a quorum of {quorum} of "
                f"{holders} share holders, so none may be absent (ceil((n + t) / 2); e.g. 3/5 "
                "tolerates one)"
            )
    return warnings
