"""Subgroup tables: bootstrap intervals, group order and metadata joined from a labels table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk_metrics

from lesionlib import subgroups
from lesionlib.classes import CLASS_NAMES
from lesionlib.metrics import binary_at_threshold

THRESHOLD = 0.3


def fake_group(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_NAMES), size)
    predictions = np.where(rng.random(size) < 0.7, labels, rng.integers(0, 7, size))
    is_melanoma = (labels == CLASS_NAMES.index("mel")).astype(int)
    melanoma_probability = np.clip(0.2 * is_melanoma + 0.6 * rng.random(size), 0, 1)
    return labels, predictions, is_melanoma, melanoma_probability


def fake_predictions(size: int = 300, seed: int = 0) -> pd.DataFrame:
    labels, predictions, is_melanoma, melanoma_probability = fake_group(size, seed)
    rng = np.random.default_rng(seed + 1)
    frame = pd.DataFrame({"image_id": [f"ISIC_{index:07d}" for index in range(size)],
                          "label": labels, "melanoma": is_melanoma,
                          "prediction": [CLASS_NAMES[index] for index in predictions]})
    for name in CLASS_NAMES:
        frame[name] = rng.random(size)
    frame["mel"] = melanoma_probability
    frame["age_band"] = rng.choice(["75+", "<30", "45-59", "unknown", "30-44"], size)
    return frame


def test_estimates_match_the_reference_metrics():
    labels, predictions, is_melanoma, probability = fake_group(400)
    intervals = subgroups.bootstrap_intervals(labels, predictions, is_melanoma, probability,
                                              THRESHOLD, resamples=200)
    at_threshold = binary_at_threshold(is_melanoma, probability, THRESHOLD)
    expected = {
        "accuracy": sk_metrics.accuracy_score(labels, predictions),
        "balanced_accuracy": sk_metrics.balanced_accuracy_score(labels, predictions),
        "melanoma_sensitivity": at_threshold["sensitivity"],
        "melanoma_specificity": at_threshold["specificity"],
        "melanoma_auc": sk_metrics.roc_auc_score(is_melanoma, probability)}
    for name, value in expected.items():
        estimate, low, high = intervals[name]
        assert estimate == pytest.approx(value), name
        assert low <= estimate <= high and low < high, name


def test_auc_averages_tied_scores_like_sklearn():
    is_melanoma = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    scores = np.array([0.2, 0.2, 0.5, 0.5, 0.9, 0.1, 0.5, 0.3])
    values = subgroups.metric_values(np.zeros(8, int), np.zeros(8, int), is_melanoma, scores,
                                     THRESHOLD)
    assert values["melanoma_auc"] == pytest.approx(sk_metrics.roc_auc_score(is_melanoma, scores))


def test_bootstrap_is_seeded_and_narrows_with_more_images():
    small = fake_group(60)
    first = subgroups.bootstrap_intervals(*small, THRESHOLD, resamples=500, seed=3)
    again = subgroups.bootstrap_intervals(*small, THRESHOLD, resamples=500, seed=3)
    other = subgroups.bootstrap_intervals(*small, THRESHOLD, resamples=500, seed=4)
    assert first == again
    assert first != other
    large = subgroups.bootstrap_intervals(*fake_group(2000), THRESHOLD, resamples=500, seed=3)
    width = {name: high - low for name, (_, low, high) in first.items() if high > low}
    assert len(width) >= 4 and all(large[name][2] - large[name][1] < width[name] for name in width)


def test_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(100):
        correct = rng.random(200) < 0.8  # true accuracy 0.8
        labels = np.zeros(200, int)
        predictions = np.where(correct, 0, 1)
        _, low, high = subgroups.bootstrap_intervals(
            labels, predictions, np.zeros(200, int), np.zeros(200), THRESHOLD, resamples=300,
            seed=trial)["accuracy"]
        covered += low <= 0.8 <= high
    assert 88 <= covered <= 100


def test_undefined_metrics_are_none():
    labels = np.array([5] * 20)  # no melanoma at all
    intervals = subgroups.bootstrap_intervals(labels, labels, np.zeros(20, int),
                                              np.linspace(0, 1, 20), THRESHOLD, resamples=50)
    assert intervals["melanoma_sensitivity"] == (None, None, None)
    assert intervals["melanoma_auc"] == (None, None, None)
    assert intervals["melanoma_specificity"][0] is not None


@pytest.mark.parametrize("arguments, message", [
    (dict(resamples=0), "resamples must be a positive integer"),
    (dict(confidence=95), "confidence must be between 0 and 1")])
def test_bad_arguments_say_what_was_received(arguments, message):
    with pytest.raises(ValueError, match=message):
        subgroups.bootstrap_intervals(*fake_group(30), THRESHOLD, **arguments)
    with pytest.raises(ValueError, match=r"lengths \[3, 2, 3, 3\]"):
        subgroups.bootstrap_intervals([0, 1, 2], [0, 1], [0, 0, 1], [0.1, 0.2, 0.9], THRESHOLD)


def test_table_lists_age_bands_in_age_order_and_scores_only_large_groups():
    frame = fake_predictions()
    frame.loc[frame.index[:5], "age_band"] = "60-74"
    frame.loc[frame["age_band"] == "60-74", "age_band"] = "45-59"
    frame.loc[frame.index[:5], "age_band"] = "60-74"  # a group of five
    table = subgroups.subgroup_table(frame, "age_band", THRESHOLD, resamples=100)
    assert list(table["group"]) == ["<30", "30-44", "45-59", "60-74", "75+", "unknown"]
    small = table[table["group"] == "60-74"].iloc[0]
    assert small["n"] == 5 and pd.isna(small["accuracy"])
    scored = table[table["group"] == "<30"].iloc[0]
    assert scored["accuracy_low"] <= scored["accuracy"] <= scored["accuracy_high"]
    readable = subgroups.readable_table(table)
    assert list(readable.columns[:3]) == ["Group", "Images", "Melanomas"]
    assert readable.loc[0, "Accuracy"].count("(") == 1 and readable.loc[3, "Accuracy"] == ""


def test_unknown_column_is_a_clear_error():
    with pytest.raises(ValueError, match="No subgroup column 'sex'"):
        subgroups.subgroup_table(fake_predictions(), "sex", THRESHOLD)


def test_isic2017_metadata_is_joined_by_image_id():
    predictions = fake_predictions(4)
    labels = pd.DataFrame({"image_id": ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"],
                           "age_approximate": ["55", "unknown", None],
                           "sex": ["female", "male", None]})
    joined = subgroups.with_metadata(predictions.drop(columns="age_band"), labels)
    assert list(joined["age_band"]) == ["45-59", "unknown", "unknown", "unknown"]
    assert list(joined["sex"]) == ["female", "male", "unknown", "unknown"]
    assert subgroups.available(joined) == ["age_band", "sex"]
    kept = subgroups.with_metadata(predictions, labels)
    assert list(kept["age_band"]) == list(predictions["age_band"])  # its own column wins
    assert subgroups.with_metadata(predictions, None) is predictions


def test_melanoma_sensitivity_needs_a_few_melanomas():
    frame = fake_predictions(400)
    frame["age_band"] = "45-59"
    melanoma_rows = frame.index[frame["melanoma"] == 1]
    frame.loc[melanoma_rows[:4], "age_band"] = "<30"
    table = subgroups.subgroup_table(frame, "age_band", THRESHOLD, resamples=50).set_index(
        "group")
    assert table.loc["<30", "melanomas"] == 4
    assert pd.isna(table.loc["<30", "melanoma_sensitivity"])
    assert pd.isna(table.loc["<30", "melanoma_auc"])
    assert not pd.isna(table.loc["<30", "melanoma_specificity"]) or table.loc["<30", "n"] < 10
    assert not pd.isna(table.loc["45-59", "melanoma_sensitivity"])
