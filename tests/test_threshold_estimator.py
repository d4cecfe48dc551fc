"""The estimators take ``threshold="t/n"`` and train the single key holder's model."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed import FederatedLogisticRegression
from he_fed.exceptions import ConfigurationError


def _data():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(90, 3))
    y = (X @ [1.0, -1.0, 0.5] > 0).astype(int)
    return X, y, np.repeat(np.arange(3), 30)


def test_a_two_of_three_council_fits_the_same_coefficients():
    X, y, groups = _data()
    options = dict(key_bits=1024, allow_insecure=True, rounds=2, local_epochs=1)
    single = FederatedLogisticRegression(**options).fit(X, y, groups=groups)
    shared = FederatedLogisticRegression(threshold="2/3", **options).fit(X, y, groups=groups)
    assert shared.coef_.tolist() == single.coef_.tolist()
    assert shared.intercept_.tolist() == single.intercept_.tolist()


def test_ckks_with_a_threshold_is_refused_before_any_work():
    X, y, groups = _data()
    with pytest.raises(ConfigurationError, match="needs a Paillier scheme"):
        FederatedLogisticRegression(scheme="ckks", threshold="2/3").fit(X, y, groups=groups)


def test_a_checkpoint_with_a_threshold_is_refused_in_one_line(tmp_path):
    X, y, groups = _data()
    model = FederatedLogisticRegression(
        threshold="2/3", checkpoint=tmp_path / "run", key_bits=1024, allow_insecure=True
    )
    refusal = r"checkpoint= with threshold= \(each share holder keeps its own state\) is not"
    with pytest.raises(ConfigurationError, match=refusal):
        model.fit(X, y, groups=groups)
    assert not (tmp_path / "run").exists()  # refused before anything was saved


def test_a_private_fit_with_a_council_charges_every_holder():
    """dp_epsilon with threshold=: each share holder keeps and enforces its own budget."""
    X, y, groups = _data()
    est = FederatedLogisticRegression(
        threshold="2/3",
        dp_epsilon=4.0,
        feature_bounds=(-4.0, 4.0),
        key_bits=1024,
        allow_insecure=True,
        rounds=3,
    ).fit(X, y, groups=groups)
    assert est.setup_["council"] == {
        "threshold": 2,
        "holders": 3,
        "quorum": 3,
        "tolerated_absences": 0,
        "absent": [],
    }
    assert est.setup_["privacy"]["rounds_released"] == 3
    assert [r.epsilon for r in est.history_] == sorted(r.epsilon for r in est.history_)
    assert 0 < est.history_[-1].epsilon <= 4.0
