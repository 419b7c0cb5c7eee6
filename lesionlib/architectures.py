"""A registry of classifier architectures, each built as one flat functional Keras graph.

Every classifier takes raw RGB pixels in [0, 255] at ``(size, size, 3)`` (the output of
``lesionlib.imaging.frame_square``) and returns softmax probabilities over ``CLASS_NAMES``. The
backbone's own input scaling is a layer inside the graph, so training and inference cannot drift
apart. Graphs are flat (no nested ``Model`` layers) because tf-keras-vis cannot explain nested models.

Register a new architecture with ``@register_architecture``; the tests build every registered one.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

import numpy as np

import keras

from lesionlib import colour, efficientnet_lite
from lesionlib.classes import CLASS_NAMES

__all__ = ["Architecture", "register_architecture", "list_architectures", "get_architecture",
           "build_classifier", "ImageNetWeightsUnavailable"]


class ImageNetWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but cannot be fetched or found locally."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How to build one backbone.

    Attributes:
        name: registry name, e.g. ``"efficientnet_lite0"``.
        default_size: the square input side the backbone was designed for.
        scaling: the input scaling put in the graph (``"lite"``, ``"tf"``, ``"torch"``,
            ``"caffe"``, ``"none"``, ``"unit"``).
        cam_layer: the layer whose activations Grad-CAM explains.
        builder: ``builder(scaled_input, imagenet: bool) -> (features, imagenet_loader)``.
        description: one line for humans.
        imagenet_source: where ImageNet weights come from.
    """

    name: str
    default_size: int
    scaling: str
    cam_layer: str
    builder: Callable
    description: str
    imagenet_source: str


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(name: str, default_size: int, scaling: str, cam_layer: str,
                          description: str, imagenet_source: str):
    """Decorator adding a feature builder to the registry under ``name``."""
    def decorator(builder):
        if name in _ARCHITECTURES:
            raise ValueError(f"Architecture {name!r} is already registered.")
        _ARCHITECTURES[name] = Architecture(name, default_size, scaling, cam_layer, builder,
                                            description, imagenet_source)
        return builder
    return decorator


def list_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """Look up an architecture by name.

    Raises:
        KeyError: unknown name, with the closest registered names.
    """
    if name not in _ARCHITECTURES:
        close = difflib.get_close_matches(name, list(_ARCHITECTURES), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"Unknown architecture {name!r}.{hint} Available: "
                       f"{', '.join(list_architectures())}.")
    return _ARCHITECTURES[name]


def _scale(inputs, scaling: str):
    """Put the backbone's own input scaling in the graph, as built-in (safe-mode) layers."""
    if scaling == "lite":
        return keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scaling")(inputs)
    if scaling == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scaling")(inputs)
    if scaling == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="scaling")(inputs)
    if scaling == "torch":
        mean = np.array([0.485, 0.456, 0.406]) * 255.0
        std = np.array([0.229, 0.224, 0.225]) * 255.0
        return keras.layers.Normalization(mean=mean, variance=std**2, name="scaling")(inputs)
    if scaling == "caffe":
        # RGB -> BGR and ImageNet mean subtraction as a fixed 1x1 convolution.
        layer = keras.layers.Conv2D(3, 1, name="scaling", trainable=False)
        outputs = layer(inputs)
        permutation = np.zeros((1, 1, 3, 3), dtype="float32")
        for rgb_channel, bgr_channel in ((0, 2), (1, 1), (2, 0)):
            permutation[0, 0, rgb_channel, bgr_channel] = 1.0
        layer.set_weights([permutation, -np.array([103.939, 116.779, 123.68], dtype="float32")])
        return outputs
    if scaling == "none":
        return inputs
    raise ValueError(f"Unknown scaling {scaling!r}.")


def build_classifier(architecture_name: str, image_size: int | None = None,
                     imagenet: bool = False, dropout: float = 0.3,
                     num_classes: int = len(CLASS_NAMES),
                     colour_constancy: bool = False) -> keras.Model:
    """Build a flat classifier: pixels in [0, 255] -> softmax over ``num_classes``.

    Args:
        architecture_name: a registered name (see ``list_architectures()``).
        image_size: square input side. Defaults to the architecture's ``default_size``.
        imagenet: initialise the backbone from ImageNet weights.
        dropout: dropout before the classification layer. Defaults to ``0.3``.
        num_classes: outputs. Defaults to the 7 HAM10000 classes.
        colour_constancy: put a Shades of Gray layer (``lesionlib.colour``) first in the graph.

    Raises:
        KeyError: unknown architecture.
        ImageNetWeightsUnavailable: ImageNet weights asked for but not available offline.
    """
    architecture = get_architecture(architecture_name)
    size = image_size or architecture.default_size
    inputs = keras.Input((size, size, 3), name="image")
    pixels = colour.ShadesOfGray(name="colour_constancy")(inputs) if colour_constancy else inputs
    scaled = _scale(pixels, architecture.scaling)
    features, load_imagenet = architecture.builder(scaled, imagenet)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs, name=architecture_name)
    if imagenet and load_imagenet is not None:
        load_imagenet(model)
    return model


