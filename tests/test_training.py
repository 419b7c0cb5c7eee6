"""Training on a tiny model: a real fit step, checkpoints, resume, phases, augmentation."""

import json

import numpy as np
import pytest
import tensorflow as tf

import keras

from lesionlib.architectures import build_classifier
from lesionlib.metrics import balanced_accuracy
from lesionlib.training import (SCORED_LAST, TrainConfig, augment, class_weights, set_phase,
                                train)


def _tiny_data(count=28, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count, dtype="int32") % 7
    return images, labels


def test_train_writes_best_model_and_resumes(tmp_path):
    images, labels = _tiny_data()
    config = TrainConfig("small_cnn", 32, imagenet=False, head_epochs=1, fine_tune_epochs=0,
                         batch_size=8)
    messages = []
    best = train(config, images, labels, images, labels, tmp_path, log=messages.append,
                 verbose=0)
    assert best.is_file()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["scratch_epochs_done"] == 1 and len(state["history"]) == 1
    assert 0.0 <= state["best_val_balanced_accuracy"] <= 1.0
    reloaded = keras.models.load_model(best, safe_mode=True)
    assert reloaded(images[:2].astype("float32")).shape == (2, 7)

    longer = TrainConfig("small_cnn", 32, imagenet=False, head_epochs=2, fine_tune_epochs=0,
                         batch_size=8)
    train(longer, images, labels, images, labels, tmp_path, log=messages.append, verbose=0)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [entry["epoch"] for entry in state["history"]] == [1, 2]  # resumed, not restarted
    assert any("Resuming" in message for message in messages)


def test_fit_step_changes_weights():
    images, labels = _tiny_data()
    model = build_classifier("small_cnn", 32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_layer("predictions").get_weights()[0].copy()
    model.fit(images.astype("float32"), labels, epochs=1, batch_size=14, verbose=0)
    assert not np.allclose(before, model.get_layer("predictions").get_weights()[0])


def test_fine_tune_phase_keeps_batch_norm_frozen():
    model = build_classifier("efficientnet_lite0", 64)
    set_phase(model, "head", None)
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"predictions"}
    set_phase(model, "fine_tune", "block10_expand_conv")
    assert model.get_layer("block10_expand_conv").trainable
    assert not model.get_layer("block9_project_conv").trainable
    assert not any(layer.trainable for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization))
    with pytest.raises(ValueError, match="No layer named"):
        set_phase(model, "fine_tune", "no_such_layer")


def test_class_weights_favour_rare_classes_and_average_one():
    labels = np.array([5] * 90 + [3] * 10)
    weights = class_weights(labels, power=1.0)
    assert weights[3] > weights[5]
    assert np.mean([weights[label] for label in labels]) == pytest.approx(1.0)


