"""How the key holder applies its privacy budget: which tickets and releases it allows.

Kept apart from :mod:`he_fed.protocol.keyholder`, which calls it. Under a
:class:`~he_fed.privacy.PrivacyBudget`:

* no statistics round runs (standardisation would release feature means outside
  the accountant): the run plan must not standardise, and a private run scales
  its features by declared public bounds instead;
* the minimum cohort is at least the one the noise was planned for, so every
  released sum carries the full noise;
* a ticket is signed, and an aggregate decrypted, only while one more release
  stays within the target (:meth:`PrivacyBudget.charge` before decryption).

The key holder's state carries the budget (format 4, written in the envelope's
parameters, with the sampling rate and ``round_delta``) and then the pinned
divisors (:mod:`he_fed.protocol.normalisers`); a format-3 state, from before
divisors were pinned, is read only if it released nothing; a format-2 state, from
before Poisson sampling, is read as an unsampled budget, and a format-1 state,
from before differential privacy, as a run without a budget: what each was.
"""

from __future__ import annotations

from he_fed.crypto import wire
from he_fed.exceptions import ConfigurationError, MalformedMessage, PolicyViolation
from he_fed.privacy import PrivacyBudget
from he_fed.protocol.messages import Task
from he_fed.protocol.model import RunPlan
from he_fed.protocol.normalisers import Normalisers

__all__ = [
    "STATE_FORMAT",
    "STATE_PARAMS",
    "check_budget",
    "read_budget",
    "read_divisors",
    "ticket_allowed",
    "write_budget",
]

#: The key holder state's format, written as ``state=4`` in its envelope's parameters.
STATE_FORMAT = 4
#: What the envelope's parameters say for this format.
STATE_PARAMS = f"state={STATE_FORMAT}"
#: Format 3: no pinned divisors (:mod:`he_fed.protocol.normalisers`).
_UNPINNED_PARAMS = "state=3"
#: Format 2: a budget without a sampling rate or ``round_delta`` (every record, every round).
_UNSAMPLED_PARAMS = "state=2"


def check_budget(budget: PrivacyBudget | None, plan: RunPlan, size: int) -> None:
    """Refuse a budget that the run plan cannot honour.

    Raises
    ------
    ConfigurationError
        If the plan standardises, or the mechanism's update size is not the plan's.
    """
    if budget is None:
        return
    if not isinstance(budget, PrivacyBudget):
        raise ConfigurationError("privacy must be a PrivacyBudget")
    if plan.standardize:
        raise ConfigurationError(
            "a private run releases no statistics outside its budget: set standardize=False "
            "and scale features by declared public bounds"
        )
    if budget.mechanism.size != size:
        raise ConfigurationError(
            f"the privacy mechanism is planned for {budget.mechanism.size} values, "
            f"but an update holds {size}"
        )


def ticket_allowed(budget: PrivacyBudget | None, task: Task, min_clients: int) -> None:
    """Raise unless a ticket for ``task`` may be signed under ``budget``.

    Raises
    ------
    PolicyViolation
        If the task is a statistics round, or the budget allows no more releases.
    ConfigurationError
        If the key holder decrypts cohorts smaller than the noise was planned for.
    """
    if budget is None:
        return
    if task is not Task.TRAIN:
        raise PolicyViolation(f"a private run releases no {task.value} statistics")
    if min_clients < budget.mechanism.min_cohort:
        raise ConfigurationError(
            f"the noise is planned for cohorts of {budget.mechanism.min_cohort}, but the key "
            f"holder decrypts cohorts of {min_clients}; raise min_clients"
        )
    if budget.exhausted:
        raise PolicyViolation(budget.refusal())


def write_budget(w: wire.Writer, budget: PrivacyBudget | None) -> None:
    """Append the budget (or its absence) to a key holder state."""
    w.uint(int(budget is not None), 1)
    if budget is not None:
        budget.write_to(w)


def read_budget(r: wire.Reader, params: str) -> PrivacyBudget | None:
    """The budget of a state whose envelope carries ``params``.

    Raises
    ------
    MalformedMessage
        If the state's format is unknown or its budget is malformed.
    """
    if params == "":
        return None  # format 1: written before differential privacy, so no budget
    if params not in (STATE_PARAMS, _UNPINNED_PARAMS, _UNSAMPLED_PARAMS):
        raise MalformedMessage(f"key holder state of unknown format {params[:20]!r}")
    if not r.uint(1):
        return None
    sampled = params in (STATE_PARAMS, _UNPINNED_PARAMS)
    return PrivacyBudget.read_from(r, "key holder state", sampled=sampled)


def read_divisors(
    r: wire.Reader, params: str, *, released: int, budget: PrivacyBudget | None
) -> Normalisers:
    """The pinned divisors of a state whose envelope carries ``params``.

    Raises
    ------
    MalformedMessage
        If an older state of a run without a budget released aggregates before
        divisors were pinned: it would pin new ones, and two total weights give a
        sample count. (A private run divides by its budget's normaliser.)
    """
    if params == STATE_PARAMS:
        return Normalisers.read_from(r)
    if released and budget is None:
        raise MalformedMessage(
            "this key holder state comes from a version that divided each release by its "
            "own total weight; restoring it would pin a second one, so start a new federation"
        )
    return Normalisers()
