"""lesionlib.paired_comparison: the difference of two models on the same images, with a paired
bootstrap interval."""

import numpy as np
import pandas as pd
import pytest

from lesionlib.classes import CLASS_NAMES
from lesionlib.paired_comparison import paired_differences


def predictions(mel_scores, labels) -> pd.DataFrame:
    """Stored-prediction rows: melanoma probability as given, the rest on the labelled class."""
    rows = []
    for index, (score, label) in enumerate(zip(mel_scores, labels)):
        probabilities = np.full(len(CLASS_NAMES), (1 - score) / (len(CLASS_NAMES) - 1))
        probabilities[CLASS_NAMES.index("mel")] = score
        rows.append({"image_id": f"IMG{index}", "label": label,
                     "melanoma": int(label == CLASS_NAMES.index("mel")),
                     **dict(zip(CLASS_NAMES, probabilities))})
    return pd.DataFrame(rows)


LABELS = [CLASS_NAMES.index("mel")] * 20 + [CLASS_NAMES.index("nv")] * 40


def test_a_model_against_itself_differs_by_nothing():
    rng = np.random.default_rng(1)
    frame = predictions(rng.uniform(size=60), LABELS)
    figures = paired_differences(frame, frame.copy(), 0.5, 0.5, resamples=200)
    assert figures["melanoma_auc"][2:] == (0.0, 0.0, 0.0)
    assert figures["balanced_accuracy"][2:] == (0.0, 0.0, 0.0)


def test_a_clearly_better_model_has_an_interval_above_zero():
    rng = np.random.default_rng(2)
    guessing = predictions(rng.uniform(size=60), LABELS)
    separating = predictions([0.9] * 20 + [0.1] * 40, LABELS)
    was, now, difference, low, high = paired_differences(
        guessing, separating, 0.5, 0.5, resamples=500)["melanoma_auc"]
    assert now == 1.0 and difference == pytest.approx(now - was)
    assert 0 < low <= difference <= high


def test_other_images_or_labels_are_refused():
    frame = predictions([0.5] * 60, LABELS)
    with pytest.raises(ValueError, match="same images"):
        paired_differences(frame, frame.iloc[:-1], 0.5, 0.5)
    relabelled = frame.copy()
    relabelled.loc[0, "label"] = CLASS_NAMES.index("nv")
    with pytest.raises(ValueError, match="other labels"):
        paired_differences(frame, relabelled, 0.5, 0.5)
