"""Colour constancy: Shades of Gray (Finlayson & Trezzi 2004), Minkowski norm p = 6.

Dermoscopes, cameras and lighting differ between clinics; normalising each image's illuminant is
the standard fix (Barata et al., IEEE JBHI 2015; used by the ISIC 2018/2019 winners). The step is
a layer inside the model graph (``ShadesOfGray``), so training, evaluation, the app and exported
edge models apply it identically; ``shades_of_gray`` is the same arithmetic in NumPy, for
reports and tests. A model card records the step under ``preprocessing``.
"""

from __future__ import annotations

import numpy as np

import keras

DEFAULT_POWER = 6
DESCRIPTION = (f"colour constancy: Shades of Gray (Minkowski p={DEFAULT_POWER}) per image, "
               "a layer inside the model graph")
_EPSILON = 1e-6


def shades_of_gray(image: np.ndarray, power: int = DEFAULT_POWER) -> np.ndarray:
    """Return ``image`` (RGB, 0-255) with its illuminant estimate mapped to neutral grey.

    The illuminant of each channel is the Minkowski ``power``-mean of its values; each channel is
    scaled by ``1 / (sqrt(3) * illuminant / ||illuminant||)`` and clipped to 0-255. Accepts one
    image ``(h, w, 3)`` or a batch ``(n, h, w, 3)``; returns float32.
    """
    array = np.asarray(image, dtype="float32")
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"Expected RGB pixels of shape (h, w, 3) or (n, h, w, 3); received "
                         f"{array.shape}.")
    unit = array / 255.0
    illuminant = np.power(np.mean(np.power(unit, power), axis=(-3, -2), keepdims=True),
                          1.0 / power)
    norm = np.sqrt(np.sum(illuminant ** 2, axis=-1, keepdims=True))
    gain = norm / (np.sqrt(3.0) * illuminant + _EPSILON)
    return np.clip(array * gain, 0.0, 255.0)


@keras.saving.register_keras_serializable(package="lesionlib")
class ShadesOfGray(keras.layers.Layer):
    """Keras layer form of ``shades_of_gray`` (pixels 0-255 in, 0-255 out, no weights)."""

    def __init__(self, power: int = DEFAULT_POWER, **kwargs):
        super().__init__(**kwargs)
        self.power = int(power)

    def call(self, inputs):
        unit = keras.ops.cast(inputs, "float32") / 255.0
        illuminant = keras.ops.power(
            keras.ops.mean(keras.ops.power(unit, self.power), axis=(1, 2), keepdims=True),
            1.0 / self.power)
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(illuminant), axis=-1,
                                            keepdims=True))
        gain = norm / (np.sqrt(3.0) * illuminant + _EPSILON)
        return keras.ops.clip(inputs * gain, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "power": self.power}


__all__ = ["shades_of_gray", "ShadesOfGray", "DEFAULT_POWER", "DESCRIPTION"]
