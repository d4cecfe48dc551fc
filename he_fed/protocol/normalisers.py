"""One cohort and one divisor per federation and kind of weight.

Without differential privacy, releases are exact functions of their cohort's data,
and the aggregator chooses cohorts. Two releases from two cohorts, one with a
victim and one without, differ by the victim's contribution plus whatever the
model's move between them changed; a client colluding with the aggregator removes
that remainder by steering the model with ordinary, proven contributions (red team
10): it froze the model, or drove the intercept to saturation where honest updates
no longer depend on it, and the difference gave a victim's update to 0.3 %, or its
exact sample count, class counts and feature means, with no refusal. And a
colluder's value at the clip, far above the honest ones, reads a release's honest
total weight off ``R = (t_h + w_c·x_c) / (W_h + w_c)`` (red team 9: 22 of 22
training rows, 8 of 8 validation rows).

So a key holder without a privacy budget pins, at the first release of each kind of
weight, its cohort and total weight ``W_0``:

* the sample counts of :attr:`Task.MAGNITUDE`, :attr:`Task.MOMENTS` and
  :attr:`Task.TRAIN`;
* the validation row counts of :attr:`Task.EVALUATE`.

Every later aggregate of that kind must come from the same cohort, checked from the
receipts' client ids (which the aggregator knows anyway) before anything is
decrypted or partially decrypted; any other is refused. Then every release of a
kind sums the same honest clients, and no difference of two cohorts exists to
form. A release is ``step · round(t / W_0)``, a function of its weighted sum ``t``
alone (the fixed-denominator estimator of McMahan, Ramage, Talwar and Zhang, ICLR
2018): a colluder reads ``W_0``, the first cohort's honest clients' total, and
nothing that changes with its own weight.

The price: a client absent from a round (a dropout) makes that round's aggregate
refused, so a federation whose clients come and go needs a private run
(``--dp-epsilon``), whose budget's public normaliser and noise bound what cohort
differences reveal, and which pins nothing (:mod:`he_fed.privacy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from he_fed.crypto import wire
from he_fed.exceptions import MalformedMessage, PolicyViolation
from he_fed.protocol.messages import Task

__all__ = ["Normalisers"]

#: What the weights of each task count.
_KIND = {
    Task.MAGNITUDE: "samples",
    Task.MOMENTS: "samples",
    Task.TRAIN: "samples",
    Task.EVALUATE: "validation",
}
#: Each kind once, in a fixed order: the order of the pins in the saved state.
_KINDS = tuple(dict.fromkeys(_KIND.values()))


def kind_of(task: Task) -> str:
    """The kind of weight ``task``'s contributions carry."""
    return _KIND[task]


@dataclass(frozen=True)
class Pin:
    """A kind's first release: its total weight (the divisor) and its cohort."""

    weight: int
    cohort: tuple[str, ...]


class Normalisers:
    """The key holder's pinned cohorts and divisors, one per kind of weight."""

    def __init__(self) -> None:
        self._pins: dict[str, Pin] = {}

    def check(self, task: Task, contributors: Sequence[str]) -> None:
        """Refuse, before decryption, a cohort other than its kind's pinned one.

        Raises
        ------
        PolicyViolation
            If ``task``'s kind has a pinned cohort and ``contributors`` is another.
        """
        pin = self._pins.get(kind_of(task))
        if pin is not None and tuple(sorted(contributors)) != pin.cohort:
            raise PolicyViolation(
                f"a {task.value} aggregate must come from the federation's cohort, the "
                f"{len(pin.cohort)} clients of its first release; this one has "
                f"{len(contributors)} of another set, so nothing was decrypted (clients "
                "that come and go need a private run)"
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
        """The pins :meth:`write_to` wrote.

        Raises
        ------
        MalformedMessage
            If a pin is not one :meth:`pin` makes: a weight without a cohort or a
            cohort without a weight, a weight below the cohort's size (each
            contribution weighs at least 1), or a cohort not sorted and distinct.
        """
        pins = cls()
        for kind in _KINDS:
            weight = r.uint()
            cohort = tuple(r.text() for _ in range(r.uint(4)))
            if not weight and not cohort:
                continue
            if weight < len(cohort) or not cohort or list(cohort) != sorted(set(cohort)):
                raise MalformedMessage(
                    f"the key holder's state pins an impossible {kind} cohort: "
                    f"{len(cohort)} client(s) of total weight {weight}"
                )
            pins._pins[kind] = Pin(weight, cohort)
        return pins
