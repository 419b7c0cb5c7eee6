"""Shared fixtures: tiny real Keras models packaged like the shipped ones, sample images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_HAM = REPO_ROOT.parent / "shared" / "data" / "ham10000"
SAMPLE_DIR = REPO_ROOT / "sample_images"

needs_dataset = pytest.mark.skipif(not (SHARED_HAM / "labels.csv").is_file(),
                                   reason="needs the HAM10000 folder at ../shared/data/ham10000")


def build_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """Two tiny real models (small_cnn at 32 px) and an ensemble of them, with valid cards."""
    import keras

    from lesionlib.architectures import build_classifier
    from lesionlib.packaging import ensemble_card_data, install_model, single_card_data

    folder.mkdir(parents=True, exist_ok=True)
    members = []
    for index in range(2):
        keras.utils.set_random_seed(seed + index)
        model = build_classifier("small_cnn", 32)
        model_id = f"tiny{index}.test"
        keras_file = folder / f"{model_id}.keras"
        model.save(keras_file)
        card = single_card_data(model_id, f"Tiny test model {index}", "small_cnn", 32, "unit",
                                "top_activation", "", training={"recipe": "random weights"},
                                temperature=1.5, melanoma_threshold=0.2)
        install_model(keras_file, folder / model_id, card)
        keras_file.unlink()
        members.append(model_id)
    from lesionlib.packaging import write_ensemble
    write_ensemble(folder / "ensemble.ham10000",
                   ensemble_card_data("ensemble.ham10000", "Tiny ensemble", members,
                                      temperature=1.0, melanoma_threshold=0.2))
    return folder


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory) -> Path:
    """A weights folder with two tiny models and an ensemble (never modify it in a test)."""
    return build_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def weights(tiny_weights_dir, tmp_path) -> Path:
    """A copy of the tiny weights folder that a test may change (import, evaluate...)."""
    import shutil

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, folder)
    return folder


@pytest.fixture
def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
