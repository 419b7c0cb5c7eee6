"""Predictions as plain data that always carry the model that made them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES, MELANOMA_INDEX
from lesionlib.imaging import ImageLoadError, load_image


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's calibrated output, with the identity and intended use of the model."""

    model_id: str
    model_version: str
    model_name: str
    intended_use: str
    probabilities: dict[str, float]
    top_class: str
    top_probability: float
    melanoma_probability: float
    melanoma_threshold: float

    @property
    def melanoma_flag(self) -> bool:
        """True when the melanoma probability reaches the model's operating threshold."""
        return self.melanoma_probability >= self.melanoma_threshold


def to_predictions(card, probabilities: np.ndarray) -> list[Prediction]:
    predictions = []
    for row in np.asarray(probabilities):
        top = int(row.argmax())
        predictions.append(Prediction(
            model_id=card.id, model_version=card.version, model_name=card.name,
            intended_use=card.intended_use,
            probabilities={name: float(row[i]) for i, name in enumerate(CLASS_NAMES)},
            top_class=CLASS_NAMES[top], top_probability=float(row[top]),
            melanoma_probability=float(row[MELANOMA_INDEX]),
            melanoma_threshold=card.melanoma_threshold))
    return predictions


def predict_images(classifier, images: list[np.ndarray]) -> list[Prediction]:
    """Calibrated predictions for decoded RGB images (any size; framed per model)."""
    if not images:
        return []
    return to_predictions(classifier.card, classifier.predict_proba(images))


def predict_files(classifier, files: Iterable[Path], batch_size: int = 16,
                  progress: Callable[[int], None] | None = None,
                  quality_check: Callable | None = None) -> pd.DataFrame:
    """Score files; an unreadable file gets a row with its error and the others go on.

    Returns a frame with ``file``, one probability column per class (rows sum to 1),
    ``prediction``, ``melanoma_flag``, ``warning`` and ``error``, plus the model id and version.
    """
    rows: list[dict] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        images = [image for _, image in pending]
        probabilities, member_probabilities = classifier.predict_with_members(images)
        warnings = (quality_check(images, probabilities, member_probabilities) if quality_check
                    else [""] * len(images))
        for (row_index, _), row_probabilities, prediction, warning in zip(
                pending, probabilities, to_predictions(classifier.card, probabilities), warnings):
            rows[row_index].update({name: float(value) for name, value in
                                    zip(CLASS_NAMES, row_probabilities)})
            rows[row_index].update(prediction=prediction.top_class,
                                   melanoma_flag=prediction.melanoma_flag, warning=warning)
        if progress:
            progress(len(pending))
        pending.clear()

    for path in files:
        path = Path(path)
        row = {"file": str(path), "error": ""}
        rows.append(row)
        try:
            pending.append((len(rows) - 1, load_image(path)))
        except ImageLoadError as error:
            row["error"] = str(error)
            if progress:
                progress(1)
        if len(pending) >= batch_size:
            flush()
    flush()
    frame = pd.DataFrame(rows)
    for column in (*CLASS_NAMES, "prediction", "melanoma_flag", "warning"):
        if column not in frame.columns:
            frame[column] = np.nan if column in CLASS_NAMES else ""
    frame["model_id"] = classifier.card.id
    frame["model_version"] = classifier.card.version
    return frame[["file", *CLASS_NAMES, "prediction", "melanoma_flag", "warning", "error",
                  "model_id", "model_version"]]


def read_image_list(path: Path) -> list[Path]:
    """Files named by a folder (its images) or a CSV with a ``file`` column (relative to it).

    Raises:
        ValueError: the CSV has no ``file`` column, or the path is neither folder nor CSV.
    """
    from lesionlib.data import iter_image_files

    path = Path(path)
    if path.is_dir():
        return list(iter_image_files(path))
    if path.is_file() and path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        if "file" not in frame.columns:
            raise ValueError(f"{path} has no 'file' column; columns are {list(frame.columns)}.")
        return [path.parent / str(file) for file in frame["file"]]
    raise ValueError(f"--images {path}: expected a folder of images or a CSV with a 'file' "
                     "column.")


__all__ = ["Prediction", "predict_images", "predict_files", "read_image_list", "to_predictions",
           "ImageLoadError", "load_image"]
