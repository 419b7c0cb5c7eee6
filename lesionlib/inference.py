"""Predictions as plain data that always carry the model that made them."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES
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
    binary: bool = False  # a melanoma-vs-the-rest model: probabilities of "other" and "mel"

    @property
    def melanoma_flag(self) -> bool:
        """True when the melanoma probability reaches the model's operating threshold."""
        return self.melanoma_probability >= self.melanoma_threshold


def to_predictions(card, probabilities: np.ndarray) -> list[Prediction]:
    """One ``Prediction`` per row of calibrated ``probabilities`` (in ``card.class_names``
    order). A binary melanoma model's answer is "mel" when its melanoma probability reaches
    its operating threshold and "other" below it (not the 50% argmax)."""
    names = tuple(getattr(card, "class_names", CLASS_NAMES))
    melanoma, binary = names.index("mel"), len(names) == 2
    predictions = []
    for row in np.asarray(probabilities):
        top = int(row.argmax())
        if binary:
            top = melanoma if row[melanoma] >= card.melanoma_threshold else 1 - melanoma
        predictions.append(Prediction(
            model_id=card.id, model_version=card.version, model_name=card.name,
            intended_use=card.intended_use,
            probabilities={name: float(row[i]) for i, name in enumerate(names)},
            top_class=names[top], top_probability=float(row[top]),
            melanoma_probability=float(row[melanoma]),
            melanoma_threshold=card.melanoma_threshold, binary=binary))
    return predictions


def predict_images(classifier, images: list[np.ndarray]) -> list[Prediction]:
    """Calibrated predictions for decoded RGB images (any size; framed per model)."""
    if not images:
        return []
    return to_predictions(classifier.card, classifier.predict_proba(images))


OUTPUT_COLUMNS = ("file", *CLASS_NAMES, "prediction", "melanoma_flag", "warning", "error",
                  "model_id", "model_version")
WITHHELD_PREFIX = "Diagnosis withheld: "


