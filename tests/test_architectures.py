"""Every registered backbone builds a flat classifier that runs (random weights)."""

import numpy as np
import pytest

import keras

from lesionlib import architectures
from lesionlib.architectures import (ImageNetWeightsUnavailable, build_classifier,
                                     get_architecture, list_architectures)

# Small inputs keep the suite fast; Inception variants need at least 75 px.
TEST_SIZES = {"inception_v3": 75, "inception_resnet_v2": 75}


@pytest.mark.parametrize("name", list_architectures())
def test_forward_pass_of_every_backbone(name):
    size = TEST_SIZES.get(name, 64)
    model = build_classifier(name, size, imagenet=False)
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    probabilities = model(images, training=False).numpy()
    assert probabilities.shape == (2, 7)
    assert not np.isnan(probabilities).any()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "graph is nested"
    model.get_layer(get_architecture(name).cam_layer)  # Grad-CAM's layer exists


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(KeyError, match="Did you mean .*efficientnet_lite"):
        get_architecture("efficientnet_lite")


def test_lite_imagenet_weights_load_without_torch(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails
    model = build_classifier("efficientnet_lite0", 64, imagenet=True)
    stem = model.get_layer("stem_conv").get_weights()[0]
    from lesionlib.efficientnet_lite import load_imagenet_arrays
    np.testing.assert_allclose(stem, load_imagenet_arrays("lite0")["stem_conv"][0])


def test_applications_imagenet_offline_gives_clear_error(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras.applications, "MobileNetV2", unreachable)
    with pytest.raises(ImageNetWeightsUnavailable, match="EfficientNet-Lite"):
        build_classifier("mobilenet_v2", 64, imagenet=True)


def test_small_cnn_has_no_imagenet_weights():
    with pytest.raises(ImageNetWeightsUnavailable):
        architectures.build_classifier("small_cnn", 32, imagenet=True)
