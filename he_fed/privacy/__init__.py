"""Differential privacy on top of secure aggregation.

Clients clip (:func:`clipped_gradient_sum` per record, :func:`clip_update` per
client) and add a share of distributed discrete Gaussian noise on the scheme's
integer grid (:class:`DPMechanism`), so no party ever sees an un-noised sum. The
key holder holds a :class:`PrivacyBudget`, charges every release with Google's
``dp-accounting`` and refuses any release past the target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.privacy._accountant import (
        ACCOUNTANT,
        calibrate_noise_multiplier,
        check_target,
        epsilon_after,
    )
    from he_fed.privacy._budget import PrivacyBudget
    from he_fed.privacy._clipping import (
        clip_update,
        clipped_gradient_mean,
        clipped_gradient_sum,
        fedsgd_step,
        per_record_gradients,
    )
    from he_fed.privacy._discrete_gaussian import sample_discrete_gaussian
    from he_fed.privacy._mechanism import LEVELS, DPMechanism
    from he_fed.privacy._plan import (
        GRID_SCHEMES,
        plan_mechanism,
        privacy_estimate,
        private_setup,
        value_range,
    )

__all__ = [
    "ACCOUNTANT",
    "GRID_SCHEMES",
    "LEVELS",
    "DPMechanism",
    "PrivacyBudget",
    "calibrate_noise_multiplier",
    "check_target",
    "clip_update",
    "clipped_gradient_mean",
    "clipped_gradient_sum",
    "epsilon_after",
    "fedsgd_step",
    "per_record_gradients",
    "plan_mechanism",
    "privacy_estimate",
    "private_setup",
    "sample_discrete_gaussian",
    "value_range",
]

__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.privacy._accountant": (
            "ACCOUNTANT",
            "calibrate_noise_multiplier",
            "check_target",
            "epsilon_after",
        ),
        "he_fed.privacy._budget": ("PrivacyBudget",),
        "he_fed.privacy._clipping": (
            "clip_update",
            "clipped_gradient_mean",
            "clipped_gradient_sum",
            "fedsgd_step",
            "per_record_gradients",
        ),
        "he_fed.privacy._discrete_gaussian": ("sample_discrete_gaussian",),
        "he_fed.privacy._mechanism": (
            "LEVELS",
            "DPMechanism",
        ),
        "he_fed.privacy._plan": (
            "GRID_SCHEMES",
            "plan_mechanism",
            "privacy_estimate",
            "private_setup",
            "value_range",
        ),
    },
)
