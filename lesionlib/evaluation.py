"""Evaluate shipped models: calibrate on validation, report on test and external sets.

For every model: predictions on the HAM10000 validation split fit the calibration temperature and
the melanoma operating threshold; the test split and the external sets (ISIC 2017 val+test, PH2,
melanoma vs the rest) are only ever predicted, never fitted on. Predictions are stored beside the
model (``weights/<id>/predictions/<set>.csv``) so the dashboard can browse errors without a model,
and the ensemble is evaluated from its members' stored predictions.

A binary melanoma model (outputs ``other``, ``mel``) is scored on the melanoma question on every
set: AUC, and sensitivity and specificity at its threshold; its temperature is fitted on the
melanoma-vs-the-rest labels of HAM10000 validation.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib import data
from lesionlib.cards import ModelCard, write_card
from lesionlib.classes import BINARY_CLASS_NAMES, CLASS_NAMES, MELANOMA_INDEX
from lesionlib.integrity import read_verified, seal
from lesionlib.lineage import with_deltas
from lesionlib.metrics import (apply_temperature, choose_melanoma_threshold,
                               classification_report, expected_calibration_error,
                               fit_temperature, melanoma_report)

PREDICTIONS_DIR = "predictions"
SUBGROUP_COLUMNS = ("age_band", "sex", "localization", "dx_type")
METADATA_COLUMNS = ("image_id", "file", "lesion_id", "dx", "dx_type", "age", "age_band", "sex",
                    "localization", "dataset")
# name -> (dataset folder name, split)
EVALUATION_SETS = {
    "ham10000_val": ("ham10000", "val"),
    "ham10000_test": ("ham10000", "test"),
    "isic2017": ("isic2017", "val+test"),
    "ph2": ("ph2", "all"),
    # A second clinic (Hospital Clinic de Barcelona, 84x84 px): seven classes, its own split.
    "bcn20000_val": ("bcn20000", "val"),
    "bcn20000_test": ("bcn20000", "test"),
}
SEVEN_CLASS_PREFIXES = ("ham10000", "bcn20000")  # sets scored on all seven classes


def predictions_path(card: ModelCard, set_name: str) -> Path:
    return card.folder / PREDICTIONS_DIR / f"{set_name}.csv"


def load_predictions(card: ModelCard, set_name: str) -> pd.DataFrame | None:
    """Stored predictions of a model on a set (``None`` when not stored).

    The file is checked against the model folder's manifest as it is read.

    Raises:
        IntegrityError: the file differs from the manifest or is not listed in it.
    """
    path = predictions_path(card, set_name)
    if not path.is_file():
        return None
    content = read_verified(card.folder, path.relative_to(card.folder).as_posix())
    return pd.read_csv(io.BytesIO(content))


def available_prediction_sets(card: ModelCard) -> list[str]:
    return [name for name in EVALUATION_SETS if predictions_path(card, name).is_file()]


def output_names(frame: pd.DataFrame) -> tuple[str, ...]:
    """The probability columns of a prediction frame: the seven classes, or a binary melanoma
    model's ``other`` and ``mel``."""
    return BINARY_CLASS_NAMES if "other" in frame.columns else CLASS_NAMES


def is_binary_frame(frame: pd.DataFrame) -> bool:
    return output_names(frame) == BINARY_CLASS_NAMES


def binary_answers(melanoma_probability, threshold: float) -> list[str]:
    """A binary model's answer per image: "mel" at or above its threshold, "other" below."""
    return ["mel" if value >= threshold else "other" for value in melanoma_probability]


