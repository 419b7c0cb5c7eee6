"""One compiled pass per model: probabilities, gate features and the heatmap inputs together.

Calling a Keras model eagerly re-dispatches every layer from Python on each call. A
``CompiledModel`` traces the model once into a ``tf.function`` (fixed input signature, any batch
size) that returns the softmax probabilities and the pooled features the quality gate reads, so
batch scoring and the gate share one forward pass. A second traced function, for one image, adds
the backward pass to the CAM layer for every class; a case's prediction, gate and heatmaps then
come from that one pass. Grad-CAM, Grad-CAM++ and Faster-Score-CAM are computed from its outputs
with the same arithmetic as tf-keras-vis 0.8.7 (``tests/test_compiled.py`` compares the maps),
without cloning the model and without running eagerly.

The shared model is never modified: the pre-softmax scores (what tf-keras-vis's
``ReplaceToLinear`` exposes) are recomputed from the classifier layer's input and weights.

References:
    Selvaraju et al., "Grad-CAM", ICCV 2017 (arXiv:1610.02391).
    Chattopadhyay et al., "Grad-CAM++", WACV 2018 (arXiv:1710.11063).
    Wang et al., "Score-CAM", CVPR Workshops 2020 (arXiv:1910.01279).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
import numpy as np
from scipy.ndimage import zoom

FEATURE_LAYER = "avg_pool"
MEMO_IMAGES = 8  # single-image passes kept per model (about 2 MB each)
EPSILON = 1e-7  # keras.backend.epsilon(), as in tf-keras-vis's normalize


class NotCompilableError(ValueError):
    """The model's graph does not have the shape a ``CompiledModel`` needs (the message says
    what was found); callers fall back to the eager path."""


@dataclasses.dataclass(frozen=True)
class CamInputs:
    """What one image's forward and backward pass gives every CAM method."""

    probabilities: np.ndarray  # (classes,) softmax output of the model
    features: np.ndarray  # (features,) pooled gate features
    activations: np.ndarray  # (1, height, width, channels) CAM-layer output
    gradients: np.ndarray  # same shape: d(pre-softmax score of the class) / d(activations)
    score: float  # the pre-softmax score of the class


def find_cam_layer(keras_model, layer_name: str):
    """The layer whose output the heatmaps read: ``layer_name``, or the nearest convolution at or
    before it (as tf-keras-vis seeks it, e.g. ``top_activation`` -> ``top_conv``).

    Raises:
        NotCompilableError: no such layer, or no convolution at or before it.
    """
    from keras.src.layers.convolutional.base_conv import BaseConv

    names = [layer.name for layer in keras_model.layers]
    if layer_name not in names:
        raise NotCompilableError(f"CAM layer {layer_name!r} not in the model; layers end with "
                                 f"{names[-5:]}.")
    for layer in reversed(keras_model.layers[:names.index(layer_name) + 1]):
        if isinstance(layer, BaseConv):
            return layer
    raise NotCompilableError(f"No convolution at or before the CAM layer {layer_name!r}.")


