"""The key holder's pinned cohorts survive its state file, and only pins it could make."""

from __future__ import annotations

import pytest

from he_fed.crypto import wire
from he_fed.exceptions import MalformedMessage
from he_fed.protocol import Task
from he_fed.protocol.normalisers import Normalisers


def _state(pins: list[tuple[int, list[str]]]) -> bytes:
    w = wire.Writer()
    for weight, cohort in pins:
        w.uint(weight)
        w.uint(len(cohort), 4)
        for client_id in cohort:
            w.text(client_id)
    return w.getvalue()


def test_pins_read_back_as_written():
    pins = Normalisers()
    pins.pin(Task.MAGNITUDE, 90, ["c", "a", "b"])
    pins.pin(Task.TRAIN, 12, ["x", "y", "z"])  # the kind is pinned already: ignored
    w = wire.Writer()
    pins.write_to(w)
    restored = Normalisers.read_from(wire.Reader(w.getvalue(), "key holder state"))
    assert restored.divisor(Task.TRAIN) == 90
    assert restored.divisor(Task.EVALUATE) is None
    restored.check(Task.MOMENTS, ["b", "c", "a"])


@pytest.mark.parametrize(
    "pin",
    [
        (90, []),  # a weight without a cohort would refuse every later aggregate
        (0, ["a", "b"]),  # a cohort without a weight used to be dropped silently
        (2, ["a", "b", "c"]),  # three contributions weigh at least 3
        (90, ["b", "a"]),  # not sorted: check() could never match it
        (90, ["a", "a", "b"]),
    ],
)
def test_an_impossible_pin_in_the_state_is_refused(pin):
    with pytest.raises(MalformedMessage, match="impossible samples cohort"):
        Normalisers.read_from(wire.Reader(_state([pin, (0, [])]), "key holder state"))
