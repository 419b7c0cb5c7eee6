"""Plot-ready tables for the dashboard, computed from cards and stored predictions.

Every function takes plain data (``ModelCard``, ``Prediction``, the prediction frames written by
``lesionlib.evaluation``) and returns a pandas ``DataFrame`` or NumPy array that a page can draw
as is. Nothing here imports Streamlit or loads a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn import metrics as sk_metrics

from lesionlib.classes import CLASS_LONG_NAMES, CLASS_NAMES, MELANOMA_INDEX
from lesionlib.evaluation import (SUBGROUP_COLUMNS, binary_answers, probabilities_of,
                                  subgroup_report)
from lesionlib.metrics import binary_at_threshold, reliability_curve

SET_TITLES = {
    "ham10000_val": "HAM10000 validation split",
    "ham10000_test": "HAM10000 test split",
    "isic2017": "ISIC 2017 val+test (external)",
    "ph2": "PH2 (external)",
    "bcn20000_val": "BCN20000 validation split (another clinic, 84x84 px)",
    "bcn20000_test": "BCN20000 test split (another clinic, 84x84 px)",
}
SUBGROUP_TITLES = {"age_band": "Age band", "sex": "Sex", "localization": "Body site",
                   "dx_type": "How the diagnosis was confirmed"}
SUMMARY_METRICS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro F1",
    "melanoma_auc": "Melanoma AUC", "melanoma_sensitivity": "Melanoma sensitivity",
    "melanoma_specificity": "Melanoma specificity", "ece": "ECE (calibrated)",
}


def probability_table(probabilities: Mapping[str, float]) -> pd.DataFrame:
    """One row per class, in class order: code, long name, probability and a percent label."""
    rows = [{"class": name, "diagnosis": CLASS_LONG_NAMES[name],
             "probability": float(probabilities[name]),
             "percent": f"{100 * float(probabilities[name]):.1f}%"} for name in CLASS_NAMES]
    return pd.DataFrame(rows)


def labelled(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of a prediction frame whose true class is one of the seven (``label >= 0``)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["label", "true_class", "prediction", *CLASS_NAMES])
    return frame[frame["label"] >= 0]


def confusion_counts(frame: pd.DataFrame) -> np.ndarray:
    """``(7, 7)`` counts, rows = true class, columns = predicted class, from stored predictions."""
    frame = labelled(frame)
    predicted = [CLASS_NAMES.index(name) for name in frame["prediction"]]
    return sk_metrics.confusion_matrix(frame["label"].to_numpy(int), np.asarray(predicted, int),
                                       labels=list(range(len(CLASS_NAMES))))


def normalise_rows(matrix) -> np.ndarray:
    """Divide each row by its sum (a row of zeros stays zero): per-true-class recall view."""
    matrix = np.asarray(matrix, dtype="float64")
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def per_class_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 and support per class present in the labels or predictions."""
    frame = labelled(frame)
    labels = frame["label"].to_numpy(int)
    predicted = np.asarray([CLASS_NAMES.index(name) for name in frame["prediction"]], int)
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(CLASS_NAMES))), zero_division=0)
    table = pd.DataFrame({"class": CLASS_NAMES, "precision": precision, "recall": recall,
                          "f1": f1, "support": support.astype(int)})
    return table[(table["support"] > 0) | np.isin(np.arange(len(CLASS_NAMES)), predicted)]


def roc_points(frame: pd.DataFrame, class_name: str) -> tuple[pd.DataFrame, float | None]:
    """One-vs-rest ROC curve of ``class_name`` (melanoma uses the ``melanoma`` column).

    Returns the curve (``false_positive_rate``, ``true_positive_rate``, ``threshold``) and its AUC,
    or an empty frame and ``None`` when the set holds only one of the two outcomes.
    """
    if class_name == CLASS_NAMES[MELANOMA_INDEX] and "melanoma" in frame.columns:
        positives = frame["melanoma"].to_numpy(int) == 1
    else:
        positives = frame["label"].to_numpy(int) == CLASS_NAMES.index(class_name)
    if positives.all() or not positives.any():
        empty = pd.DataFrame(columns=["false_positive_rate", "true_positive_rate", "threshold"])
        return empty, None
    scores = frame[class_name].to_numpy("float64")
    false_positive_rate, true_positive_rate, thresholds = sk_metrics.roc_curve(positives, scores)
    curve = pd.DataFrame({"false_positive_rate": false_positive_rate,
                          "true_positive_rate": true_positive_rate,
                          "threshold": np.minimum(thresholds, 1.0)})
    return curve, float(sk_metrics.roc_auc_score(positives, scores))


