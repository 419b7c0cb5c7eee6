"""Test-time augmentation: average a model's outputs over flipped views of each image.

Dermoscopic images have no preferred orientation, so the horizontal, vertical and double flip
of an image are as valid as the image itself. Whether the average pays is measured on the
validation split (reports/ablation.md, ``scripts/benchmarks/ablation_report.py --tta-model``); it did not
for the shipped Lite0 v2, so the app does not use it.
"""

from __future__ import annotations

import numpy as np

VIEWS = ("identity", "flip_left_right", "flip_up_down", "flip_both")


def flipped_views(framed: np.ndarray) -> list[np.ndarray]:
    """The four flip views of a batch ``(n, h, w, 3)``, in the order of ``VIEWS``."""
    return [framed, framed[:, :, ::-1], framed[:, ::-1], framed[:, ::-1, ::-1]]


def predict_with_flips(keras_model, framed: np.ndarray, flips: bool = True,
                       batch_size: int = 64) -> np.ndarray:
    """Mean softmax over the four flip views (or the plain prediction when ``flips`` is off)."""
    framed = np.asarray(framed, dtype="float32")
    views = flipped_views(framed) if flips else [framed]
    return np.mean([keras_model.predict(np.ascontiguousarray(view), batch_size=batch_size,
                                        verbose=0) for view in views], axis=0)


__all__ = ["VIEWS", "flipped_views", "predict_with_flips"]