def prediction_frame(labels: pd.DataFrame, probabilities: np.ndarray,
                     dataset_name: str, class_names: tuple[str, ...] = CLASS_NAMES
                     ) -> pd.DataFrame:
    """Join calibrated probabilities (columns in ``class_names`` order) with the set's labels
    and metadata."""
    # External research sets keep only ids and labels: their metadata stays in ../shared.
    wanted = METADATA_COLUMNS if dataset_name == "ham10000" else ("image_id", "file")
    columns = [column for column in wanted if column in labels.columns]
    frame = labels[columns].copy()
    frame.insert(0, "set_folder", dataset_name)
    frame["label"] = labels["label"].to_numpy()
    frame["true_class"] = [CLASS_NAMES[i] if i >= 0 else "" for i in frame["label"]]
    frame["melanoma"] = labels["melanoma"].astype(int).to_numpy()
    for index, name in enumerate(class_names):
        frame[name] = probabilities[:, index]
    frame["prediction"] = [class_names[i] for i in probabilities.argmax(axis=1)]
    frame["confidence"] = probabilities.max(axis=1)
    return frame


def probabilities_of(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(output_names(frame))].to_numpy("float64")


def subgroup_report(frame: pd.DataFrame, column: str, threshold: float,
                    min_size: int = 10) -> list[dict]:
    """Metrics per value of ``column`` (groups under ``min_size`` images are listed, not scored)."""
    rows = []
    for value, group in frame.groupby(column, dropna=False):
        row = {"group": str(value), "n": int(len(group))}
        if len(group) >= min_size:
            probabilities = probabilities_of(group)
            labels = group["label"].to_numpy()
            predictions = probabilities.argmax(axis=1)
            row["accuracy"] = float((predictions == labels).mean())
            row["balanced_accuracy"] = float(pd.Series(predictions == labels).groupby(labels)
                                             .mean().mean())
            row.update(melanoma_report(group["melanoma"].to_numpy(),
                                       probabilities[:, MELANOMA_INDEX], threshold))
        rows.append(row)
    return rows


def report_for_set(frame: pd.DataFrame, set_name: str, threshold: float) -> dict:
    probabilities = probabilities_of(frame)
    if is_binary_frame(frame):  # the melanoma question, on every set
        report = melanoma_report(frame["melanoma"].to_numpy(), frame["mel"].to_numpy("float64"),
                                 threshold)
        report["n"] = int(len(frame))
        return report
    if set_name.startswith(SEVEN_CLASS_PREFIXES):
        report = classification_report(frame["label"].to_numpy(), probabilities, threshold)
        if set_name == "ham10000_test":
            report["subgroups"] = {column: subgroup_report(frame, column, threshold)
                                   for column in SUBGROUP_COLUMNS if column in frame.columns}
        return report
    report = melanoma_report(frame["melanoma"].to_numpy(), probabilities[:, MELANOMA_INDEX],
                             threshold)
    report["n"] = int(len(frame))
    return report


def calibrate(val_frame_uncalibrated: pd.DataFrame) -> tuple[float, float]:
    """Fit (temperature, melanoma threshold) on validation predictions."""
    probabilities = probabilities_of(val_frame_uncalibrated)
    if is_binary_frame(val_frame_uncalibrated):  # columns other, mel: melanoma is 1
        labels = val_frame_uncalibrated["melanoma"].to_numpy(int)
        melanoma = BINARY_CLASS_NAMES.index("mel")
    else:
        labels = val_frame_uncalibrated["label"].to_numpy()
        melanoma = MELANOMA_INDEX
    temperature = fit_temperature(labels, probabilities)
    calibrated = apply_temperature(probabilities, temperature)
    threshold = choose_melanoma_threshold(labels == melanoma, calibrated[:, melanoma])
    return temperature, threshold


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """What calibrating a model's uncalibrated predictions on validation gives."""

    temperature: float
    threshold: float
    predictions: dict[str, pd.DataFrame]  # set -> calibrated rows, as stored beside the card
    metrics: dict[str, dict]  # set -> figures (report_for_set, + ECE before temperature)


