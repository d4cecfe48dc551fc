"""A client's report crosses process and network boundaries as one checked record."""

from __future__ import annotations

import pytest

from he_fed.exceptions import MalformedMessage
from he_fed.protocol import ClientReport

REPORT = ClientReport(3, b"\x01\x02", 0.5, 0.25, 0.125, 0.0625, 7)


def test_a_report_comes_back_from_its_record_unchanged():
    record = REPORT.to_record()
    assert set(record) == {
        "round",
        "update",
        "train_s",
        "encrypt_s",
        "sign_s",
        "serialize_s",
        "clipped",
    }
    assert ClientReport.from_record(record) == REPORT


@pytest.mark.parametrize(
    ("key", "value"),
    [("round", True), ("round", "3"), ("update", "bytes?"), ("train_s", None), ("clipped", "7")],
)
def test_a_record_with_a_field_of_the_wrong_type_is_refused(key, value):
    with pytest.raises(MalformedMessage, match=key):
        ClientReport.from_record({**REPORT.to_record(), key: value})


@pytest.mark.parametrize("key", ["round", "update"])
def test_a_record_that_lacks_a_field_is_refused(key):
    record = REPORT.to_record()
    del record[key]
    with pytest.raises(MalformedMessage, match=key):
        ClientReport.from_record(record)


def test_what_a_client_kept_is_left_out_and_comes_back_as_none():
    kept = REPORT.kept()
    assert kept == ClientReport(3, b"\x01\x02", None, None, None, None, None)
    assert set(kept.to_record()) == {"round", "update"}
    assert ClientReport.from_record(kept.to_record()) == kept


def test_a_record_without_the_clipped_count_says_the_client_kept_it():
    """A Flower client node keeps its clipped count (red team 43): a count of its data."""
    record = REPORT.to_record()
    del record["clipped"]
    assert ClientReport.from_record(record).clipped is None
