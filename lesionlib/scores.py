"""What one pass of a classifier over images returns (shared by Keras and TFLite models)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Scores:
    """One pass of a classifier over images: calibrated probabilities, each member's calibrated
    probabilities and each member's pooled gate features (``None`` where not computed)."""

    probabilities: np.ndarray
    member_probabilities: list[np.ndarray]
    member_features: list[np.ndarray | None]


__all__ = ["Scores"]