def roc_table(frame: pd.DataFrame, class_names: Iterable[str] = CLASS_NAMES) -> pd.DataFrame:
    """Long-form ROC points for several classes, with the AUC in a ``curve`` label."""
    parts = []
    for name in class_names:
        curve, auc = roc_points(frame, name)
        if auc is not None:
            parts.append(curve.assign(**{"class": name, "curve": f"{name} (AUC {auc:.3f})"}))
    if not parts:
        return pd.DataFrame(columns=["false_positive_rate", "true_positive_rate", "threshold",
                                     "class", "curve"])
    return pd.concat(parts, ignore_index=True)


def operating_point(frame: pd.DataFrame, threshold: float) -> dict | None:
    """Where the melanoma threshold puts the model on its melanoma ROC curve.

    Returns ``false_positive_rate`` (1 - specificity), ``true_positive_rate`` (sensitivity) and
    ``threshold`` (flag when the melanoma probability is ``>=`` it), or ``None`` when the set
    holds only one of the two outcomes.
    """
    if frame.empty or "melanoma" not in frame.columns:
        return None
    at_threshold = binary_at_threshold(frame["melanoma"].to_numpy(int),
                                       frame[CLASS_NAMES[MELANOMA_INDEX]].to_numpy("float64"),
                                       threshold)
    if at_threshold["sensitivity"] is None or at_threshold["specificity"] is None:
        return None
    return {"false_positive_rate": 1.0 - at_threshold["specificity"],
            "true_positive_rate": at_threshold["sensitivity"], "threshold": float(threshold)}


