"""One public divisor per federation and kind of weight: no release divides by its cohort's.

A released mean ``(t_h + w_c·x_c) / (W_h + w_c)`` tells a client colluding with the
aggregator the honest cohort's total weight ``W_h`` whenever its own value ``x_c``
(in range, proven) dwarfs the honest ones: the clip of a statistics round is far
above what honest clients send, and so is a colluder of the largest weight. Two
cohorts chosen by the aggregator, one with a victim and one without, then give the
victim's sample count (red team 9: 22 of 22 training rows, 8 of 8 validation rows,
no refusal). Rounding the mean to the grid hides ``W`` from the data; it cannot
hide it from a known addend.

So a key holder divides every release of a federation by one fixed total weight
per kind of weight, the *fixed-denominator estimator* of McMahan, Ramage, Talwar
and Zhang (ICLR 2018):

* the sample counts of :attr:`Task.MAGNITUDE`, :attr:`Task.MOMENTS` and
  :attr:`Task.TRAIN`, fixed by the first of them released;
* the validation row counts of :attr:`Task.EVALUATE`, fixed by the first
  evaluation released.

The first release of a kind divides by its own total weight ``W_0`` (rounded to the
grid, as before), which pins ``W_0`` and its cohort. A later release is
``step · round(t / W_0)``: a function of its weighted sum ``t`` alone, so whatever
the cohort, a colluder reads ``W_0`` again and never another total weight, and
differences of total weights, which are sample counts, cannot be formed.
Releases whose figures are ratios of sums over one cohort must come from the
pinned cohort, or they would be wrong (and, for evaluation, whose confusion
matrix sums to ``W / W_0``, leak ``W``): a :attr:`Task.MOMENTS` or
:attr:`Task.EVALUATE` aggregate from another cohort is refused before anything is
decrypted, from the receipts' client ids, which the aggregator knows anyway.
A training round may come from any cohort (dropouts); its step then shrinks by
``W / W_0``, the price of the fixed denominator.

A differentially private run divides by its budget's public normaliser instead
(:mod:`he_fed.privacy`) and pins nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from he_fed.crypto import wire
from he_fed.exceptions import PolicyViolation
from he_fed.protocol.messages import Task

__all__ = ["Normalisers", "Pin", "kind_of"]

#: What the weights of each task count.
_KIND = {
    Task.MAGNITUDE: "samples",
    Task.MOMENTS: "samples",
    Task.TRAIN: "samples",
    Task.EVALUATE: "validation",
}
_KINDS = ("samples", "validation")
#: Tasks whose releases must come from the cohort that pinned their divisor.
_SAME_COHORT = (Task.MOMENTS, Task.EVALUATE)


def kind_of(task: Task) -> str:
    """The kind of weight ``task``'s contributions carry."""
    return _KIND[task]


@dataclass(frozen=True)
class Pin:
    """A pinned divisor: the first release's total weight and its cohort."""

    weight: int
    cohort: tuple[str, ...]


class Normalisers:
    """The key holder's pinned divisors, one per kind of weight."""

    def __init__(self) -> None:
        self._pins: dict[str, Pin] = {}

    def check(self, task: Task, contributors: Sequence[str]) -> None:
        """Refuse, before decryption, a cohort that cannot use the pinned divisor.

        Raises
        ------
        PolicyViolation
            If ``task`` must come from the pinned cohort and does not.
        """
        pin = self._pins.get(kind_of(task))
        if pin is None or task not in _SAME_COHORT:
            return
        if tuple(sorted(contributors)) != pin.cohort:
            raise PolicyViolation(
                f"a {task.value} aggregate must come from the {len(pin.cohort)} clients "
                f"whose first release fixed its divisor; this one has {len(contributors)} "
                "others or another set, so nothing was decrypted"
            )

    def divisor(self, task: Task) -> int | None:
        """The pinned total weight for ``task``, or None before its kind's first release."""
        pin = self._pins.get(kind_of(task))
        return None if pin is None else pin.weight

    def pin(self, task: Task, weight: int, contributors: Sequence[str]) -> None:
        """Pin ``weight`` and the cohort for ``task``'s kind, if not pinned yet."""
        self._pins.setdefault(kind_of(task), Pin(int(weight), tuple(sorted(contributors))))

    def write_to(self, w: wire.Writer) -> None:
        """Append the pins (in the key holder's state)."""
        for kind in _KINDS:
            pin = self._pins.get(kind)
            w.uint(0 if pin is None else pin.weight)
            cohort = () if pin is None else pin.cohort
            w.uint(len(cohort), 4)
            for client_id in cohort:
                w.text(client_id)

    @classmethod
    def read_from(cls, r: wire.Reader) -> Normalisers:
        """The pins :meth:`write_to` wrote."""
        pins = cls()
        for kind in _KINDS:
            weight = r.uint()
            cohort = tuple(r.text() for _ in range(r.uint(4)))
            if weight:
                pins._pins[kind] = Pin(weight, cohort)
        return pins

    def __len__(self) -> int:
        return len(self._pins)
