"""Shades of Gray colour constancy: NumPy reference and the in-graph layer agree."""

import numpy as np
import pytest

import keras

from lesionlib.architectures import build_classifier
from lesionlib.colour import ShadesOfGray, shades_of_gray


def test_neutralises_a_colour_cast():
    rng = np.random.default_rng(0)
    grey_scene = rng.uniform(60, 200, (40, 50, 1)).repeat(3, axis=2)
    cast = np.clip(grey_scene * np.array([1.3, 1.0, 0.7]), 0, 255)
    corrected = shades_of_gray(cast)
    channel_means = corrected.reshape(-1, 3).mean(axis=0)
    assert np.ptp(channel_means) < 0.05 * channel_means.mean()  # cast removed
    assert np.ptp(cast.reshape(-1, 3).mean(axis=0)) > 0.2 * channel_means.mean()


def test_grey_image_is_unchanged_and_output_in_range():
    grey = np.full((20, 20, 3), 128.0)
    np.testing.assert_allclose(shades_of_gray(grey), grey, atol=1e-3)
    assert shades_of_gray(np.full((8, 8, 3), 255.0)).max() <= 255.0


def test_layer_matches_numpy_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 24, 24, 3)).astype("float32")
    layer_output = ShadesOfGray()(images)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer_output), shades_of_gray(images),
                               atol=1e-3)
    model = build_classifier("small_cnn", 24, colour_constancy=True)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-5)


def test_refuses_wrong_shape():
    with pytest.raises(ValueError, match=r"received \(4, 4\)"):
        shades_of_gray(np.zeros((4, 4)))


def test_a_packaged_colour_constancy_model_loads_in_a_fresh_process(tmp_path):
    """The registry registers the layer itself: nothing else has to be imported first."""
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from lesionlib.architectures import build_classifier
    from lesionlib.packaging import install_model, single_card_data

    model = build_classifier("small_cnn", 32, colour_constancy=True)
    model.save(tmp_path / "run.keras")
    card = single_card_data("cc.test", "Colour constancy test", "small_cnn", 32, "unit",
                            "top_activation", "", training={"recipe": {"colour_constancy": True}})
    install_model(tmp_path / "run.keras", tmp_path / "weights" / "cc.test", card)
    script = ("import sys; from lesionlib import registry; "
              "model = registry.load_classifier('cc.test', sys.argv[1]); "
              "print(model.members[0].keras_model.get_layer('colour_constancy').power)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "weights")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("6")
