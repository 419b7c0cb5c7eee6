"""The logit-adjusted loss and mixup (issue 18's recipe levers), on tiny tensors and a tiny model."""

import json

import numpy as np
import pytest
import tensorflow as tf

import keras

from lesionlib.losses import LogitAdjustedCrossentropy, class_priors
from lesionlib.mixup import mixup
from lesionlib.training import TrainConfig, make_dataset, train


def test_logit_adjusted_loss_is_the_cross_entropy_of_the_adjusted_logits():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype="float32")
    targets = np.array([[0, 1, 0], [0, 0, 1]], dtype="float32")
    priors = [0.7, 0.2, 0.1]
    probabilities = tf.nn.softmax(logits).numpy()
    adjusted = logits + np.log(priors)
    expected = keras.losses.CategoricalCrossentropy(from_logits=True)(targets, adjusted)
    loss = LogitAdjustedCrossentropy(priors, tau=1.0)
    assert float(loss(targets, probabilities)) == pytest.approx(float(expected), rel=1e-5)
    plain = keras.losses.CategoricalCrossentropy()(targets, probabilities)
    assert float(LogitAdjustedCrossentropy(priors, tau=0.0)(targets, probabilities)) == \
        pytest.approx(float(plain), rel=1e-5)
    # a rare class's correct answer costs more than under plain cross-entropy: the model is
    # pushed to give it a larger margin, which is what balances the recall
    assert float(loss(targets[:1], probabilities[:1])) > float(plain)


def test_logit_adjusted_loss_round_trips_and_refuses_bad_priors():
    loss = LogitAdjustedCrossentropy([0.5, 0.5], tau=0.5, label_smoothing=0.1)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (again.priors, again.tau, again.label_smoothing) == ([0.5, 0.5], 0.5, 0.1)
    with pytest.raises(ValueError, match="positive"):
        LogitAdjustedCrossentropy([0.5, 0.0])
    with pytest.raises(ValueError, match="every class"):
        class_priors(np.array([0, 0, 2]), 3)
    assert class_priors(np.array([0, 0, 1, 2]), 3) == [0.5, 0.25, 0.25]


def test_mixup_blends_images_targets_and_weights_alike_and_is_seeded():
    images = tf.constant(np.arange(4 * 2 * 2 * 3, dtype="float32").reshape(4, 2, 2, 3))
    targets = tf.one_hot([0, 1, 2, 3], 4)
    weights = tf.constant([1.0, 2.0, 3.0, 4.0])
    seed = tf.constant([3, 5], tf.int64)
    mixed, mixed_targets, mixed_weights = mixup(images, targets, weights, seed, alpha=0.4)
    again = mixup(images, targets, weights, seed, alpha=0.4)
    np.testing.assert_array_equal(mixed.numpy(), again[0].numpy())
    np.testing.assert_allclose(mixed_targets.numpy().sum(axis=1), 1.0, rtol=1e-6)
    # each row is t_ii * itself + t_ij * its partner j, with the same shares as its target row
    shares = mixed_targets.numpy()
    for row in range(4):
        expected = sum(shares[row, column] * images.numpy()[column] for column in range(4))
        np.testing.assert_allclose(mixed.numpy()[row], expected, rtol=1e-5)
        np.testing.assert_allclose(mixed_weights.numpy()[row],
                                   (shares[row] * weights.numpy()).sum(), rtol=1e-5)
    assert (shares.max(axis=1) < 1.0).any()  # rows paired with themselves stay as they were
    np.testing.assert_allclose(mixed_weights.numpy().mean(), 2.5, rtol=1e-5)
    unchanged = mixup(images, targets, weights, seed, alpha=0.0)
    assert unchanged[0] is images


