"""Heatmaps of what drove a prediction: Grad-CAM, Grad-CAM++ and Faster-Score-CAM.

Computing a map (``Explainer.compute_map``) is kept apart from drawing it (``overlay``). A model
with a compiled graph (``lesionlib.compiled``) is explained from one traced forward and backward
pass, with tf-keras-vis's arithmetic; any other model through tf-keras-vis itself, which works on
a clone of the model (``clone=True``). Either way the cached, shared model is never modified. For
an ensemble the members' maps are averaged.

References:
    Selvaraju et al., "Grad-CAM", ICCV 2017 (arXiv:1610.02391).
    Chattopadhyay et al., "Grad-CAM++", WACV 2018 (arXiv:1710.11063).
    Wang et al., "Score-CAM", CVPR Workshops 2020 (arXiv:1910.01279); Faster-Score-CAM keeps
    only the ``max_N`` channels of highest variance.
"""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

METHODS = ("Grad-CAM", "Grad-CAM++", "Faster-Score-CAM")
SCORECAM_MAX_N = 8


class Explainer:
    """Heatmaps for one single model: from its compiled pass when it has one (and
    ``use_compiled``), else through tf-keras-vis (each object built once, on first use)."""

    def __init__(self, single_model, use_compiled: bool = True):
        self.model = single_model
        self.use_compiled = use_compiled
        self._visualizers: dict[str, object] = {}
        self._lock = threading.Lock()

    def _visualizer(self, method: str):
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        if method not in METHODS:
            raise ValueError(f"Unknown heatmap method {method!r}; expected one of {METHODS}.")
        if method not in self._visualizers:
            keras_model = self.model.keras_model
            self._visualizers[method] = {
                "Grad-CAM": lambda: Gradcam(keras_model, model_modifier=ReplaceToLinear(),
                                            clone=True),
                "Grad-CAM++": lambda: GradcamPlusPlus(keras_model,
                                                      model_modifier=ReplaceToLinear(),
                                                      clone=True),
                "Faster-Score-CAM": lambda: Scorecam(keras_model, clone=True),
            }[method]()
            clone = self._visualizers[method].model
            # Score-CAM calls predict() on its own clone: silence its progress bars there only.
            clone.predict = functools.partial(clone.predict, verbose=0)
        return self._visualizers[method]

    def compute_map(self, image: np.ndarray, class_index: int, method: str = "Grad-CAM"
                    ) -> np.ndarray:
        """A ``(size, size)`` map in [0, 1] over the model's framed input, for ``class_index``."""
        return self.compute_maps([image], [class_index], method)[0]

    def compute_maps(self, images: list[np.ndarray], class_indices: list[int],
                     method: str = "Grad-CAM", batch_size: int = 16) -> np.ndarray:
        """``(n, size, size)`` maps, each in [0, 1], one per image and its own class; computed
        ``batch_size`` images at a time (for reports over a whole dataset)."""
        if method not in METHODS:
            raise ValueError(f"Unknown heatmap method {method!r}; expected one of {METHODS}.")
        if len(images) != len(class_indices):
            raise ValueError(f"Received {len(images)} images but {len(class_indices)} class "
                             "indices; expected one class per image.")
        compiled = getattr(self.model, "compiled", None) if self.use_compiled else None
        if compiled is not None:  # one traced pass per image (memoised: all classes at once)
            maps = [self._compiled_map(compiled, self.model.frame([image]), int(index), method)
                    for image, index in zip(images, class_indices)]
        else:
            maps = [self._tf_keras_vis_maps(images[start:start + batch_size],
                                            class_indices[start:start + batch_size], method)
                    for start in range(0, len(images), batch_size)]
            maps = list(np.concatenate(maps))
        return np.stack([_scale_to_peak(np.nan_to_num(np.asarray(heatmap, dtype="float32")))
                         for heatmap in maps])

    @staticmethod
    def _compiled_map(compiled, framed: np.ndarray, class_index: int, method: str) -> np.ndarray:
        from lesionlib import compiled as compiled_maps

        inputs = compiled.cam_inputs(framed, class_index)
        if method == "Grad-CAM":
            return compiled_maps.gradcam_map(inputs, framed.shape)
        if method == "Grad-CAM++":
            return compiled_maps.gradcam_plus_plus_map(inputs, framed.shape)
        return compiled_maps.scorecam_map(compiled, framed, inputs, class_index, SCORECAM_MAX_N)

    def _tf_keras_vis_maps(self, images, class_indices, method: str) -> np.ndarray:
        from tf_keras_vis.utils.scores import CategoricalScore

        framed = self.model.frame(list(images))
        arguments = {"penultimate_layer": self.model.card.cam_layer}
        if method == "Faster-Score-CAM":
            arguments["max_N"] = SCORECAM_MAX_N
        score = CategoricalScore([int(index) for index in class_indices])
        with self._lock:
            heatmaps = self._visualizer(method)(score, framed, **arguments)
        return np.asarray(heatmaps, dtype="float32").reshape(len(framed), *framed.shape[1:3])


def _scale_to_peak(heatmap: np.ndarray) -> np.ndarray:
    peak = heatmap.max()
    return heatmap / peak if peak > 0 else heatmap


def ensemble_map(explainers: list[Explainer], image: np.ndarray, class_index: int,
                 method: str = "Grad-CAM", size: int = 224) -> np.ndarray:
    """Mean of the members' maps, each resized to ``size x size``, rescaled to [0, 1]."""
    return ensemble_maps(explainers, [image], [class_index], method, size)[0]


def ensemble_maps(explainers: list[Explainer], images: list[np.ndarray],
                  class_indices: list[int], method: str = "Grad-CAM", size: int = 224
                  ) -> np.ndarray:
    """``ensemble_map`` for a batch of images: ``(n, size, size)``."""
    member_maps = [[cv2.resize(heatmap, (size, size)) for heatmap in
                    explainer.compute_maps(images, class_indices, method)]
                   for explainer in explainers]
    mean = np.mean(np.asarray(member_maps, dtype="float32"), axis=0)
    return np.stack([_scale_to_peak(heatmap) for heatmap in mean])


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colour map) over an RGB image at the image's own size."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], received {opacity}.")
    height, width = image.shape[:2]
    resized = cv2.resize(np.clip(heatmap, 0, 1), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = _colourise((resized * 255).astype("uint8"))
    blended = (1.0 - opacity) * image.astype("float32") + opacity * coloured.astype("float32")
    return np.clip(blended, 0, 255).astype("uint8")


def colour_scale(width: int = 256, height: int = 14) -> np.ndarray:
    """The heatmap colours from low (left) to high (right), as an RGB strip (the legend)."""
    if width < 2 or height < 1:
        raise ValueError(f"A colour scale needs width >= 2 and height >= 1; received "
                         f"{width}x{height}.")
    return _colourise(np.tile(np.linspace(0, 255, width).astype("uint8"), (height, 1)))


def _colourise(values: np.ndarray) -> np.ndarray:
    """``uint8`` values 0-255 to RGB through the jet colour map (blue low, red high)."""
    return cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
