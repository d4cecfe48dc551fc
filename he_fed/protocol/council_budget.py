"""How a share holder spends its own privacy budget: one release number per certificate.

Every :class:`~he_fed.protocol.decryptor.Decryptor` keeps its own
:class:`~he_fed.privacy.PrivacyBudget`, from its own configuration. Charging
only the releases a holder takes part in is not enough: the aggregator and
``t - 1`` colluding holders choose which honest holders take part in each round,
and could route rounds so that each honest holder sees only some of them,
getting up to ``n - t + 1`` budgets' worth of releases in all.

So the releases are numbered, and the number is part of what a quorum certifies
(:func:`~he_fed.protocol.certificate.certificate_payload`):

* a holder vouches for an aggregate (:func:`vouch`) as release ``k = spent + 1``,
  and only while ``k`` releases stay within its target; vouching charges ``k``,
  so an honest holder signs each number at most once;
* two certificates of the same ``k`` would need two quorums of
  ``q = ceil((n + t) / 2)``, which share at least ``t`` holders, hence an honest
  one, which signs ``k`` once: at most one aggregate per number is certified, and
  no number past the honest holders' target is. Any decryption needs an honest
  holder's partial, and an honest holder computes one only against a
  certificate, so at most as many aggregates are decrypted as the budget allows;
* a holder that was left out of a release counts it when it is shown that
  release's certificate (:func:`count_certified`), before it helps with the next:
  a certificate for release ``k`` raises its count to ``k`` even if it then
  refuses to compute its own partial. Until it has counted every release, its
  number (and its model) lag the quorum's, and its signature certifies nothing.

Without a budget the number is 0 and the certificate is what it was.
"""

from __future__ import annotations

from he_fed.exceptions import PolicyViolation
from he_fed.privacy import PrivacyBudget

__all__ = ["count_certified", "next_release", "vouch"]


def next_release(budget: PrivacyBudget | None) -> int:
    """The number the next certified release carries: ``spent + 1``, or 0 without a budget."""
    return 0 if budget is None else budget.released + 1


def vouch(budget: PrivacyBudget | None) -> int:
    """Charge the release this holder is about to vouch for, and return its number.

    Raises
    ------
    PolicyViolation
        If one more release would take ``epsilon`` past the target (nothing charged).
    """
    if budget is None:
        return 0
    budget.charge()
    return budget.released


def count_certified(budget: PrivacyBudget | None, release: int, holder: int) -> None:
    """Count release ``release``, which a quorum certified, then refuse to help if it is
    past the target.

    The count stands even when this holder refuses: the other holders may have
    decrypted it without this one.

    Raises
    ------
    PolicyViolation
        If ``release`` releases take ``epsilon`` past this holder's target.
    """
    if budget is None:
        return
    budget.released = max(budget.released, release)
    if budget.epsilon_after(release) > budget.target_epsilon:
        raise PolicyViolation(
            f"privacy budget spent: share holder {holder} counted certified release "
            f"{release}, which uses epsilon {budget.epsilon_after(release):.3g} of "
            f"{budget.target_epsilon:g}; it computes no partial"
        )
