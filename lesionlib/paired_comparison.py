"""Paired comparison of two models on the same images: each metric's difference with a bootstrap
interval, from stored predictions.

Both models are resampled on the same images in every bootstrap draw, so the interval is that of
the difference, much narrower than two separate intervals would suggest. This answers "did the
new version really fall on PH2?" with figures, where a ship rule compares point estimates.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lesionlib.evaluation import probabilities_of
from lesionlib.subgroups import (DEFAULT_RESAMPLES, DEFAULT_SEED, metric_values,
                                 percentile_interval)


def paired_differences(before: pd.DataFrame, after: pd.DataFrame, before_threshold: float,
                       after_threshold: float, resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_SEED, confidence: float = 0.95) -> dict:
    """``after - before`` of every metric, with a paired percentile-bootstrap interval.

    Args:
        before, after: stored predictions of one set (``image_id``, ``label``, ``melanoma`` and
            one probability column per class, ``mel`` among them), of the two models.
        before_threshold, after_threshold: each model's melanoma operating threshold.
        resamples, seed, confidence: of the bootstrap (images resampled with replacement, the
            same draws for both models).

    Returns:
        ``{metric: (before, after, difference, low, high)}``; ``None`` where undefined.

    Raises:
        ValueError: the two tables do not hold the same images with the same labels.
    """
    if len(before) != len(after) or not len(before) or (
            before["image_id"].to_numpy() != after["image_id"].to_numpy()).any():
        raise ValueError(f"Expected the predictions of two models on the same images in the same "
                         f"order; received {len(before)} and {len(after)} rows"
                         f"{'' if len(before) != len(after) else ' with other image ids'}.")
    if ((before["label"].to_numpy() != after["label"].to_numpy()).any()
            or (before["melanoma"].to_numpy() != after["melanoma"].to_numpy()).any()):
        raise ValueError("The two tables give other labels for the same images; expected the "
                         "same reference labels.")
    labels = before["label"].to_numpy()
    is_melanoma = before["melanoma"].to_numpy().astype(bool)
    models = []
    for frame, threshold in ((before, before_threshold), (after, after_threshold)):
        models.append((probabilities_of(frame).argmax(axis=1), frame["mel"].to_numpy("float64"),
                       threshold))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(labels), size=(resamples, len(labels)))
    point, drawn = [], []
    for predictions, melanoma_probability, threshold in models:
        point.append(metric_values(labels, predictions, is_melanoma, melanoma_probability,
                                   threshold))
        drawn.append(metric_values(labels[indices], predictions[indices], is_melanoma[indices],
                                   melanoma_probability[indices], threshold))
    result = {}
    for name in point[0]:
        was, now = (float(values[name]) for values in point)
        interval = percentile_interval(drawn[1][name] - drawn[0][name], confidence)
        if np.isnan(was) or np.isnan(now) or interval is None:
            result[name] = (None if np.isnan(was) else was, None if np.isnan(now) else now,
                            None, None, None)
            continue
        result[name] = (was, now, now - was, *interval)
    return result