def calibrate_and_score(uncalibrated: dict[str, pd.DataFrame]) -> Calibrated:
    """Fit the temperature and melanoma threshold on ``ham10000_val``, then score every set.

    Writes nothing: ``finish_evaluation`` stores the result, and ``lesionlib.retraining`` uses it
    to judge an ensemble before a member is promoted.
    """
    temperature, threshold = calibrate(uncalibrated["ham10000_val"])
    predictions, metrics = {}, {}
    for set_name, frame in uncalibrated.items():
        calibrated = apply_temperature(probabilities_of(frame), temperature)
        stored = frame.copy()
        names = output_names(frame)
        for index, name in enumerate(names):
            stored[name] = calibrated[:, index]
        stored["prediction"] = ([names[i] for i in calibrated.argmax(axis=1)]
                                if names == CLASS_NAMES
                                else binary_answers(stored["mel"], threshold))
        stored["confidence"] = calibrated.max(axis=1)
        predictions[set_name] = stored
        metrics[set_name] = report_for_set(stored, set_name, threshold)
        if set_name.startswith(SEVEN_CLASS_PREFIXES) and names == CLASS_NAMES:
            labels = frame["label"].to_numpy()
            metrics[set_name]["ece_before_temperature"] = expected_calibration_error(
                labels, probabilities_of(frame))
    return Calibrated(temperature, threshold, predictions, metrics)