def test_training_dataset_mixes_only_when_asked():
    images = np.random.default_rng(0).integers(0, 255, (16, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(16, dtype="int32") % 7
    plain = TrainConfig("small_cnn", 8, imagenet=False, batch_size=8)
    mixed = TrainConfig("small_cnn", 8, imagenet=False, batch_size=8, mixup_alpha=1.0)
    first = next(iter(make_dataset(images, labels, plain, [0], {i: 1.0 for i in range(7)})))
    second = next(iter(make_dataset(images, labels, mixed, [0], {i: 1.0 for i in range(7)})))
    assert set(np.unique(first[1].numpy())) == {0.0, 1.0}
    assert not set(np.unique(second[1].numpy())) <= {0.0, 1.0}


def test_logit_adjusted_training_writes_its_priors_and_refuses_class_weights(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (28, 32, 32, 3), dtype=np.uint8)
    labels = np.array([5] * 10 + [0, 1, 2, 3, 4, 6] * 3, dtype="int32")
    config = TrainConfig("small_cnn", 32, imagenet=False, head_epochs=1, fine_tune_epochs=0,
                         batch_size=14, class_weight_power=0.0, logit_adjustment=1.0,
                         mixup_alpha=0.2)
    best = train(config, images, labels, images, labels, tmp_path, log=lambda _: None, verbose=0)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["config"]["logit_adjustment"] == 1.0
    assert set(state["class_weights"].values()) == {1.0}
    compiled_loss = keras.models.load_model(tmp_path / "last.keras", safe_mode=True).loss
    assert compiled_loss.priors[5] == pytest.approx(10 / 28)
    assert keras.models.load_model(best, safe_mode=True)(images[:1].astype("float32")).shape \
        == (1, 7)
    weighted = TrainConfig(**{**config.to_dict(), "class_weight_power": 0.8})
    with pytest.raises(ValueError, match="replaces class weights.*--class-weight-power 0"):
        train(weighted, images, labels, images, labels, tmp_path / "other", log=lambda _: None,
              verbose=0)


def test_a_runs_command_names_the_levers_it_used():
    from lesionlib.packaging import train_command

    recipe = TrainConfig("efficientnet_lite0", 160, class_weight_power=0.0,
                         logit_adjustment=1.0, mixup_alpha=0.2).to_dict()
    command = train_command(recipe, "runs-ablation/x")
    assert "--logit-adjustment 1.0" in command and "--mixup 0.2" in command
    sampled = TrainConfig("efficientnet_lite0", 160, balanced_sampling=True).to_dict()
    assert train_command(sampled, "r").endswith("--balanced-sampling")
    plain = train_command(TrainConfig("efficientnet_lite0", 160).to_dict(), "runs/x")
    assert "--logit-adjustment" not in plain and "--mixup" not in plain


def test_balanced_sampling_draws_rare_classes_more_and_trains_unweighted():
    labels = np.array([5] * 90 + [3] * 10, dtype="int32")
    images = np.zeros((100, 4, 4, 3), dtype=np.uint8)
    weights = {3: 5.0, 5: 0.5}  # class 3 carries 10 * 5 = 50 of the total weight 95
    config = TrainConfig("small_cnn", 4, imagenet=False, batch_size=100, balanced_sampling=True)
    _, targets, sample_weights = next(iter(make_dataset(images, labels, config, [0], weights)))
    drawn = targets.numpy().argmax(axis=1)
    assert 35 <= (drawn == 3).sum() <= 70  # about half, not one in ten
    assert set(sample_weights.numpy().tolist()) == {1.0}
    again = next(iter(make_dataset(images, labels, config, [0], weights)))[1].numpy()
    np.testing.assert_array_equal(again.argmax(axis=1), drawn)  # seeded: a resume draws alike
    plain = TrainConfig("small_cnn", 4, imagenet=False, batch_size=100)
    _, targets, sample_weights = next(iter(make_dataset(images, labels, plain, [0], weights)))
    assert (targets.numpy().argmax(axis=1) == 3).sum() == 10
    assert sorted(set(sample_weights.numpy().tolist())) == [0.5, 5.0]
