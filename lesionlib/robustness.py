"""Stress test: a model's HAM10000 test-split scores under everyday changes to the image.

Each perturbation changes the decoded image the way another clinic, device or export might
(framing, orientation, zoom, focus, compression, exposure, white balance, resolution); the model
then frames and scores it as it would any upload. The report is balanced accuracy and melanoma
AUC per perturbation, and the drop against the unchanged images, measured in the same run.
Written by ``python -m lesionlib stress-test --model ID`` to ``reports/robustness.md`` and
``reports/robustness.json`` (read by the audit page's Robustness tab).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from lesionlib.classes import CLASS_NAMES
from lesionlib.metrics import balanced_accuracy, melanoma_report

MELANOMA_INDEX = CLASS_NAMES.index("mel")
TARGET_DROP = 0.03  # no perturbation may lower balanced accuracy by more than this
REPORT_JSON = "robustness.json"
REPORT_MARKDOWN = "robustness.md"


def centre_crop_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square (the framing of many other clinics' exports)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def pad_square(image: np.ndarray) -> np.ndarray:
    """Black bars to a square (letterboxing)."""
    height, width = image.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation about the centre; 45 degrees fills the corners by reflection."""
    if degrees % 90 == 0:
        return np.ascontiguousarray(np.rot90(image, int(degrees // 90)))
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """Zoom in (``factor`` > 1: a centred crop of 1/factor of each side, resized back) or out
    (< 1: the image shrunk and its border reflected to the old size)."""
    height, width = image.shape[:2]
    if factor >= 1:
        crop_h, crop_w = round(height / factor), round(width / factor)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return cv2.resize(image[top:top + crop_h, left:left + crop_w], (width, height),
                          interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(image, (round(width * factor), round(height * factor)),
                       interpolation=cv2.INTER_AREA)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    return cv2.copyMakeBorder(small, top, height - small.shape[0] - top, left,
                              width - small.shape[1] - left, cv2.BORDER_REFLECT_101)


def blur(image: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Gaussian blur (slightly out of focus)."""
    return cv2.GaussianBlur(image, (0, 0), sigma)


def jpeg(image: np.ndarray, quality: int = 30) -> np.ndarray:
    """Re-encoded as a low-quality JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(image.astype("float32") * factor, 0, 255).astype("uint8")


def colour_cast(image: np.ndarray, gains=(1.12, 1.0, 0.88)) -> np.ndarray:
    """A warm white-balance cast (red up, blue down)."""
    return np.clip(image.astype("float32") * np.asarray(gains, "float32"), 0,
                   255).astype("uint8")


def half_resolution(image: np.ndarray) -> np.ndarray:
    """Half the pixels on each side (a lower-resolution camera or export)."""
    height, width = image.shape[:2]
    return cv2.resize(image, (max(1, width // 2), max(1, height // 2)),
                      interpolation=cv2.INTER_AREA)


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "centre crop to a square": centre_crop_square,
    "padding to a square": pad_square,
    "rotation 90°": lambda image: rotate(image, 90),
    "rotation 45°": lambda image: rotate(image, 45),
    "zoom 0.8 (out)": lambda image: zoom(image, 0.8),
    "zoom 1.25 (in)": lambda image: zoom(image, 1.25),
    "blur (σ 1.5 px)": blur,
    "JPEG quality 30": jpeg,
    "brightness +20%": lambda image: brightness(image, 1.2),
    "brightness −20%": lambda image: brightness(image, 0.8),
    "colour cast (warm)": colour_cast,
    "half resolution": half_resolution,
}


def score(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Balanced accuracy, melanoma AUC and sensitivity at ``threshold``."""
    melanoma = melanoma_report(labels == MELANOMA_INDEX, probabilities[:, MELANOMA_INDEX],
                               threshold)
    return {"balanced_accuracy": balanced_accuracy(labels, probabilities.argmax(axis=1)),
            "melanoma_auc": melanoma.get("melanoma_auc"),
            "melanoma_sensitivity": melanoma.get("melanoma_sensitivity")}


def stress_test(predict: Callable[[list[np.ndarray]], np.ndarray], images: list[np.ndarray],
                labels: np.ndarray, threshold: float,
                perturbations: dict[str, Callable] | None = None, batch_size: int = 64,
                log=lambda message: None) -> pd.DataFrame:
    """Scores of ``predict`` (images -> calibrated probabilities) on the unchanged images and
    under each perturbation, with the drop against the unchanged ones.

    Returns:
        One row per condition (``unchanged`` first): ``condition``, ``balanced_accuracy``,
        ``melanoma_auc``, ``melanoma_sensitivity``, ``ba_drop``, ``auc_drop``, ``within_target``.
    """
    perturbations = PERTURBATIONS if perturbations is None else perturbations
    labels = np.asarray(labels)
    rows = []
    for name, change in {"unchanged": None, **perturbations}.items():
        probabilities = np.concatenate([
            predict([change(image) if change else image
                     for image in images[start:start + batch_size]])
            for start in range(0, len(images), batch_size)])
        rows.append({"condition": name, **score(probabilities, labels, threshold)})
        log(f"{name}: balanced accuracy {rows[-1]['balanced_accuracy']:.3f}")
    frame = pd.DataFrame(rows)
    base = frame.iloc[0]
    frame["ba_drop"] = base["balanced_accuracy"] - frame["balanced_accuracy"]
    frame["auc_drop"] = base["melanoma_auc"] - frame["melanoma_auc"]
    frame["within_target"] = frame["ba_drop"] <= TARGET_DROP
    return frame


def stress_test_model(classifier, data_folder: Path, split: str = "test", limit: int | None = None,
                      log=print) -> pd.DataFrame:
    """``stress_test`` of a loaded classifier (``registry.load_classifier``) on HAM10000's
    ``split``, images decoded at their own resolution; ``limit`` keeps the first N (tests)."""
    from lesionlib import data
    from lesionlib.imaging import load_image

    labels = data.select_split(data.load_labels(data_folder), split)
    if limit:
        labels = labels.head(limit)
    log(f"Decoding {len(labels)} HAM10000 {split} images ...")
    images = [load_image(path) for path in labels["path"]]
    return stress_test(lambda batch: classifier.predict_with_members(batch)[0], images,
                       labels["label"].to_numpy(), classifier.card.melanoma_threshold,
                       log=log)


def write_report(report_dir: Path, model_id: str, model_version: str, frame: pd.DataFrame,
                 command: str, set_description: str) -> None:
    """Merge one model's results into ``robustness.json`` and rewrite ``robustness.md``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / REPORT_JSON
    try:
        report = json.loads(json_path.read_text()) if json_path.is_file() else {}
    except (OSError, ValueError):
        report = {}
    report.setdefault("models", {})[model_id] = {
        "version": model_version, "command": command, "set": set_description,
        "rows": json.loads(frame.to_json(orient="records"))}
    temporary = json_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(json_path)
    (report_dir / REPORT_MARKDOWN).write_text(markdown(report))


def load_report(report_dir: Path) -> dict:
    """``robustness.json``'s models (``{}`` when none has been stress-tested)."""
    path = Path(report_dir) / REPORT_JSON
    try:
        return json.loads(path.read_text()).get("models", {}) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{value:.3f}"


def markdown(report: dict) -> str:
    lines = ["# Robustness: the HAM10000 test split under everyday image changes", "",
             "Each model scores the same test images unchanged and under each change; the drop "
             f"is against the unchanged images in the same run. Target: no change lowers "
             f"balanced accuracy by more than {TARGET_DROP:.2f}. Reproduce a model's section "
             "with its command.", ""]
    for model_id, entry in sorted(report.get("models", {}).items()):
        rows = entry["rows"]
        worst = max(rows[1:], key=lambda row: row["ba_drop"], default=None)
        lines += [f"## {model_id} v{entry['version']}", "", f"`{entry['command']}` "
                  f"({entry['set']})", "",
                  "| condition | balanced acc. | drop | melanoma AUC | drop | mel. sens. | "
                  "within target |", "|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['condition']} | {_fmt(row['balanced_accuracy'])} | "
                         f"{_fmt(row['ba_drop'])} | {_fmt(row['melanoma_auc'])} | "
                         f"{_fmt(row['auc_drop'])} | {_fmt(row['melanoma_sensitivity'])} | "
                         f"{'yes' if row['within_target'] else '**no**'} |")
        if worst is not None:
            lines += ["", f"Largest drop: {worst['condition']} "
                      f"({worst['ba_drop']:+.3f} balanced accuracy)."]
        lines.append("")
    return "\n".join(lines)


__all__ = ["PERTURBATIONS", "TARGET_DROP", "stress_test", "write_report", "load_report",
           "markdown"]
