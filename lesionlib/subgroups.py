"""Subgroup performance with bootstrap confidence intervals, from stored predictions.

HAM10000's stored predictions carry their metadata (age band, sex, body site, how the diagnosis
was confirmed). The external research sets keep only ids and labels in the model folders; their
metadata stays in ``../shared/data/<set>/labels.csv`` and is joined here by ``image_id`` when that
folder is present (ISIC 2017: ``age_approximate`` and ``sex``, known for its val split only).

Every interval is a seeded percentile bootstrap within the group (images resampled with
replacement), so a table is the same on every run. Nothing here imports Streamlit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lesionlib.classes import CLASS_NAMES, MELANOMA_INDEX
from lesionlib.data import age_bands

AGE_BAND_ORDER = ("<30", "30-44", "45-59", "60-74", "75+", "unknown")
METADATA_COLUMNS = ("age_band", "sex", "localization", "dx_type")
METRICS = {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy",
           "melanoma_sensitivity": "Melanoma sensitivity",
           "melanoma_specificity": "Melanoma specificity", "melanoma_auc": "Melanoma AUC"}
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
MIN_GROUP_SIZE = 10
MIN_MELANOMAS = 5  # fewer: the bootstrap of sensitivity and AUC collapses (e.g. 0.00-0.00)
_NEEDS_MELANOMAS = ("melanoma_sensitivity", "melanoma_auc")


def dataset_metadata(labels: pd.DataFrame) -> pd.DataFrame:
    """A dataset's ``labels.csv`` reduced to ``image_id`` and the subgroup columns it has.

    ISIC 2017's ``age_approximate`` (numbers, ``unknown`` or blank) becomes ``age`` and
    ``age_band``; blank text becomes ``unknown``.
    """
    if "image_id" not in labels.columns:
        raise ValueError(f"A labels table needs an 'image_id' column; received columns "
                         f"{list(labels.columns)}.")
    frame = labels[["image_id"]].copy()
    age_column = "age" if "age" in labels.columns else (
        "age_approximate" if "age_approximate" in labels.columns else None)
    if age_column is not None:
        frame["age"] = pd.to_numeric(labels[age_column], errors="coerce")
        frame["age_band"] = age_bands(frame["age"])
    for column in ("sex", "localization", "dx_type"):
        if column in labels.columns:
            frame[column] = labels[column].fillna("unknown").astype(str)
    return frame


def with_metadata(frame: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """Stored predictions with the subgroup columns they lack, joined from ``labels``.

    Columns already in ``frame`` are kept as they are; ``frame`` is returned unchanged when
    ``labels`` is ``None`` (the dataset is not here). Images missing from ``labels`` get
    ``unknown``.
    """
    if labels is None:
        return frame
    metadata = dataset_metadata(labels)
    wanted = [column for column in metadata.columns
              if column != "image_id" and column not in frame.columns]
    if not wanted:
        return frame
    joined = frame.merge(metadata[["image_id", *wanted]], on="image_id", how="left")
    for column in wanted:
        if column != "age":
            joined[column] = joined[column].fillna("unknown")
    joined.index = frame.index
    return joined


def available(frame: pd.DataFrame) -> list[str]:
    """The subgroup columns of ``frame`` with at least one known (not ``unknown``) value."""
    return [column for column in METADATA_COLUMNS if column in frame.columns
            and (frame[column].fillna("unknown").astype(str) != "unknown").any()]


def group_order(values: pd.Series, column: str) -> list[str]:
    """The groups of ``column`` in reading order: age bands youngest first, others largest first,
    ``unknown`` last."""
    counts = values.astype(str).value_counts()
    if column == "age_band":
        known = [band for band in AGE_BAND_ORDER if band in counts.index]
        return known + sorted(set(counts.index) - set(known))
    order = [value for value in counts.index if value != "unknown"]
    return order + (["unknown"] if "unknown" in counts.index else [])


# ----------------------------------------------------------------------------- metrics

def _recall_mean(labels: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Balanced accuracy of each row (mean recall over the classes present in that row)."""
    recalls = []
    for class_index in range(len(CLASS_NAMES)):
        of_class = labels == class_index
        count = of_class.sum(axis=-1)
        hits = (of_class & correct).sum(axis=-1)
        recalls.append(np.where(count > 0, hits / np.maximum(count, 1), np.nan))
    with np.errstate(all="ignore"):
        return np.nanmean(np.stack(recalls), axis=0) if recalls else np.nan


def _auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rank-based ROC AUC of each row (NaN where a row has only one outcome); ties averaged."""
    ranks = stats.rankdata(scores, axis=-1)
    positives = positive.sum(axis=-1)
    negatives = positive.shape[-1] - positives
    rank_sum = (ranks * positive).sum(axis=-1)
    with np.errstate(all="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _rate(events: np.ndarray, of: np.ndarray) -> np.ndarray:
    count = of.sum(axis=-1)
    with np.errstate(all="ignore"):
        return np.where(count > 0, (events & of).sum(axis=-1) / np.maximum(count, 1), np.nan)


def metric_values(labels, predictions, is_melanoma, melanoma_probability,
                  threshold: float) -> dict[str, np.ndarray]:
    """Every subgroup metric, for one sample (1-D inputs) or many (2-D, one row per resample).

    Undefined values (e.g. sensitivity without a melanoma) are NaN.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    is_melanoma = np.asarray(is_melanoma).astype(bool)
    melanoma_probability = np.asarray(melanoma_probability, dtype="float64")
    correct = labels == predictions
    flagged = melanoma_probability >= threshold
    return {"accuracy": correct.mean(axis=-1),
            "balanced_accuracy": _recall_mean(labels, correct),
            "melanoma_sensitivity": _rate(flagged, is_melanoma),
            "melanoma_specificity": _rate(~flagged, ~is_melanoma),
            "melanoma_auc": _auc(is_melanoma, melanoma_probability)}


