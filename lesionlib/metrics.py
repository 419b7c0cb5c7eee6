"""Classification and calibration metrics, on top of scikit-learn.

Everything takes integer labels and an ``(n, classes)`` probability matrix computed from real
predictions. Thresholds and temperatures are fitted on validation data by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as sk_metrics

from lesionlib.classes import CLASS_NAMES, MELANOMA_INDEX


def balanced_accuracy(labels, predictions) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    return float(sk_metrics.balanced_accuracy_score(labels, predictions))


def expected_calibration_error(labels, probabilities, bins: int = 15) -> float:
    """Top-label ECE: the bin-weighted gap between confidence and accuracy (equal-width bins)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype="float64")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    indices = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for bin_index in range(bins):
        in_bin = indices == bin_index
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def reliability_curve(labels, probabilities, bins: int = 10) -> dict[str, list[float]]:
    """Per-bin mean confidence, accuracy and count (for a reliability diagram)."""
    probabilities = np.asarray(probabilities, dtype="float64")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    indices = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    curve = {"confidence": [], "accuracy": [], "count": []}
    for bin_index in range(bins):
        in_bin = indices == bin_index
        if in_bin.any():
            curve["confidence"].append(float(confidence[in_bin].mean()))
            curve["accuracy"].append(float(correct[in_bin].mean()))
            curve["count"].append(int(in_bin.sum()))
    return curve


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Rescale probabilities as softmax(log(p) / T)."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype="float64"), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(labels, probabilities) -> float:
    """The temperature in [0.05, 20] minimising negative log-likelihood (fit on validation)."""
    labels = np.asarray(labels)

    def negative_log_likelihood(log_temperature):
        scaled = apply_temperature(probabilities, float(np.exp(log_temperature)))
        return -np.mean(np.log(np.clip(scaled[np.arange(len(labels)), labels], 1e-12, 1.0)))

    result = minimize_scalar(negative_log_likelihood, bounds=(np.log(0.05), np.log(20.0)),
                             method="bounded")
    return float(np.exp(result.x))


def choose_melanoma_threshold(is_melanoma, melanoma_probability,
                              target_sensitivity: float = 0.85) -> float:
    """The highest threshold whose sensitivity reaches ``target_sensitivity`` (fit on validation).

    Favouring sensitivity suits a review tool: a missed melanoma costs more than a second look.
    """
    is_melanoma = np.asarray(is_melanoma).astype(bool)
    if not is_melanoma.any():
        raise ValueError("No melanoma among the labels; cannot choose a threshold.")
    false_positive_rate, true_positive_rate, thresholds = sk_metrics.roc_curve(
        is_melanoma, melanoma_probability)
    reaching = np.flatnonzero(true_positive_rate >= target_sensitivity)
    threshold = float(thresholds[reaching[0]])
    return float(min(threshold, 1.0))


def binary_at_threshold(is_melanoma, melanoma_probability, threshold: float) -> dict:
    is_melanoma = np.asarray(is_melanoma).astype(bool)
    flagged = np.asarray(melanoma_probability) >= threshold
    positives, negatives = is_melanoma.sum(), (~is_melanoma).sum()
    return {
        "threshold": float(threshold),
        "sensitivity": float((flagged & is_melanoma).sum() / positives) if positives else None,
        "specificity": float((~flagged & ~is_melanoma).sum() / negatives) if negatives else None,
    }


def _safe_auc(binary_labels, scores):
    binary_labels = np.asarray(binary_labels)
    if binary_labels.min() == binary_labels.max():
        return None
    return float(sk_metrics.roc_auc_score(binary_labels, scores))


def classification_report(labels, probabilities, melanoma_threshold: float) -> dict:
    """All multi-class metrics for one set of predictions (labels in 0..6)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    predictions = probabilities.argmax(axis=1)
    class_indices = list(range(len(CLASS_NAMES)))
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        labels, predictions, labels=class_indices, zero_division=0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i]),
               "auc_one_vs_rest": _safe_auc(labels == i, probabilities[:, i])}
        for i, name in enumerate(CLASS_NAMES)}
    present = [i for i in class_indices if support[i] > 0]
    report = {
        "n": int(len(labels)),
        "accuracy": float(sk_metrics.accuracy_score(labels, predictions)),
        "balanced_accuracy": balanced_accuracy(labels, predictions),
        "macro_f1": float(np.mean(f1[present])) if present else None,
        "per_class": per_class,
        "confusion_matrix": sk_metrics.confusion_matrix(
            labels, predictions, labels=class_indices).tolist(),
        "ece": expected_calibration_error(labels, probabilities),
    }
    report.update(melanoma_report(labels == MELANOMA_INDEX, probabilities[:, MELANOMA_INDEX],
                                  melanoma_threshold))
    return report


def melanoma_report(is_melanoma, melanoma_probability, threshold: float) -> dict:
    """Melanoma vs the rest: AUC, and sensitivity/specificity at the operating threshold."""
    at_threshold = binary_at_threshold(is_melanoma, melanoma_probability, threshold)
    return {"melanoma_auc": _safe_auc(np.asarray(is_melanoma).astype(int), melanoma_probability),
            "melanoma_sensitivity": at_threshold["sensitivity"],
            "melanoma_specificity": at_threshold["specificity"],
            "melanoma_threshold": float(threshold),
            "n_melanoma": int(np.asarray(is_melanoma).sum())}