class CompiledModel:
    """Traced inference functions of one Keras classifier (softmax ``Dense`` head).

    Each function is traced once, at its first call (``warm_up`` does it ahead of time); tracing
    and calls are thread-safe (``tf.function`` serialises tracing).

    Raises:
        NotCompilableError: the last layer is not a softmax ``Dense`` or a named layer is missing.
    """

    def __init__(self, keras_model, cam_layer: str, feature_layer: str = FEATURE_LAYER):
        import keras
        import tensorflow as tf

        head = keras_model.layers[-1]
        if not (isinstance(head, keras.layers.Dense)
                and head.activation is keras.activations.softmax):
            raise NotCompilableError(f"Expected a softmax Dense output layer; found "
                                     f"{type(head).__name__} {head.name!r}.")
        if feature_layer not in [layer.name for layer in keras_model.layers]:
            raise NotCompilableError(f"Feature layer {feature_layer!r} not in the model.")
        self.cam_layer = find_cam_layer(keras_model, cam_layer)
        graph = keras.Model(keras_model.inputs[0],
                            [self.cam_layer.output, keras_model.get_layer(feature_layer).output,
                             head.input, keras_model.outputs[0]])
        kernel, bias = head.kernel, head.bias
        image_spec = tf.TensorSpec([None, *keras_model.inputs[0].shape[1:]], tf.float32)

        @tf.function(input_signature=[image_spec], reduce_retracing=True)
        def forward(images):
            _, features, _, probabilities = graph(images, training=False)
            return probabilities, features

        classes = int(head.units)

        @tf.function(input_signature=[image_spec])
        def analyse(images):
            # The backward pass only spans the head (CAM layer -> scores), so the gradients of
            # every class cost little beside the forward pass.
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(images)
                activations, features, head_input, probabilities = graph(images, training=False)
                scores = tf.matmul(head_input, kernel)
                if bias is not None:
                    scores = scores + bias
                class_scores = [scores[:, index] for index in range(classes)]
            gradients = tf.stack([tape.gradient(score, activations) for score in class_scores])
            return probabilities, features, activations, gradients, scores

        self._forward, self._analyse = forward, analyse
        self._memo: collections.OrderedDict[str, tuple] = collections.OrderedDict()
        self._memo_lock = threading.Lock()

    def predict(self, framed: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Softmax probabilities (float32) and pooled features of framed images."""
        outputs = [self._forward(np.asarray(framed[start:start + batch_size], "float32"))
                   for start in range(0, len(framed), batch_size)]
        return (np.concatenate([output[0].numpy() for output in outputs]),
                np.concatenate([output[1].numpy() for output in outputs]))

    def analyse(self, framed_image: np.ndarray) -> tuple[np.ndarray, ...]:
        """One framed image's ``(1, size, size, 3)`` pass: probabilities ``(1, classes)``,
        features ``(1, features)``, CAM-layer activations ``(1, h, w, channels)``, the gradients
        of every class's pre-softmax score ``(classes, 1, h, w, channels)`` and the scores
        ``(1, classes)``. The last few images' results are kept, so a prediction followed by its
        heatmaps (or a heatmap of another class) costs one pass."""
        framed_image = np.ascontiguousarray(framed_image, "float32")
        key = hashlib.sha1(framed_image.tobytes()).hexdigest()
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        result = tuple(output.numpy() for output in self._analyse(framed_image))
        with self._memo_lock:
            self._memo[key] = result
            while len(self._memo) > MEMO_IMAGES:
                self._memo.popitem(last=False)
        return result

    def probabilities_of(self, framed: np.ndarray) -> np.ndarray:
        """Softmax probabilities of a few framed images through the single-image function (it
        takes any batch), so the heatmaps never trace the batch function."""
        return self._analyse(np.asarray(framed, "float32"))[0].numpy()

    def cam_inputs(self, framed_image: np.ndarray, class_index: int) -> CamInputs:
        """What the CAM methods need of one framed image, for one class."""
        probabilities, features, activations, gradients, scores = self.analyse(framed_image)
        if not 0 <= class_index < len(gradients):
            raise ValueError(f"class_index must be 0 to {len(gradients) - 1}; received "
                             f"{class_index}.")
        return CamInputs(probabilities[0], features[0], activations, gradients[class_index],
                         float(scores[0, class_index]))

    def warm_up(self, batch: bool = True) -> None:
        """Trace the single-image pass (and the batch pass, if ``batch``) now, on a blank
        image, instead of at the first real call."""
        blank = np.zeros((1, *self._forward.input_signature[0].shape[1:]), "float32")
        self._analyse(blank)
        if batch:
            self._forward(blank)


# ----------------------------------------------------------------------------- CAM arithmetic
# Each function mirrors tf-keras-vis 0.8.7 (gradcam.py, gradcam_plus_plus.py, scorecam.py) for one
# image and one class, with its defaults: ReLU on the map, zoomed (order 1) to the input size,
# then min-max normalised.

def _expand(cam: np.ndarray, input_shape) -> np.ndarray:
    """``(1, h, w)`` map -> ``(size, size)`` in [0, 1], as tf-keras-vis expands and normalises."""
    factors = tuple(float(to) / float(source) for source, to in zip(cam.shape, input_shape))
    expanded = zoom(cam, factors, order=1)
    low = expanded.min(axis=(1, 2), keepdims=True)
    high = expanded.max(axis=(1, 2), keepdims=True)
    return ((expanded - low) / (high - low + EPSILON))[0]


def gradcam_map(inputs: CamInputs, input_shape) -> np.ndarray:
    """Grad-CAM: channels weighted by their mean gradient, ReLU."""
    weights = inputs.gradients.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum(np.sum(inputs.activations * weights, axis=-1), 0.0)
    return _expand(cam, input_shape[:3])


def gradcam_plus_plus_map(inputs: CamInputs, input_shape) -> np.ndarray:
    """Grad-CAM++: per-location weights from the higher-order terms of exp(score)."""
    gradients, activations = inputs.gradients, inputs.activations
    first = np.exp(np.float32(inputs.score)) * gradients
    second = first * gradients
    third = second * gradients
    global_sum = activations.sum(axis=(1, 2), keepdims=True)
    denominator = second * 2.0 + third * global_sum
    alphas = second / (denominator + (second == 0.0).astype(second.dtype))
    normaliser = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / (normaliser + (normaliser == 0.0).astype(normaliser.dtype))
    weights = (np.maximum(first, 0.0) * alphas).sum(axis=(1, 2), keepdims=True)
    cam = np.maximum(np.sum(weights * activations, axis=-1), 0.0)
    return _expand(cam, input_shape[:3])


def scorecam_map(compiled: CompiledModel, framed_image: np.ndarray, inputs: CamInputs,
                 class_index: int, max_channels: int) -> np.ndarray:
    """Faster-Score-CAM: the ``max_channels`` channels of highest spatial spread, each used as a
    mask on the input; weighted by the class's (re-softmaxed) score on the masked image."""
    activations = inputs.activations
    channels = activations.shape[-1]
    if not 0 < max_channels <= channels:
        raise ValueError(f"max_channels must be 1 to {channels}; received {max_channels}.")
    if max_channels < channels:
        spread = activations.std(axis=(1, 2)).reshape(-1)
        top = np.argsort(-spread, kind="stable")[:max_channels]
        activations = activations[..., top]
    factors = (1,) + tuple(float(to) / float(source) for source, to in
                           zip(activations.shape[1:3], framed_image.shape[1:3])) + (1,)
    upsampled = zoom(activations, factors, order=1, mode="nearest")
    low = upsampled.min(axis=(1, 2), keepdims=True)
    high = upsampled.max(axis=(1, 2), keepdims=True)
    masks = (upsampled - low) / (high - low + EPSILON)  # (1, size, size, n)
    masked = framed_image[0][None] * np.transpose(masks[0], (2, 0, 1))[..., None]
    probabilities = compiled.probabilities_of(masked)
    rescaled = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
    weights = (rescaled / rescaled.sum(axis=1, keepdims=True))[:, class_index]
    cam = np.maximum(np.tensordot(activations, weights.astype("float32"), axes=([-1], [0])), 0.0)
    return _expand(cam, framed_image.shape[:3])
