"""Selective classification: which predictions to mark "review carefully", chosen on validation.

Two uncertainty scores per image: the normalised entropy of the calibrated probabilities, and,
for an ensemble, how far its members' calibrated probabilities lie from their mean (mean total
variation distance: two confident members naming different classes score high, a diffident
member barely counts). A case is flagged when either score exceeds its threshold. Thresholds are
chosen on the validation split's stored predictions so that the flag marks a clearly riskier
minority: at most ``max_rate`` of the cases, wrong at least ``min_ratio`` times as often as the
unflagged ones, catching as many errors as those two rules allow.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES
from lesionlib.evaluation import is_binary_frame, probabilities_of

MAX_FLAG_RATE = 0.20
MIN_ERROR_RATIO = 2.0
QUANTILE_STEP = 0.005


@dataclasses.dataclass(frozen=True)
class UncertaintyThresholds:
    """Flag thresholds (``inf`` = never flag) and what they gave on the split they were fitted on.

    ``flag_rate`` and ``error_ratio`` are NaN until fitted; ``meets_rule`` says whether the
    fit met the rate/ratio rule (when no pair of thresholds can, nothing is flagged).
    """

    entropy: float = 0.6
    disagreement: float = 0.3
    flag_rate: float = float("nan")
    error_ratio: float = float("nan")
    meets_rule: bool = False


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """0 = certain, 1 = uniform over the classes."""
    probabilities = np.clip(np.asarray(probabilities, "float64"), 1e-12, 1.0)
    return -(probabilities * np.log(probabilities)).sum(axis=-1) / np.log(probabilities.shape[-1])


def member_disagreement(member_probabilities) -> np.ndarray:
    """Mean total-variation distance of each member's probabilities from the members' mean.

    Args:
        member_probabilities: ``(members, n, classes)`` or a list of ``(n, classes)`` arrays.

    Returns:
        ``(n,)`` scores in [0, 1]; zeros for fewer than two members.
    """
    members = np.asarray(member_probabilities, "float64")
    if members.ndim == 2:
        members = members[:, None, :]
    if len(members) < 2:
        return np.zeros(members.shape[1])
    mean = members.mean(axis=0)
    return (0.5 * np.abs(members - mean).sum(axis=-1)).mean(axis=0)


def flag_mask(entropy, disagreement, thresholds: UncertaintyThresholds) -> np.ndarray:
    flags = np.asarray(entropy) > thresholds.entropy
    if disagreement is not None:
        flags |= np.asarray(disagreement) > thresholds.disagreement
    return flags


def error_ratio(flags: np.ndarray, correct: np.ndarray) -> float:
    """Error rate of the flagged cases over that of the unflagged (``inf`` if the latter is 0)."""
    flags, wrong = np.asarray(flags, bool), ~np.asarray(correct, bool)
    if not flags.any() or flags.all():
        return float("nan")
    flagged, unflagged = wrong[flags].mean(), wrong[~flags].mean()
    return float("inf") if unflagged == 0 else float(flagged / unflagged)


def _candidates(score: np.ndarray | None, max_rate: float) -> np.ndarray:
    if score is None:
        return np.array([np.inf])
    levels = np.arange(1.0 - max_rate, 1.0, QUANTILE_STEP)
    return np.append(np.unique(np.quantile(score, levels)), np.inf)


def select_thresholds(entropy, disagreement, correct, max_rate: float = MAX_FLAG_RATE,
                      min_ratio: float = MIN_ERROR_RATIO) -> UncertaintyThresholds:
    """The entropy (and disagreement) thresholds that catch the most errors within the rule.

    Args:
        entropy: ``(n,)`` normalised entropies on the fitting split.
        disagreement: ``(n,)`` member disagreement, or ``None`` for a single model.
        correct: ``(n,)`` whether the top class was right.
        max_rate: the largest share of cases that may be flagged.
        min_ratio: the smallest allowed error-rate ratio, flagged over unflagged.
    """
    entropy, correct = np.asarray(entropy, "float64"), np.asarray(correct, bool)
    disagreement = None if disagreement is None else np.asarray(disagreement, "float64")
    best, best_key = None, None
    for entropy_threshold in _candidates(entropy, max_rate):
        for disagreement_threshold in _candidates(disagreement, max_rate):
            thresholds = UncertaintyThresholds(float(entropy_threshold),
                                               float(disagreement_threshold))
            flags = flag_mask(entropy, disagreement, thresholds)
            rate, ratio = float(flags.mean()), error_ratio(flags, correct)
            if not (0 < rate <= max_rate) or not ratio >= min_ratio:
                continue
            key = (int((flags & ~correct).sum()), ratio)
            if best_key is None or key > best_key:
                best, best_key = dataclasses.replace(thresholds, flag_rate=rate,
                                                     error_ratio=ratio, meets_rule=True), key
    return best or UncertaintyThresholds(float("inf"), float("inf"), 0.0, float("nan"), False)


def combined_score(entropy, disagreement, thresholds: UncertaintyThresholds) -> np.ndarray:
    """One ranking score: the largest score-to-threshold ratio (a case is flagged when > 1)."""
    entropy = np.asarray(entropy, "float64")
    score = entropy / thresholds.entropy if np.isfinite(thresholds.entropy) else entropy
    if disagreement is not None and np.isfinite(thresholds.disagreement):
        score = np.maximum(score, np.asarray(disagreement) / thresholds.disagreement)
    return score


def risk_coverage(score, correct, coverages=np.round(np.arange(0.5, 1.0001, 0.05), 2)):
    """Error rate among the ``coverage`` share of cases with the lowest score.

    Returns:
        A frame with ``coverage``, ``risk`` (error rate of the accepted cases) and ``n``
        (accepted cases), one row per requested coverage.
    """
    order = np.argsort(np.asarray(score), kind="stable")
    wrong = ~np.asarray(correct, bool)[order]
    rows = []
    for coverage in coverages:
        count = max(1, int(round(coverage * len(order))))
        rows.append({"coverage": float(coverage), "risk": float(wrong[:count].mean()),
                     "n": count})
    return pd.DataFrame(rows)


def stored_scores(frame: pd.DataFrame, member_frames: list[pd.DataFrame] | None = None):
    """Entropy, member disagreement (``None`` for a single model) and correctness of stored
    predictions (``weights/<id>/predictions/<set>.csv``), restricted to labelled rows.

    Raises:
        ValueError: a member's file lacks images of the model's file.
    """
    frame = frame[frame["label"] >= 0].reset_index(drop=True)
    if is_binary_frame(frame):  # a binary melanoma model: correct on melanoma vs the rest
        probabilities = probabilities_of(frame)
        correct = (frame["prediction"] == "mel").to_numpy() == frame["melanoma"].astype(
            bool).to_numpy()
        return normalised_entropy(probabilities), None, correct
    probabilities = frame[list(CLASS_NAMES)].to_numpy("float64")
    correct = probabilities.argmax(axis=1) == frame["label"].to_numpy()
    disagreement = None
    if member_frames:
        aligned = []
        for member in member_frames:
            indexed = member.drop_duplicates("image_id").set_index("image_id")
            missing = set(frame["image_id"]) - set(indexed.index)
            if missing:
                raise ValueError(f"A member's stored predictions lack {len(missing)} of the "
                                 f"{len(frame)} images (e.g. {sorted(missing)[0]}); expected "
                                 "the same images as the ensemble's. Re-run evaluate.")
            aligned.append(indexed.loc[frame["image_id"], list(CLASS_NAMES)].to_numpy("float64"))
        disagreement = member_disagreement(aligned)
    return normalised_entropy(probabilities), disagreement, correct
