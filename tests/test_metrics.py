"""Metrics against scikit-learn on known inputs, calibration and threshold choice."""

import numpy as np
import pytest
from sklearn import metrics as sk

from lesionlib import metrics
from lesionlib.classes import MELANOMA_INDEX

LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 4, 4, 5, 5, 5])
PROBABILITIES = np.full((12, 7), 0.02)
for row, predicted in enumerate([0, 1, 2, 5, 4, 5, 6, 5, 4, 5, 4, 5]):
    PROBABILITIES[row, predicted] = 0.88


def test_classification_report_matches_scikit_learn():
    report = metrics.classification_report(LABELS, PROBABILITIES, melanoma_threshold=0.5)
    predictions = PROBABILITIES.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(sk.accuracy_score(LABELS, predictions))
    assert report["balanced_accuracy"] == pytest.approx(
        sk.balanced_accuracy_score(LABELS, predictions))
    assert report["macro_f1"] == pytest.approx(sk.f1_score(LABELS, predictions, average="macro"))
    assert report["confusion_matrix"] == sk.confusion_matrix(LABELS, predictions).tolist()
    assert report["per_class"]["mel"]["recall"] == pytest.approx(2 / 3)
    assert report["melanoma_auc"] == pytest.approx(
        sk.roc_auc_score(LABELS == MELANOMA_INDEX, PROBABILITIES[:, MELANOMA_INDEX]))
    assert report["melanoma_sensitivity"] == pytest.approx(2 / 3)
    assert report["melanoma_specificity"] == pytest.approx(8 / 9)


def test_balanced_accuracy_is_mean_recall_not_accuracy():
    labels = np.array([5] * 9 + [4])
    predictions = np.array([5] * 10)
    assert metrics.balanced_accuracy(labels, predictions) == pytest.approx(0.5)


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, gap 0.4; bin 0.6: accuracy 1.0, gap 0.4 -> ECE 0.4
    assert metrics.expected_calibration_error(labels, probabilities) == pytest.approx(0.4)


def test_temperature_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 7))
    true_probabilities = np.exp(logits / 2.0)
    true_probabilities /= true_probabilities.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(7, p=p) for p in true_probabilities])
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    temperature = metrics.fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(2.0, rel=0.1)
    before = metrics.expected_calibration_error(labels, overconfident)
    after = metrics.expected_calibration_error(
        labels, metrics.apply_temperature(overconfident, temperature))
    assert after < before / 2


def test_melanoma_threshold_reaches_target_sensitivity():
    rng = np.random.default_rng(1)
    is_melanoma = rng.random(500) < 0.2
    scores = np.clip(is_melanoma * 0.3 + rng.random(500) * 0.7, 0, 1)
    threshold = metrics.choose_melanoma_threshold(is_melanoma, scores, 0.85)
    result = metrics.binary_at_threshold(is_melanoma, scores, threshold)
    assert result["sensitivity"] >= 0.85
    slightly_higher = metrics.binary_at_threshold(is_melanoma, scores, threshold + 1e-9)
    assert slightly_higher["sensitivity"] < 0.85  # the highest such threshold


def test_threshold_needs_melanoma_cases():
    with pytest.raises(ValueError, match="No melanoma"):
        metrics.choose_melanoma_threshold(np.zeros(5), np.zeros(5))