# --- EfficientNet-Lite (ImageNet weights ported from PyTorch, work offline) ----------------------

def _lite_builder(variant_name: str):
    def build(scaled, imagenet):
        features = efficientnet_lite.build_lite_features(scaled, variant_name)

        def load(model):
            arrays = efficientnet_lite.load_imagenet_arrays(variant_name)
            arrays.pop("imagenet_logits", None)
            efficientnet_lite.assign_weights(model, arrays)
        return features, load
    return build


for _variant in efficientnet_lite.VARIANTS.values():
    register_architecture(
        f"efficientnet_{_variant.name}", _variant.resolution, "lite", "top_activation",
        f"EfficientNet-{_variant.name.title()}: mobile-friendly (no SE, ReLU6), "
        f"width x{_variant.width}, depth x{_variant.depth}",
        f"PyPI package {_variant.package.replace('_', '-')} (ported, shipped as .npz)",
    )(_lite_builder(_variant.name))


# --- keras.applications backbones ---------------------------------------------------------------

def _applications_builder(constructor_name: str):
    def build(scaled, imagenet):
        constructor = getattr(keras.applications, constructor_name)
        try:
            base = constructor(include_top=False, weights="imagenet" if imagenet else None,
                               input_tensor=scaled)
        except Exception as error:  # noqa: BLE001 - any fetch failure means the same to the user
            if not imagenet:
                raise
            raise ImageNetWeightsUnavailable(
                f"ImageNet weights for keras.applications.{constructor_name} could not be "
                f"fetched or found in ~/.keras/models ({type(error).__name__}: {error}). "
                "Without network access use an EfficientNet-Lite backbone (ported weights ship "
                "with lesionlib) or train from random initialisation (--no-imagenet)."
            ) from error
        return base.output, None
    return build


_APPLICATIONS = (
    # name, constructor, size, scaling, cam layer
    ("mobilenet_v2", "MobileNetV2", 224, "tf", "out_relu"),
    ("efficientnet_b0", "EfficientNetB0", 224, "none", "top_activation"),
    ("resnet50", "ResNet50", 224, "caffe", "conv5_block3_out"),
    ("densenet121", "DenseNet121", 224, "torch", "relu"),
    ("inception_v3", "InceptionV3", 299, "tf", "mixed10"),
    ("inception_resnet_v2", "InceptionResNetV2", 299, "tf", "conv_7b_ac"),
    ("vgg16", "VGG16", 224, "caffe", "block5_conv3"),
)

for _name, _constructor, _size, _scaling, _cam in _APPLICATIONS:
    register_architecture(
        _name, _size, _scaling, _cam, f"keras.applications.{_constructor}",
        "keras.applications (downloads on first use; cached in ~/.keras/models)",
    )(_applications_builder(_constructor))


# --- small CNN trained from scratch (the baseline) ----------------------------------------------

@register_architecture(
    "small_cnn", 128, "unit", "top_activation",
    "Small 4-block CNN trained from scratch: the baseline transfer learning is compared against",
    "none (random initialisation only)",
)
def _small_cnn(scaled, imagenet):
    if imagenet:
        raise ImageNetWeightsUnavailable("small_cnn has no ImageNet weights; it trains from "
                                         "scratch.")
    tensor = scaled
    for index, filters in enumerate((32, 64, 128, 256)):
        for repeat in range(2):
            tensor = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                         name=f"conv{index}_{repeat}")(tensor)
            tensor = keras.layers.BatchNormalization(name=f"bn{index}_{repeat}")(tensor)
            activation_name = "top_activation" if (index, repeat) == (3, 1) else None
            tensor = keras.layers.ReLU(name=activation_name or f"relu{index}_{repeat}")(tensor)
        if index < 3:
            tensor = keras.layers.MaxPooling2D(name=f"pool{index}")(tensor)
    return tensor, None
