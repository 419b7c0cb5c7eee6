"""Test-only helpers: fake stored predictions and metrics for the tiny weights fixture.

The tiny models' real predictions are noise, so these files are written with a seeded random
generator: they exercise the audit and compare pages, not the models.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib import evaluation
from lesionlib.cards import read_card, write_card
from lesionlib.classes import CLASS_NAMES
from lesionlib.data import age_bands
from lesionlib.integrity import seal

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LABELS = REPO_ROOT / "sample_images" / "labels.csv"


def use_page_environment(monkeypatch, weights: Path, tmp_path: Path) -> None:
    """Point the app at ``weights`` with an empty feedback database and sign-in off."""
    monkeypatch.setenv("LESIONLIB_WEIGHTS", str(weights))
    monkeypatch.setenv("LESIONLIB_FEEDBACK_URL", f"sqlite:///{tmp_path / 'feedback.db'}")
    monkeypatch.delenv("LESIONLIB_AUTH_CONFIG", raising=False)


def _labels(set_name: str) -> pd.DataFrame:
    samples = pd.read_csv(SAMPLE_LABELS)
    if set_name == "ham10000_test":
        frame = samples.assign(file="images/" + samples["file"])
        frame["age_band"] = age_bands(frame["age"])
        frame["melanoma"] = (frame["label"] == CLASS_NAMES.index("mel")).astype(int)
        return frame
    # an "external" set: the same images, melanoma vs the rest
    return pd.DataFrame({"image_id": samples["image_id"], "file": "images/" + samples["file"],
                         "label": samples["label"],
                         "melanoma": (samples["dx"] == "mel").astype(int)})


def add_fake_predictions(weights_folder: Path, seed: int = 0) -> None:
    """Write ``predictions/ham10000_test.csv`` and ``isic2017.csv`` for every model, and the
    matching metrics into each card (recomputed with ``lesionlib.evaluation``)."""
    rng = np.random.default_rng(seed)
    for folder in sorted(path for path in Path(weights_folder).iterdir() if path.is_dir()):
        card = read_card(folder)
        metrics = {}
        for set_name, set_folder in (("ham10000_test", "ham10000"), ("isic2017", "isic2017")):
            labels = _labels(set_name)
            names = tuple(card.class_names)  # a binary melanoma model's: other, mel
            targets = (labels["label"] if len(names) == len(CLASS_NAMES)
                       else labels["melanoma"]).to_numpy(int)
            logits = rng.normal(size=(len(labels), len(names)))
            logits[np.arange(len(labels)), targets] += 1.5  # mostly right
            probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            frame = evaluation.prediction_frame(labels, probabilities, set_folder, names)
            path = evaluation.predictions_path(card, set_name)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            metrics[set_name] = evaluation.report_for_set(frame, set_name,
                                                          card.melanoma_threshold)
        write_card(dataclasses.replace(card, metrics=metrics,
                                       reproduce={"evaluate": "python -m lesionlib evaluate"}),
                   folder)
        seal(folder)  # as `evaluate` does after writing into a model folder