def bootstrap_intervals(labels, predictions, is_melanoma, melanoma_probability,
                        threshold: float, resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED, confidence: float = 0.95) -> dict:
    """Point estimate and percentile-bootstrap interval of every metric of one group.

    Args:
        labels: true class indices.
        predictions: predicted class indices.
        is_melanoma: 0/1 melanoma reference.
        melanoma_probability: calibrated melanoma probabilities.
        threshold: the model's melanoma operating threshold (flag when ``>=``).
        resamples: bootstrap resamples. Defaults to ``1000``.
        seed: seed of the resampling generator. Defaults to ``0``.
        confidence: interval coverage. Defaults to ``0.95``.

    Returns:
        ``{metric: (estimate, low, high)}``; ``None`` parts where the metric is undefined
        (a resample where it is undefined is left out of its interval).

    Raises:
        ValueError: the inputs differ in length, are empty, or ``resamples``/``confidence`` are
            out of range.
    """
    arrays = [np.asarray(values) for values in (labels, predictions, is_melanoma,
                                                  melanoma_probability)]
    if len({len(values) for values in arrays}) != 1 or not len(arrays[0]):
        raise ValueError(f"Expected four non-empty arrays of one length; received lengths "
                         f"{[len(values) for values in arrays]}.")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer; received {resamples!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1; received {confidence!r}.")
    estimates = metric_values(*arrays, threshold)
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(arrays[0]), size=(resamples, len(arrays[0])))
    resampled = metric_values(*[values[indices] for values in arrays], threshold)
    result = {}
    for name, estimate in estimates.items():
        interval = percentile_interval(resampled[name], confidence)
        if np.isnan(estimate) or interval is None:
            result[name] = (None if np.isnan(estimate) else float(estimate), None, None)
            continue
        result[name] = (float(estimate), *interval)
    return result


def percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The central ``confidence`` interval of bootstrap values (NaN draws left out; ``None``
    when every draw is NaN)."""
    values = resampled[~np.isnan(resampled)]
    if not len(values):
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def subgroup_table(frame: pd.DataFrame, column: str, threshold: float,
                   min_size: int = MIN_GROUP_SIZE, resamples: int = DEFAULT_RESAMPLES,
                   seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """One row per group of ``column``: size, melanoma count, and each metric with its 95% CI.

    Columns: ``group``, ``n``, ``melanomas`` and, per metric, ``<metric>``, ``<metric>_low`` and
    ``<metric>_high`` (blank for groups under ``min_size`` images, listed but not scored, and
    melanoma sensitivity and AUC blank for groups with fewer than ``MIN_MELANOMAS``).
    Rows follow ``group_order``. Each group is resampled with the same ``seed``, so its
    interval does not depend on the other groups.

    Raises:
        ValueError: ``column`` is not in ``frame`` (the message lists those that are).
    """
    if column not in frame.columns:
        raise ValueError(f"No subgroup column {column!r}; the predictions have "
                         f"{available(frame) or 'no subgroup columns'}.")
    values = frame[column].astype(str)
    rows = []
    for group in group_order(values, column):
        members = frame[values == group]
        row = {"group": group, "n": len(members), "melanomas": int(members["melanoma"].sum())}
        if len(members) >= min_size:
            intervals = bootstrap_intervals(
                members["label"].to_numpy(int),
                np.asarray([CLASS_NAMES.index(name) for name in members["prediction"]]),
                members["melanoma"].to_numpy(int),
                members[CLASS_NAMES[MELANOMA_INDEX]].to_numpy("float64"), threshold,
                resamples=resamples, seed=seed)
            for name, (estimate, low, high) in intervals.items():
                if name in _NEEDS_MELANOMAS and row["melanomas"] < MIN_MELANOMAS:
                    continue
                row.update({name: estimate, f"{name}_low": low, f"{name}_high": high})
        rows.append(row)
    columns = ["group", "n", "melanomas"] + [f"{name}{suffix}" for name in METRICS
                                             for suffix in ("", "_low", "_high")]
    return pd.DataFrame(rows).reindex(columns=columns)


def readable_table(table: pd.DataFrame) -> pd.DataFrame:
    """``subgroup_table`` as short text cells, ``0.82 (0.75–0.88)``, blank where not scored."""
    readable = table[["group", "n", "melanomas"]].copy()
    for name, title in METRICS.items():
        if name not in table.columns:
            continue
        readable[title] = [
            "" if pd.isna(estimate) else f"{estimate:.2f}" + (
                "" if pd.isna(low) else f" ({low:.2f}–{high:.2f})")
            for estimate, low, high in zip(table[name], table[f"{name}_low"],
                                           table[f"{name}_high"])]
    return readable.rename(columns={"group": "Group", "n": "Images", "melanomas": "Melanomas"})