def finish_evaluation(card: ModelCard, uncalibrated: dict[str, pd.DataFrame],
                      command: str) -> tuple[ModelCard, dict]:
    """Calibrate on validation, write predictions and metrics into the card's folder."""
    result = calibrate_and_score(uncalibrated)
    temperature, threshold, metrics = result.temperature, result.threshold, result.metrics
    for set_name, stored in result.predictions.items():
        path = predictions_path(card, set_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        stored.to_csv(path, index=False, float_format="%.6f")
    training = card.training
    if training.get("lineage"):
        training = {**training, "lineage": with_deltas(training["lineage"], metrics)}
    card = dataclasses.replace(card, temperature=temperature, melanoma_threshold=threshold,
                               metrics=metrics, training=training,
                               reproduce={**card.reproduce, "evaluate": command})
    write_card(card, card.folder)
    seal(card.folder)
    return card, metrics


def predict_set(single_model, set_name: str, data_root: Path | None = None) -> pd.DataFrame:
    """Uncalibrated predictions of a single model on one evaluation set."""
    folder_name, split = EVALUATION_SETS[set_name]
    folder = (data_root / folder_name) if data_root else data.resolve_data_dir(name=folder_name)
    if folder is None:
        raise FileNotFoundError(f"Dataset folder {folder_name!r} not found; set LESIONLIB_DATA.")
    labels = data.select_split(data.load_labels(folder), split)
    size = single_model.card.input_size
    images = data.cached_images(labels, size, f"{folder_name}_{split.replace('+', '_')}")
    probabilities = np.concatenate([
        single_model.keras_model(np.asarray(images[start:start + 64], dtype="float32"),
                                 training=False).numpy()
        for start in range(0, len(images), 64)]).astype("float64")
    return prediction_frame(labels, probabilities, folder_name,
                            tuple(single_model.card.class_names))


def ensemble_uncalibrated(members: list[ModelCard]) -> dict[str, pd.DataFrame]:
    """Mean of the members' stored calibrated probabilities, per set."""
    frames = {}
    for set_name in EVALUATION_SETS:
        member_frames = [load_predictions(member, set_name) for member in members]
        if any(frame is None for frame in member_frames):
            continue
        mean = np.mean([probabilities_of(frame) for frame in member_frames], axis=0)
        frame = member_frames[0].copy()
        for index, name in enumerate(CLASS_NAMES):
            frame[name] = mean[:, index]
        frames[set_name] = frame
    return frames


def write_summary(cards: list[ModelCard], json_path: Path, markdown_path: Path,
                  command: str, refused: dict[str, str] | None = None) -> None:
    """The machine-readable report and the readable summary of every evaluated model.

    ``refused`` (model folder -> reason) lists the models left out because they failed their
    integrity or card checks.
    """
    report = {"command": command, "models": {card.id: {
        "version": card.version, "temperature": card.temperature,
        "melanoma_threshold": card.melanoma_threshold, "metrics": card.metrics}
        for card in cards}, "refused": dict(sorted((refused or {}).items()))}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path.write_text(summary_markdown(cards, command, refused))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def refused_markdown(refused: dict[str, str] | None) -> list[str]:
    """A warning section naming each refused model and why (empty when none was refused)."""
    if not refused:
        return []
    return (["## Refused models", "",
             "These model folders failed their integrity or card checks; their figures are "
             "left out of this report.", ""]
            + [f"- **{folder}**: {reason}" for folder, reason in sorted(refused.items())] + [""])


def summary_markdown(cards: list[ModelCard], command: str,
                     refused: dict[str, str] | None = None) -> str:
    lines = ["# Evaluation summary", "", *refused_markdown(refused),
             "Reproduce with `python -m lesionlib evaluate` (all models; needs ../shared/data; "
             f"this file was last written by `{command}`). Temperatures and melanoma "
             "thresholds are fitted on the HAM10000 validation split only; every figure below "
             "is on data the models never trained or were calibrated on.", "",
             "## HAM10000 test split (lesion-grouped, 1,509 images)", "",
             "| model | accuracy | balanced acc. | macro F1 | melanoma AUC | mel. sens. | mel. spec. "
             "| ECE before T | ECE after T |", "|---|---|---|---|---|---|---|---|---|"]
    for card in cards:
        test = card.metrics.get("ham10000_test", {})
        lines.append(f"| {card.id} | {_fmt(test.get('accuracy'))} | "
                     f"{_fmt(test.get('balanced_accuracy'))} | {_fmt(test.get('macro_f1'))} | "
                     f"{_fmt(test.get('melanoma_auc'))} | {_fmt(test.get('melanoma_sensitivity'))}"
                     f" | {_fmt(test.get('melanoma_specificity'))} | "
                     f"{_fmt(test.get('ece_before_temperature'))} | {_fmt(test.get('ece'))} |")
    lines += ["", "## External sets, melanoma vs the rest", "",
              "| model | ISIC 2017 val+test AUC | sens. | spec. | PH2 AUC | sens. | spec. |",
              "|---|---|---|---|---|---|---|"]
    for card in cards:
        isic, ph2 = card.metrics.get("isic2017", {}), card.metrics.get("ph2", {})
        lines.append(f"| {card.id} | {_fmt(isic.get('melanoma_auc'))} | "
                     f"{_fmt(isic.get('melanoma_sensitivity'))} | "
                     f"{_fmt(isic.get('melanoma_specificity'))} | {_fmt(ph2.get('melanoma_auc'))}"
                     f" | {_fmt(ph2.get('melanoma_sensitivity'))} | "
                     f"{_fmt(ph2.get('melanoma_specificity'))} |")
    lines += ["", "## BCN20000 test split (a second clinic, 84x84 px, seven classes, 1,883 images)",
              "", "| model | balanced acc. | melanoma AUC | mel. sens. | mel. spec. | "
              + " | ".join(f"{name} recall" for name in CLASS_NAMES) + " |",
              "|---|---|---|---|---|" + "---|" * len(CLASS_NAMES)]
    for card in cards:
        bcn = card.metrics.get("bcn20000_test", {})
        recalls = [_fmt(bcn.get("per_class", {}).get(name, {}).get("recall"))
                   for name in CLASS_NAMES]
        lines.append(f"| {card.id} | {_fmt(bcn.get('balanced_accuracy'))} | "
                     f"{_fmt(bcn.get('melanoma_auc'))} | {_fmt(bcn.get('melanoma_sensitivity'))}"
                     f" | {_fmt(bcn.get('melanoma_specificity'))} | " + " | ".join(recalls) + " |")
    lines += ["", "## Per-class recall on the HAM10000 test split", "",
              "| model | " + " | ".join(CLASS_NAMES) + " |",
              "|---|" + "---|" * len(CLASS_NAMES)]
    for card in cards:
        per_class = card.metrics.get("ham10000_test", {}).get("per_class", {})
        lines.append(f"| {card.id} | " + " | ".join(
            _fmt(per_class.get(name, {}).get("recall")) for name in CLASS_NAMES) + " |")
    lines.append("")
    return "\n".join(lines)
