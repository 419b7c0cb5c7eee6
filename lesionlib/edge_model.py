"""A TensorFlow Lite export of a model, loaded for inference (``registry.load_classifier``).

Kept apart from ``lesionlib.edge`` (export, evaluation, parity), which needs the registry: the
registry loads edge models from here, so neither imports the other in a circle.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from lesionlib.cards import CardError, ModelCard
from lesionlib.classes import CLASS_NAMES
from lesionlib.imaging import frame_square
from lesionlib.metrics import apply_temperature
from lesionlib.scores import Scores


def _interpreter(path: Path, num_threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


class EdgeModel:
    """A TFLite classifier with its card; the interface of ``registry.SingleModel``."""

    def __init__(self, card: ModelCard, path: Path, num_threads: int | None = None):
        self.card = card
        self._interpreter = _interpreter(path, num_threads or min(4, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._input = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()
        self._probabilities = next(o["index"] for o in outputs
                                   if o["shape"][-1] == len(CLASS_NAMES))
        self._features = next(o["index"] for o in outputs if o["index"] != self._probabilities)

    @property
    def input_dtype(self) -> str:
        return np.dtype(self._input["dtype"]).name

    def frame(self, images: list[np.ndarray]) -> np.ndarray:
        size = self.card.input_size
        return np.stack([frame_square(image, size) for image in images]).astype("float32")

    def run_framed(self, framed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated probabilities and pooled features of framed images (pixels 0-255)."""
        probabilities, features = [], []
        with self._lock:
            for image in np.asarray(framed):
                pixels = np.clip(np.rint(image), 0, 255) if self.input_dtype == "uint8" \
                    else image
                self._interpreter.set_tensor(self._input["index"],
                                             pixels[None].astype(self._input["dtype"]))
                self._interpreter.invoke()
                probabilities.append(self._interpreter.get_tensor(self._probabilities)[0])
                features.append(self._interpreter.get_tensor(self._features)[0])
        probabilities = np.asarray(probabilities, "float64")
        return probabilities / probabilities.sum(axis=1, keepdims=True), np.asarray(features)

    def predict_uncalibrated(self, images: list[np.ndarray]) -> np.ndarray:
        return self.run_framed(self.frame(images))[0]

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        return apply_temperature(self.predict_uncalibrated(images), self.card.temperature)

    def predict_with_members(self, images: list[np.ndarray]) -> tuple[np.ndarray, list]:
        probabilities = self.predict_proba(images)
        return probabilities, [probabilities]

    def pooled_features(self, images: list[np.ndarray]) -> np.ndarray:
        """The ``avg_pool`` features of the edge graph itself (for its quality gate)."""
        return self.run_framed(self.frame(images))[1]

    def score(self, images: list[np.ndarray], framed: dict | None = None,
              with_heatmaps: bool = False):
        """Probabilities and gate features in one pass (``registry.SingleModel.score``)."""
        uncalibrated, features = self.run_framed(self.frame(images))
        probabilities = apply_temperature(uncalibrated, self.card.temperature)
        return Scores(probabilities, [probabilities], [features])

    @property
    def members(self) -> list["EdgeModel"]:
        return [self]


def load_edge(card: ModelCard) -> EdgeModel:
    """Verify the sha256, then open the TFLite file.

    Raises:
        ModelIntegrityError: hash mismatch or missing file.
        CardError: the runtime cannot open the file.
    """
    from lesionlib.cards import verify_weights

    path = verify_weights(card)
    try:
        return EdgeModel(card, path)
    except (ValueError, RuntimeError) as error:
        raise CardError(f"Model {card.id!r}: {path.name} could not be opened by the LiteRT "
                        f"runtime ({type(error).__name__}: {str(error)[:200]}).") from None


__all__ = ["EdgeModel", "load_edge"]
