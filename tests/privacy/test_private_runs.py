"""Private runs end to end: he-fed run, its JSON and table, the budget's stop, estimate."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from he_fed.data import DatasetWarning
from he_fed.exceptions import ConfigurationError
from he_fed.federated import FederatedLinearRegression, FederatedLogisticRegression
from he_fed.privacy import epsilon_after

FAST = ["--key-bits", "1024", "--allow-insecure"]
PRIVACY_FIELDS = {
    "epsilon",
    "target_epsilon",
    "delta",
    "level",
    "noise_multiplier",
    "clip",
    "accountant",
    "rounds_released",
}


def _run(tmp_path, name: str, *flags: str):
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(main, ["run", *flags, "--json", str(out), *FAST])
    return result, (json.loads(out.read_text()) if out.exists() else None)


def test_a_private_run_reports_epsilon_every_round_and_in_its_json(tmp_path):
    result, data = _run(tmp_path, "dp", "--dp-epsilon", "1", "--rounds", "5")
    assert result.exit_code == 0, result.output
    assert "privacy (record level)" in result.output
    assert "epsilon 1.000 of 1, delta 1e-05" in result.output
    privacy = data["privacy"]
    assert set(privacy) >= PRIVACY_FIELDS
    assert privacy["rounds_released"] == 5 and privacy["level"] == "record"
    assert privacy["min_cohort"] == 5  # no dropout: every client, so no noise beyond the plan
    assert 0.999 <= privacy["epsilon"] <= 1.0 and privacy["target_epsilon"] == 1.0
    assert privacy["noise_multiplier"] == pytest.approx(9.046, abs=1e-3)  # calibrated for 5
    spent = [entry["epsilon"] for entry in data["rounds"]]
    assert spent == sorted(spent) and spent[-1] == privacy["epsilon"] and len(set(spent)) == 5
    assert data["config"]["dp_epsilon"] == 1.0 and data["config"]["dp_clip"] == 1.0
    # The same seed again: other noise from the CSPRNG, so other coefficients.
    again, second = _run(tmp_path, "again", "--dp-epsilon", "1", "--rounds", "5")
    assert again.exit_code == 0 and data["config"]["seed"] == second["config"]["seed"]
    assert data["final"]["coef"] != second["final"]["coef"]


def test_a_private_ckks_run_releases_exact_noisy_sums_within_the_target(tmp_path):
    """CKKS is a grid scheme: the same plan, noise and accountant as packed Paillier."""
    out = tmp_path / "ckks.json"
    result = CliRunner().invoke(
        main, ["run", "--scheme", "ckks", "--dp-epsilon", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["scheme"] == "ckks" and data["config"]["dp_epsilon"] == 1.0
    privacy = data["privacy"]
    assert privacy["rounds_released"] == 20 and privacy["min_cohort"] == 5
    z = privacy["noise_multiplier"]
    assert z == pytest.approx(18.09, abs=1e-2)  # calibrated as for Paillier (estimate's line)
    # The key holder's accountant: 20 zCDP releases of 1 / (2 z^2) (the slack is 0.0).
    assert privacy["epsilon"] == epsilon_after(1 / (2 * z * z), 20, 1e-5)
    assert 0.999 <= privacy["epsilon"] <= 1.0


@pytest.mark.parametrize("council", [(), ("--threshold", "3/5")], ids=["key-holder", "3-of-5"])
def test_a_target_the_rounds_cannot_meet_stops_the_run_with_the_model_so_far(tmp_path, council):
    """With a council, every share holder refuses the seventh ticket on its own budget."""
    flags = ("--dp-epsilon", "1", "--dp-noise-multiplier", "10", "--rounds", "20", "--quiet")
    result, data = _run(tmp_path, "stop", *flags, *council)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == (
        "training stopped after 6 rounds: privacy budget spent: 6 release(s) used epsilon "
        "0.99 of 1 (delta 1e-05); one more would reach 1.08"
    )
    assert len(data["rounds"]) == 6 and data["privacy"]["rounds_released"] == 6
    assert np.any(np.asarray(data["final"]["coef"]) != 0) and data["final"]["metric"] > 0.6


#: Private settings that no noise plan exists for (an audit: a math domain error, NaN
#: to int, an overflow and dp-accounting's own errors came out of run and estimate,
#: and estimate printed a noise std of 0 or -18.09 with "epsilon 1").
NO_PLAN = [
    (["--dp-epsilon", "1", "--dp-clip", "0"], "dp_clip must be a finite number > 0"),
    (["--dp-epsilon", "1", "--dp-clip", "-1"], "dp_clip must be a finite number > 0"),
    (["--dp-epsilon", "1", "--dp-clip", "nan"], "dp_clip must be a finite number > 0"),
    (["--dp-epsilon", "1", "--dp-noise-multiplier", "inf"], "dp_noise_multiplier must be"),
    (["--dp-epsilon", "1e300"], "needs less noise than a multiplier of 0.001"),
    (["--dp-epsilon", "1", "--dp-sampling-rate", "1e-300"], "in [1e-06, 1], got 1e-300"),
]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dp-clip", "2"], "--dp-clip sets differential privacy; add --dp-epsilon"),
        (["--dp-epsilon", "1", "--scheme", "plain"], "plain is refused"),
        (["--dp-epsilon", "0"], "dp_epsilon must be a finite number > 0, got 0.0"),
        (["--dp-epsilon", "1", "--executor", "flower"], "no privacy budget yet"),
        *NO_PLAN,
    ],
)
def test_bad_private_runs_are_one_line_errors(flags, message):
    fast = [] if "--scheme" in flags else FAST
    result = CliRunner().invoke(main, ["run", *flags, *fast])
    assert result.exit_code != 0
    assert message in result.output and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize(("flags", "message"), NO_PLAN)
def test_estimate_refuses_what_no_noise_plan_exists_for(flags, message):
    result = CliRunner().invoke(main, ["estimate", *flags, "--privacy-only"])
    assert result.exit_code != 0
    assert message in result.output and result.output.count("\n") == 1, result.output


def test_a_csv_needs_declared_bounds(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    result = CliRunner().invoke(
        main, ["run", "--dataset", str(path), "--target", "y", "--dp-epsilon", "1", *FAST]
    )
    assert result.exit_code != 0 and "public feature bounds" in result.output


def test_estimate_answers_what_noise_and_what_epsilon():
    result = CliRunner().invoke(
        main, ["estimate", "--dp-epsilon", "1", "--rounds", "20", "--privacy-only"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "privacy (record level, clip 1): noise multiplier 18.09, noise std 18.09 per released "
        "sum (0.0362 per released value); epsilon 1 at delta 1e-05 after 20 rounds; the key "
        "holder allows 20 rounds within epsilon 1"
    )
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert result.output.splitlines()[0] in readme  # README shows this very line
    fixed = ["estimate", "--dp-epsilon", "1", "--dp-noise-multiplier", "10", "--privacy-only"]
    assert (
        "the key holder allows 6 rounds within epsilon 1" in CliRunner().invoke(main, fixed).output
    )


def test_client_level_multinomial_and_record_level_regression_run():
    X, y = load_wine(return_X_y=True)
    groups = np.arange(len(y)) % 5
    bounds = (X.min(axis=0), X.max(axis=0))
    options = dict(scheme="paillier-packed", key_bits=1024, allow_insecure=True, rounds=3)
    wine = FederatedLogisticRegression(
        dp_epsilon=4.0, dp_level="client", feature_bounds=bounds, **options
    ).fit(X, y, groups=groups)
    assert wine.coef_.shape == (3, 13) and wine.setup_["privacy"]["level"] == "client"
    assert wine.setup_["privacy"]["rounds_released"] == 3
    assert wine.history_[-1].epsilon <= 4.0
    X, y = load_diabetes(return_X_y=True)
    reg = FederatedLinearRegression(
        dp_epsilon=8.0,
        feature_bounds=(X.min(axis=0), X.max(axis=0)),
        target_bounds=(y.min(), y.max()),
        **options,
    ).fit(X, y, groups=np.arange(len(y)) % 5)
    assert reg.coef_.shape == (10,) and reg.history_[-1].epsilon <= 8.0
    with pytest.raises(ConfigurationError, match="target_bounds"):
        FederatedLinearRegression(
            dp_epsilon=8.0, feature_bounds=(X.min(axis=0), X.max(axis=0)), **options
        ).fit(X, y, groups=np.arange(len(y)) % 5)


@pytest.mark.parametrize(
    ("level", "params"),
    [
        ("record", {"local_epochs": 1}),
        ("record", {"batch_size": 8}),
        ("record", {"prox_mu": 10.0}),
        ("record", {"clip": 0.001}),
        ("client", {"clip": 1000.0}),
    ],
)
def test_a_setting_a_private_fit_would_not_use_is_refused(level, params):
    """An audit found each of these accepted and unused: the private fit clips to
    ``dp_clip``, and at record level takes one DP-SGD step a round."""
    X, y = load_breast_cancer(return_X_y=True)
    name, value = next(iter(params.items()))
    clf = FederatedLogisticRegression(
        dp_epsilon=1.0, dp_level=level, feature_bounds=(X.min(axis=0), X.max(axis=0)), **params
    )
    with pytest.raises(ConfigurationError, match=f"dp_epsilon does not use {name}={value!r}"):
        clf.fit(X, y, groups=np.arange(len(y)) % 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dp_clip": 2.0}, "dp_clip sets differential privacy; add dp_epsilon"),
        ({"dp_level": "client"}, "dp_level sets differential privacy"),
        ({"dp_sampling_rate": 0.1}, "dp_sampling_rate sets differential privacy"),
        ({"feature_bounds": (0.0, 1.0)}, "feature_bounds are the public bounds of a private"),
    ],
)
def test_privacys_settings_without_dp_epsilon_are_refused(params, message):
    """The command line refused these flags; the estimators ran without privacy."""
    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(ConfigurationError, match=message):
        FederatedLogisticRegression(scheme="plain", rounds=1, **params).fit(
            X, y, groups=np.arange(len(y)) % 3
        )


def test_a_record_level_private_fit_refuses_clients_larger_than_max_weight():
    """The plan's range holds ``max_weight`` clipped gradients a client; 190 rows
    against max_weight=2 used to run, with a range sized for two (an audit)."""
    X, y = load_breast_cancer(return_X_y=True)
    clf = FederatedLogisticRegression(
        dp_epsilon=1.0, max_weight=2, feature_bounds=(X.min(axis=0), X.max(axis=0))
    )
    with pytest.raises(ConfigurationError, match="a client holds 190 rows, more than max_weight=2"):
        clf.fit(X, y, groups=np.arange(len(y)) % 3)


@pytest.mark.parametrize("bounds", [(-1e308, 1e308), (-np.inf, 1.0), (0.0, 5e-324)])
def test_bounds_whose_width_is_not_a_finite_positive_number_are_refused(bounds):
    """``(-1e308, 1e308)`` has an infinite width: every feature mapped to 0 and the fit
    returned zeros (an audit)."""
    X, y = load_diabetes(return_X_y=True)
    reg = FederatedLinearRegression(
        dp_epsilon=8.0, feature_bounds=bounds, target_bounds=(y.min(), y.max())
    )
    with pytest.raises(ConfigurationError, match="feature_bounds must"):
        reg.fit(X, y, groups=np.arange(len(y)) % 3)


def test_values_outside_the_public_bounds_are_counted_in_a_warning():
    """Bounds narrower than the data clamp it; the fit says how many values, and
    bounds that hold the data say nothing."""
    X, y = load_diabetes(return_X_y=True)
    options = dict(key_bits=1024, allow_insecure=True, rounds=1, dp_epsilon=8.0)
    groups = np.arange(len(y)) % 3
    narrow = (np.full(10, -0.01), np.full(10, 0.01))
    outside = int(np.count_nonzero(np.abs(X) > 0.01)) + int(np.count_nonzero(y > 300))
    reg = FederatedLinearRegression(feature_bounds=narrow, target_bounds=(0, 300), **options)
    with pytest.warns(DatasetWarning, match=f"^{outside} value\\(s\\) lie outside"):
        reg.fit(X, y, groups=groups)
    wide = (X.min(axis=0), X.max(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        FederatedLinearRegression(
            feature_bounds=wide, target_bounds=(y.min(), y.max()), **options
        ).fit(X, y, groups=groups)


@pytest.mark.slow
def test_acceptance_breast_cancer_at_epsilon_1_full_strength(tmp_path):
    """he-fed run --dp-epsilon 1 --dp-delta 1e-5 on breast_cancer, 5 clients, 2048-bit keys.

    Noise comes from the CSPRNG, so accuracy varies run to run, and no test of one run
    can assert the issue's 0.90 without failing sometimes. The reported model is the
    mean of the last half of the round models: 5,000 runs of the same arithmetic in
    the clear gave 0.932 on average and below 0.90 in 0.70 % of runs, lowest 0.874
    (benchmarks/results/dp_repeats.md, which is where the 0.90 figure is measured).
    This test runs the real command once and asserts 0.85, below the lowest of those
    5,000 runs, so that it fails when training breaks, not by chance.
    """
    out = tmp_path / "accept.json"
    result = CliRunner().invoke(
        main, ["run", "--dp-epsilon", "1", "--dp-delta", "1e-5", "--json", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["privacy"]["epsilon"] <= 1.0 and data["config"]["clients"] == 5
    assert data["final"]["metric"] >= 0.85


def test_the_noise_plan_travels_to_worker_processes():
    """Clients in worker processes get the mechanism as plain data and add their shares."""
    from he_fed.privacy import DPMechanism
    from he_fed.protocol import ClientPlan

    X, y = load_wine(return_X_y=True)
    est = FederatedLogisticRegression(
        scheme="paillier-packed",
        key_bits=1024,
        allow_insecure=True,
        rounds=2,
        dp_epsilon=2.0,
        feature_bounds=(X.min(axis=0), X.max(axis=0)),
        executor="processes",
        workers=2,
    ).fit(X, y, groups=np.arange(len(y)) % 3)
    assert est.setup_["executor"] == "processes"
    assert est.setup_["privacy"]["rounds_released"] == 2 and est.history_[-1].epsilon <= 2.0
    mechanism = DPMechanism("client", 0.5, 3.25, 2, 42, 2.0**-20)
    plan = ClientPlan(model=est.local_model(), classes=est.classes_, privacy=mechanism)
    assert ClientPlan.from_config(plan.to_config()).privacy == mechanism
    assert (
        ClientPlan.from_config(dataclasses.replace(plan, privacy=None).to_config()).privacy is None
    )