class ImageListError(ValueError):
    """``--images`` names no usable list of images; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """One input to score: its name as the user gave it, and where it is read from."""

    name: str
    path: Path | None  # None for a blank entry of a list


DECODE_THREADS = 4


def iter_prediction_batches(classifier, inputs: Iterable[ImageInput], batch_size: int = 16,
                            quality_check: Callable | None = None) -> Iterator[pd.DataFrame]:
    """Score inputs batch by batch; yield each batch's rows (``OUTPUT_COLUMNS``) in input order.

    An unreadable file gets a row with its error and the others go on. ``quality_check(images,
    probabilities, member_probabilities)`` returns one ``quality.QualityReport`` per image (e.g.
    ``QualityChecker.assess``, which also receives ``member_features`` from the same pass): its
    text goes in ``warning``, and an image that failed the gate (``report.withheld``) keeps its
    probabilities but gets no ``prediction`` or ``melanoma_flag``.

    The next batch is decoded by a thread pool while the current one is scored.
    """
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode") as pool:
        pending = None
        for batch in _batched(inputs, batch_size):
            decoding = [pool.submit(_load_input, item) for item in batch]
            if pending is not None:
                yield _score_batch(classifier, *pending, quality_check)
            pending = (batch, decoding)
        if pending is not None:
            yield _score_batch(classifier, *pending, quality_check)


def _batched(inputs: Iterable[ImageInput], batch_size: int) -> Iterator[list[ImageInput]]:
    batch: list[ImageInput] = []
    for item in inputs:
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _score_batch(classifier, batch: list[ImageInput], decoding: list[Future],
                 quality_check) -> pd.DataFrame:
    rows = [{"file": item.name, "error": ""} for item in batch]
    images, scored_rows = [], []
    for future, row in zip(decoding, rows):
        try:
            images.append(future.result())
            scored_rows.append(row)
        except ImageLoadError as error:
            row["error"] = str(error)
    if images:
        probabilities, member_probabilities, reports = _scores_and_reports(
            classifier, images, quality_check)
        for row, row_probabilities, prediction, report in zip(
                scored_rows, probabilities, to_predictions(classifier.card, probabilities),
                reports):
            # a binary melanoma model fills the "mel" column only (its "other" is dropped)
            row.update(zip(classifier.card.class_names, map(float, row_probabilities)))
            row.update(_prediction_columns(prediction, report))
    frame = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    frame["model_id"] = classifier.card.id
    frame["model_version"] = classifier.card.version
    return frame.fillna({"prediction": "", "melanoma_flag": "", "warning": ""})


def _scores_and_reports(classifier, images: list[np.ndarray], quality_check):
    """One pass of the classifier; the gate reuses its features when it accepts them."""
    if not hasattr(classifier, "score"):
        probabilities, member_probabilities = classifier.predict_with_members(images)
        features = None
    else:
        scores = classifier.score(images)
        probabilities, member_probabilities = scores.probabilities, scores.member_probabilities
        features = scores.member_features
    if quality_check is None:
        return probabilities, member_probabilities, [None] * len(images)
    if features is not None and _accepts_features(quality_check):
        reports = quality_check(images, probabilities, member_probabilities,
                                member_features=features)
    else:
        reports = quality_check(images, probabilities, member_probabilities)
    return probabilities, member_probabilities, reports


def _accepts_features(function: Callable) -> bool:
    try:
        return "member_features" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _load_input(item: ImageInput) -> np.ndarray:
    if item.path is None:
        raise ImageLoadError("blank 'file' value in the image list; expected a file path.")
    return load_image(item.path)


def _prediction_columns(prediction: Prediction, report) -> dict:
    """``prediction``, ``melanoma_flag`` and ``warning``; blank diagnosis if the gate failed."""
    if report is None:
        return {"prediction": prediction.top_class, "melanoma_flag": prediction.melanoma_flag,
                "warning": ""}
    if report.withheld:
        return {"prediction": "", "melanoma_flag": "", "warning": WITHHELD_PREFIX + report.text}
    return {"prediction": prediction.top_class, "melanoma_flag": prediction.melanoma_flag,
            "warning": report.text}


def predict_files(classifier, files: Iterable[Path | ImageInput], batch_size: int = 16,
                  progress: Callable[[int], None] | None = None,
                  quality_check: Callable | None = None) -> pd.DataFrame:
    """All of ``iter_prediction_batches`` as one frame (``OUTPUT_COLUMNS``; rows sum to 1).

    ``files`` are paths (reported as given) or ``ImageInput``; ``progress(n)`` is called after
    each batch of ``n`` rows.
    """
    inputs = (item if isinstance(item, ImageInput) else ImageInput(str(item), Path(item))
              for item in files)
    frames = [pd.DataFrame(columns=OUTPUT_COLUMNS)]
    for frame in iter_prediction_batches(classifier, inputs, batch_size, quality_check):
        frames.append(frame)
        if progress:
            progress(len(frame))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def read_image_list(path: Path) -> list[ImageInput]:
    """The inputs named by a folder or by a CSV with a ``file`` column.

    A folder gives every file that ``data.iter_image_files`` lists (hidden files and subfolders
    are left out), named by file name. A CSV gives one input per row, named by its ``file`` value
    as written; relative paths are relative to the CSV's folder.

    Raises:
        ImageListError: the path is missing, neither folder nor CSV, an unreadable or malformed
            CSV, a CSV without a ``file`` column, or it names no file at all.
    """
    path = Path(path)
    if path.is_dir():
        inputs = _folder_inputs(path)
    elif path.is_file() and path.suffix.lower() == ".csv":
        inputs = _csv_inputs(path)
    elif not path.exists():
        raise ImageListError(f"--images {path}: not found; expected a folder of images or a CSV "
                             "with a 'file' column.")
    else:
        raise ImageListError(f"--images {path}: expected a folder of images or a CSV (.csv) "
                             "with a 'file' column.")
    if not inputs:
        raise ImageListError(f"--images {path}: names no file (hidden files and subfolders are "
                             "not scored); expected at least one image.")
    return inputs


def _folder_inputs(folder: Path) -> list[ImageInput]:
    from lesionlib.data import iter_image_files
    from lesionlib.plain_text import printable_name

    try:  # a name that is not UTF-8 is reported escaped (img_25\xff.jpg), and still scored
        return [ImageInput(printable_name(file.name), file) for file in iter_image_files(folder)]
    except OSError as error:
        raise ImageListError(f"--images {folder}: the folder cannot be read "
                             f"({error.strerror or error}).") from None


def _csv_inputs(path: Path) -> list[ImageInput]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ImageListError(f"--images {path}: the CSV is empty; expected a 'file' column "
                             "naming images.") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ImageListError(f"--images {path}: not a readable UTF-8 CSV "
                             f"({str(error).splitlines()[0][:160]}).") from None
    if "file" not in frame.columns:
        raise ImageListError(f"--images {path} has no 'file' column; columns are "
                             f"{list(frame.columns)}.")
    return [ImageInput(name, path.parent / Path(name).expanduser() if name.strip() else None)
            for name in frame["file"]]


__all__ = ["Prediction", "predict_images", "predict_files", "iter_prediction_batches",
           "read_image_list", "to_predictions", "ImageInput", "ImageListError", "OUTPUT_COLUMNS",
           "WITHHELD_PREFIX", "ImageLoadError", "load_image"]