def test_augment_keeps_shape_and_range_and_is_seeded():
    images, _ = _tiny_data(4)
    first = augment(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    assert first.shape == images.shape
    assert first.min() >= 0.0 and first.max() <= 255.0
    again = augment(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    other = augment(tf.constant(images), tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_allclose(first, again, atol=1e-4)
    assert not np.allclose(first, other)


def test_strong_augment_is_per_image_seeded_and_in_range():
    from lesionlib.training import augment_strong

    images = np.repeat(_tiny_data(1)[0], 6, axis=0)  # six copies of one image
    first = augment_strong(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    assert first.shape == images.shape
    assert first.min() >= 0.0 and first.max() <= 255.0
    # Per-image randomness: identical inputs come out different within one batch.
    assert not np.allclose(first[0], first[1])
    again = augment_strong(tf.constant(images), tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_allclose(first, again, atol=1e-4)


def test_affine_transforms_stay_within_their_scale_range():
    from lesionlib.training import _affine_transforms

    transforms = _affine_transforms(4, tf.constant(32), tf.constant([5, 6], tf.int64)).numpy()
    assert transforms.shape == (4, 8)
    linear = transforms[:, [0, 1, 3, 4]].reshape(4, 2, 2)
    determinants = np.linalg.det(linear)
    # Scale 0.8-1.25 and shear <= 0.1: the inverse map's area factor stays within bounds.
    assert np.all(determinants > 1 / 1.25**2 * 0.9) and np.all(determinants < 1 / 0.8**2 * 1.1)


def test_unknown_augmentation_is_refused():
    from lesionlib.training import make_dataset

    images, labels = _tiny_data()
    config = TrainConfig("small_cnn", 32, imagenet=False, augmentation="wild")
    with pytest.raises(ValueError, match="Unknown augmentation 'wild'"):
        make_dataset(images, labels, config, [0], class_weights(labels, 0.5))


def test_whole_backbone_fine_tune_with_ema_resumes_and_keeps_colour_layer(tmp_path):
    images, labels = _tiny_data(count=32)
    config = TrainConfig("efficientnet_lite0", 32, imagenet=True, head_epochs=1,
                         fine_tune_epochs=1, fine_tune_from="all", colour_constancy=True,
                         augmentation="strong", warmup_epochs=0.5, ema_momentum=0.9,
                         batch_size=16)
    best = train(config, images, labels, images, labels, tmp_path, log=lambda _: None, verbose=0)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [(entry["phase"], entry["ema"]) for entry in state["history"]] == [
        ("head", False), ("fine_tune", True)]
    assert "val_melanoma_auc" in state["history"][-1]
    model = keras.models.load_model(best, safe_mode=True)
    assert model.get_layer("colour_constancy").power == 6
    # The whole backbone was trainable in phase 2: the stem changed from ImageNet's weights.
    fresh = build_classifier("efficientnet_lite0", 32, imagenet=True, colour_constancy=True)
    stem = next(layer.name for layer in fresh.layers if isinstance(layer, keras.layers.Conv2D))
    assert not np.allclose(fresh.get_layer(stem).get_weights()[0],
                           keras.models.load_model(tmp_path / "last.keras").get_layer(
                               stem).get_weights()[0])
    # The last epoch's scored weights (the EMA average) are kept beside the live ones: they
    # score as the run's history says, and differ from last.keras (the optimizer's weights).
    scored = keras.models.load_model(tmp_path / SCORED_LAST, safe_mode=True)
    probabilities = scored.predict(images.astype("float32"), verbose=0)
    assert balanced_accuracy(labels, probabilities.argmax(axis=1)) == pytest.approx(
        state["history"][-1]["val_balanced_accuracy"])
    assert not np.allclose(scored.get_layer(stem).get_weights()[0],
                           keras.models.load_model(tmp_path / "last.keras").get_layer(
                               stem).get_weights()[0])
    longer = TrainConfig(**{**config.to_dict(), "fine_tune_epochs": 2})
    train(longer, images, labels, images, labels, tmp_path, log=lambda _: None, verbose=0)
    state = json.loads((tmp_path / "state.json").read_text())
    assert [entry["epoch"] for entry in state["history"]] == [1, 1, 2]


def test_resumed_phase_starts_its_weight_average_from_the_resumed_weights():
    from lesionlib.training import _start_ema_from_weights

    model = build_classifier("small_cnn", 32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.99),
                  loss="categorical_crossentropy")
    model.optimizer.iterations.assign(500)  # as train() does when resuming mid-phase
    _start_ema_from_weights(model)
    averages = model.optimizer._model_variables_moving_average
    assert len(averages) == len(model.trainable_variables)
    for variable, average in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(np.asarray(average), np.asarray(variable))
    # one more training step keeps the average next to the weights (no decay from zeros)
    images, labels = _tiny_data(count=8)
    model.fit(images, keras.utils.to_categorical(labels, 7), epochs=1, verbose=0)
    kernel = next(v for v in model.trainable_variables if "kernel" in v.path)
    average = averages[[v.path for v in model.trainable_variables].index(kernel.path)]
    assert np.linalg.norm(np.asarray(average)) > 0.5 * np.linalg.norm(np.asarray(kernel))


def test_grouped_class_weights_keep_each_sets_balance():
    """A second clinic with another class mix gets its own class weights: HAM10000's rare classes
    keep the weight they had without it, and each group keeps a mean weight of 1."""
    import numpy as np

    from lesionlib.training import class_weights, grouped_sample_weights

    ham = np.array([5] * 60 + [4] * 10 + [0] * 5)
    bcn = np.array([4] * 30 + [1] * 30 + [5] * 15)
    labels = np.concatenate([ham, bcn])
    groups = np.array(["ham10000"] * len(ham) + ["bcn20000"] * len(bcn))
    weights, per_group = grouped_sample_weights(labels, groups, ("bcn20000",), 0.8)
    alone = class_weights(ham, 0.8)
    assert per_group["others"] == alone
    assert weights[:len(ham)].tolist() == pytest.approx([alone[label] for label in ham])
    assert weights[:len(ham)].mean() == pytest.approx(1.0)
    assert weights[len(ham):].mean() == pytest.approx(1.0)
    assert per_group["bcn20000"] == class_weights(bcn, 0.8)