def reliability_table(frame: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Reliability diagram bins (mean confidence, accuracy, count) of the top-class predictions."""
    frame = labelled(frame)
    if frame.empty:
        return pd.DataFrame(columns=["confidence", "accuracy", "count"])
    return pd.DataFrame(reliability_curve(frame["label"].to_numpy(int), probabilities_of(frame),
                                          bins=bins))


def subgroup_table(frame: pd.DataFrame, column: str, threshold: float,
                   min_size: int = 10) -> pd.DataFrame:
    """Accuracy, balanced accuracy and melanoma metrics per value of a metadata column.

    Groups smaller than ``min_size`` are listed with their size only (too few to score).
    """
    frame = labelled(frame)
    if column not in frame.columns or frame.empty:
        return pd.DataFrame(columns=["group", "n"])
    rows = subgroup_report(frame, column, threshold, min_size=min_size)
    return pd.DataFrame(rows).sort_values("n", ascending=False, ignore_index=True)


def available_subgroups(frame: pd.DataFrame) -> list[str]:
    return [column for column in SUBGROUP_COLUMNS if column in frame.columns]


def metrics_table(cards, set_name: str) -> pd.DataFrame:
    """One row per model: the card's summary metrics on ``set_name`` (blank where not reported)."""
    rows = []
    for card in cards:
        report = card.metrics.get(set_name, {})
        row = {"model": card.id, "version": card.version}
        row.update({title: report.get(key) for key, title in SUMMARY_METRICS.items()})
        row["n"] = report.get("n")
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all") if not table.empty else table


def per_class_recall(cards, set_name: str = "ham10000_test") -> pd.DataFrame:
    """Long form: model, class, recall, from each card's ``per_class`` metrics."""
    rows = [{"model": card.id, "class": name, "recall": values.get("recall")}
            for card in cards
            for name, values in card.metrics.get(set_name, {}).get("per_class", {}).items()]
    return pd.DataFrame(rows, columns=["model", "class", "recall"])


def side_by_side(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Join several models' stored predictions on one set into one row per image.

    Columns: ``image_id``, ``true_class`` and, per model, ``<model>:prediction`` and
    ``<model>:confidence``. Only images present in every frame are kept.
    """
    merged = None
    for model_id, frame in frames.items():
        part = frame[["image_id", "true_class", "prediction", "confidence"]].rename(columns={
            "prediction": f"{model_id}:prediction", "confidence": f"{model_id}:confidence"})
        merged = part if merged is None else merged.merge(
            part.drop(columns="true_class"), on="image_id", how="inner")
    return merged if merged is not None else pd.DataFrame(columns=["image_id", "true_class"])


def disagreement_matrix(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Fraction of shared images on which each pair of models predicts a different top class."""
    merged = side_by_side(frames)
    models = list(frames)
    matrix = pd.DataFrame(0.0, index=models, columns=models)
    if merged.empty:
        return matrix
    for first in models:
        for second in models:
            matrix.loc[first, second] = float(
                (merged[f"{first}:prediction"] != merged[f"{second}:prediction"]).mean())
    return matrix


def disagreeing_cases(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The images on which the models do not all predict the same class, with each prediction."""
    merged = side_by_side(frames)
    if merged.empty or len(frames) < 2:
        return merged.iloc[0:0]
    prediction_columns = [f"{model_id}:prediction" for model_id in frames]
    differs = merged[prediction_columns].nunique(axis=1) > 1
    cases = merged[differs].copy()
    cases["models right"] = (cases[prediction_columns].to_numpy()
                             == cases[["true_class"]].to_numpy()).sum(axis=1)
    return cases.reset_index(drop=True)


def melanoma_agreement(predictions) -> tuple[bool, dict[str, list[str]]]:
    """``agreement`` on the melanoma question alone: each model's answer is "melanoma" at or
    above its own threshold, "not melanoma" below (how binary and seven-class models meet)."""
    chosen: dict[str, list[str]] = {}
    for prediction in predictions:
        answer = "melanoma" if prediction.melanoma_flag else "not melanoma"
        chosen.setdefault(answer, []).append(prediction.model_id)
    return len(chosen) <= 1, chosen


def melanoma_calls(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Stored predictions turned into answers to the melanoma question: ``prediction`` "mel"
    where the melanoma probability reaches ``threshold`` (the model's own), else "other", and
    ``true_class`` "mel" or "other"; ``confidence`` the probability of the answer."""
    calls = frame.copy()
    melanoma = calls["mel"].to_numpy("float64")
    calls["prediction"] = binary_answers(melanoma, threshold)
    calls["confidence"] = np.where(melanoma >= threshold, melanoma, 1.0 - melanoma)
    calls["true_class"] = np.where(calls["melanoma"].astype(int) == 1, "mel", "other")
    return calls


def agreement(predictions) -> tuple[bool, dict[str, list[str]]]:
    """Whether all predictions share one top class, and which models chose each class."""
    chosen: dict[str, list[str]] = {}
    for prediction in predictions:
        chosen.setdefault(prediction.top_class, []).append(prediction.model_id)
    return len(chosen) <= 1, chosen


def error_list(frame: pd.DataFrame, true_classes: Iterable[str] | None = None,
               predicted_classes: Iterable[str] | None = None, sort_by: str = "confidence",
               descending: bool = True) -> pd.DataFrame:
    """Misclassified images (top class differs from the true class), filtered and sorted.

    Args:
        frame: stored predictions of one model on one set.
        true_classes: keep only these true classes (all when ``None`` or empty).
        predicted_classes: keep only these predicted classes (all when ``None`` or empty).
        sort_by: a column of ``frame``, usually ``confidence`` (confident mistakes first).
        descending: sort order.

    Raises:
        ValueError: ``sort_by`` is not a column of the frame.
    """
    if sort_by not in frame.columns:
        raise ValueError(f"Cannot sort errors by {sort_by!r}; columns are {list(frame.columns)}.")
    errors = labelled(frame)
    errors = errors[errors["prediction"] != errors["true_class"]]
    if true_classes:
        errors = errors[errors["true_class"].isin(list(true_classes))]
    if predicted_classes:
        errors = errors[errors["prediction"].isin(list(predicted_classes))]
    errors = errors.assign(true_class_probability=[
        float(row[row["true_class"]]) for _, row in errors.iterrows()])
    return errors.sort_values(sort_by, ascending=not descending, kind="stable",
                              ignore_index=True)


ERROR_COLUMNS = ("image_id", "true_class", "prediction", "confidence", "true_class_probability",
                 "melanoma", "age", "sex", "localization", "dx_type", "file")


def error_export(errors: pd.DataFrame, model_id: str, model_version: str,
                 set_name: str) -> pd.DataFrame:
    """The error list as exported to CSV: identifying columns, probabilities and the model."""
    columns = [column for column in ERROR_COLUMNS if column in errors.columns]
    table = errors[columns + [name for name in CLASS_NAMES if name in errors.columns]].copy()
    table.insert(0, "set", set_name)
    table["model_id"] = model_id
    table["model_version"] = model_version
    return table


def case_outputs(frames: Mapping[str, pd.DataFrame], image_id: str) -> pd.DataFrame:
    """Every model's stored output for one image: prediction, confidence, probabilities."""
    rows = []
    for model_id, frame in frames.items():
        match = frame[frame["image_id"] == image_id]
        if match.empty:
            continue
        row = match.iloc[0]
        rows.append({"model": model_id, "prediction": row["prediction"],
                     "confidence": float(row["confidence"]),
                     **{name: float(row[name]) for name in CLASS_NAMES}})
    return pd.DataFrame(rows)


def filter_metadata(frame: pd.DataFrame, classes: Iterable[str] | None = None,
                    sites: Iterable[str] | None = None,
                    age_range: tuple[float, float] | None = None,
                    include_unknown_age: bool = True) -> pd.DataFrame:
    """HAM10000 metadata rows by diagnosis, body site and age range (empty filters keep all)."""
    mask = pd.Series(True, index=frame.index)
    if classes:
        mask &= frame["dx"].isin(list(classes))
    if sites:
        mask &= frame["localization"].isin(list(sites))
    if age_range is not None:
        low, high = age_range
        in_range = frame["age"].between(low, high)
        mask &= in_range | (frame["age"].isna() if include_unknown_age else False)
    return frame[mask]


def distribution(frame: pd.DataFrame, column: str, by_class: bool = False) -> pd.DataFrame:
    """Counts of ``column`` values (optionally split by diagnosis ``dx``), largest first."""
    keys = [column, "dx"] if by_class and column != "dx" else [column]
    counts = (frame.assign(**{column: frame[column].fillna("unknown").astype(str)})
              .groupby(keys, dropna=False).size().reset_index(name="images"))
    order = counts.groupby(column)["images"].sum().sort_values(ascending=False).index
    counts[column] = pd.Categorical(counts[column], categories=list(order), ordered=True)
    return counts.sort_values([column, *keys[1:]], ignore_index=True)


def card_metrics_rows(card) -> pd.DataFrame:
    """A card's summary metrics, one row per evaluation set (for the Models page)."""
    rows = []
    for set_name, report in card.metrics.items():
        row = {"set": SET_TITLES.get(set_name, set_name), "images": report.get("n")}
        row.update({title: report.get(key) for key, title in SUMMARY_METRICS.items()
                    if report.get(key) is not None})
        rows.append(row)
    return pd.DataFrame(rows)


def card_per_class(card, set_name: str = "ham10000_test") -> pd.DataFrame:
    per_class = card.metrics.get(set_name, {}).get("per_class", {})
    return pd.DataFrame([{"class": name, "diagnosis": CLASS_LONG_NAMES.get(name, name), **values}
                         for name, values in per_class.items()])


CASE_DETAIL_LABELS = {"true_class": "Reference diagnosis", "prediction": "Model's answer",
                      "confidence": "Model's confidence", "age": "Age", "sex": "Sex",
                      "localization": "Body site", "dx_type": "Diagnosis confirmed by",
                      "dataset": "Source collection", "lesion_id": "Lesion"}
DX_TYPE_WORDS = {"histo": "histopathology", "follow_up": "follow-up (unchanged)",
                 "consensus": "expert consensus", "confocal": "in-vivo confocal microscopy"}


def case_detail_lines(details: dict) -> list[tuple[str, str]]:
    """A case's details as ``(label, value)`` in plain words: no raw keys, no "None"/"nan"."""
    lines = []
    for key, label in CASE_DETAIL_LABELS.items():
        if key not in details:
            continue
        value = details[key]
        value = value.item() if hasattr(value, "item") else value
        if value is None or (isinstance(value, float) and value != value) or value == "":
            text = "unknown"
        elif key == "confidence":
            text = f"{100 * float(value):.1f}%"
        elif key == "age":
            text = f"{float(value):.0f}"
        elif key == "dx_type":
            text = DX_TYPE_WORDS.get(str(value), str(value))
        else:
            text = str(value)
        lines.append((label, text))
    return lines

