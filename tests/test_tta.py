"""Test-time flips: the four views, and their mean for a model that is not flip-invariant."""

import numpy as np

import keras

from lesionlib.architectures import build_classifier
from lesionlib.tta import VIEWS, flipped_views, predict_with_flips


def test_views_are_the_four_flips():
    batch = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    views = flipped_views(batch)
    assert len(views) == len(VIEWS)
    np.testing.assert_array_equal(views[1][0, 0, 0], batch[0, 0, -1])
    np.testing.assert_array_equal(views[2][0, 0, 0], batch[0, -1, 0])
    np.testing.assert_array_equal(views[3][0, 0, 0], batch[0, -1, -1])


def test_flip_average_is_the_mean_of_the_views():
    keras.utils.set_random_seed(0)
    model = build_classifier("small_cnn", 32)
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = np.mean([model.predict(np.ascontiguousarray(view), verbose=0)
                        for view in flipped_views(images)], axis=0)
    np.testing.assert_allclose(predict_with_flips(model, images), expected, atol=1e-6)
    np.testing.assert_allclose(predict_with_flips(model, images, flips=False),
                               model.predict(images, verbose=0), atol=1e-6)
    np.testing.assert_allclose(predict_with_flips(model, images).sum(axis=1), 1.0, atol=1e-5)
