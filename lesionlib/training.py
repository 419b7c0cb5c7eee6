"""Two-phase transfer learning on HAM10000, with checkpoints, resume and fixed seeds.

Phase 1 trains the head on a frozen backbone. Phase 2 unfreezes the top of the backbone (all
layers from ``fine_tune_from`` on) at a low learning rate with every BatchNormalization layer kept
frozen, as in the keras-io fine-tuning guide. A model trained from scratch (``small_cnn``) runs one
phase with everything trainable. The epoch with the best validation balanced accuracy is kept.

Augmentation suited to dermoscopy (no preferred orientation): horizontal and vertical flips,
90-degree rotations, zoom (random crop of 75-100% of the side, resized back), and small changes of
brightness, contrast, saturation and hue. Class imbalance: class weights proportional to
``(1 / class frequency) ** class_weight_power``, normalised to a mean of 1 over samples.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

import keras
import tensorflow as tf

from lesionlib.architectures import build_classifier
from lesionlib.classes import CLASS_NAMES
from lesionlib.metrics import balanced_accuracy


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (written into the model card)."""

    architecture: str
    image_size: int
    imagenet: bool = True
    head_epochs: int = 2
    fine_tune_epochs: int = 6
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 2e-4
    fine_tune_from: str | None = None  # first layer name unfrozen in phase 2; None = automatic
    batch_size: int = 32
    class_weight_power: float = 0.6
    label_smoothing: float = 0.05
    dropout: float = 0.3
    seed: int = 20261121

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    """Weights ``(1 / frequency) ** power``, normalised so the mean weight per sample is 1."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype("float64")
    raw = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    raw /= (raw * counts).sum() / counts.sum()
    return {index: float(weight) for index, weight in enumerate(raw)}


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random dermoscopy augmentation of a uint8 batch; returns float32 in [0, 255]."""
    size = tf.shape(images)[1]
    images = tf.cast(images, tf.float32) / 255.0
    seeds = tf.random.experimental.stateless_split(seed, num=9)
    images = tf.image.stateless_random_flip_left_right(images, seeds[0])
    images = tf.image.stateless_random_flip_up_down(images, seeds[1])
    rotations = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
    images = tf.image.rot90(images, rotations)
    scale = tf.random.stateless_uniform([], seeds[3], 0.75, 1.0)
    crop = tf.cast(tf.cast(size, tf.float32) * scale, tf.int32)
    images = tf.image.stateless_random_crop(images, [tf.shape(images)[0], crop, crop, 3], seeds[4])
    images = tf.image.resize(images, [size, size])
    images = tf.image.stateless_random_brightness(images, 0.1, seeds[5])
    images = tf.image.stateless_random_contrast(images, 0.85, 1.15, seeds[6])
    images = tf.image.stateless_random_saturation(images, 0.85, 1.15, seeds[7])
    images = tf.image.stateless_random_hue(images, 0.03, seeds[8])
    return tf.clip_by_value(images, 0.0, 1.0) * 255.0


def make_dataset(images: np.ndarray, labels: np.ndarray, config: TrainConfig, epoch_seed: int,
                 weights: dict[int, float]) -> tf.data.Dataset:
    rng = np.random.default_rng(config.seed + epoch_seed)
    order = rng.permutation(len(labels))
    sample_weights = np.array([weights[int(label)] for label in labels], dtype="float32")

    def generator():
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            yield images[batch], labels[batch], sample_weights[batch]

    size = config.image_size
    dataset = tf.data.Dataset.from_generator(generator, output_signature=(
        tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.float32)))
    dataset = dataset.enumerate().map(
        lambda step, batch: (augment(batch[0], tf.stack([tf.cast(epoch_seed, tf.int64), step])),
                             tf.one_hot(batch[1], len(CLASS_NAMES)), batch[2]),
        num_parallel_calls=2)
    return dataset.prefetch(2)


def set_phase(model: keras.Model, phase: str, fine_tune_from: str | None) -> None:
    """Freeze layers for ``phase`` in ("head", "fine_tune", "scratch"); BN stays frozen in 2."""
    head_layers = {"avg_pool", "head_dropout", "predictions"}
    if phase == "scratch":
        for layer in model.layers:
            layer.trainable = layer.name != "scaling"
        return
    unfrozen = False
    for layer in model.layers:
        if phase == "fine_tune" and layer.name == fine_tune_from:
            unfrozen = True
        trainable = layer.name in head_layers or (
            unfrozen and not isinstance(layer, keras.layers.BatchNormalization))
        layer.trainable = trainable and layer.name != "scaling"
    if phase == "fine_tune" and not unfrozen:
        raise ValueError(f"No layer named {fine_tune_from!r} in {model.name}.")


def default_fine_tune_from(model: keras.Model) -> str:
    """The first layer of the backbone's last ~70% of conv layers (top of the network)."""
    convolutions = [layer.name for layer in model.layers
                    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
                    and layer.name != "scaling"]
    return convolutions[int(len(convolutions) * 0.3)]


class _Checkpoint(keras.callbacks.Callback):
    """Each epoch: validation balanced accuracy, keep the best model, save resume state."""

    def __init__(self, run_dir: Path, phase: str, val_images, val_labels, state: dict, log):
        super().__init__()
        self.run_dir, self.phase, self.state, self.log = run_dir, phase, state, log
        self.val_images, self.val_labels = val_images, val_labels

    def on_epoch_end(self, epoch, logs=None):
        probabilities = self.model.predict(self.val_images, batch_size=64, verbose=0)
        score = balanced_accuracy(self.val_labels, probabilities.argmax(axis=1))
        history = self.state.setdefault("history", [])
        history.append({"phase": self.phase, "epoch": epoch + 1, "loss": float(logs["loss"]),
                        "val_balanced_accuracy": score, "time": time.time()})
        if score > self.state.get("best_val_balanced_accuracy", -1.0):
            self.state["best_val_balanced_accuracy"] = score
            self.state["best"] = {"phase": self.phase, "epoch": epoch + 1}
            self.model.save(self.run_dir / "best.keras")
        self.model.save(self.run_dir / "last.keras")
        self.state[f"{self.phase}_epochs_done"] = epoch + 1
        (self.run_dir / "state.json").write_text(json.dumps(self.state, indent=2))
        self.log(f"[{self.phase}] epoch {epoch + 1}: loss {logs['loss']:.4f}, "
                 f"val balanced accuracy {score:.4f} (best {self.state['best_val_balanced_accuracy']:.4f})")


def train(config: TrainConfig, train_images, train_labels, val_images, val_labels,
          run_dir: Path, log=print, verbose: int = 2) -> Path:
    """Train (or resume) a run in ``run_dir``; return the path of the best model (``best.keras``).

    Resume: a ``run_dir`` holding ``state.json`` and ``last.keras`` continues where it stopped.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state["config"] = config.to_dict()
    if (run_dir / "last.keras").exists():
        model = keras.models.load_model(run_dir / "last.keras", safe_mode=True)
        log(f"Resuming {run_dir} after {state.get('history', [])[-1:]}.")
    else:
        model = build_classifier(config.architecture, config.image_size, config.imagenet,
                                 config.dropout)
    weights = class_weights(train_labels, config.class_weight_power)
    state["class_weights"] = weights
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    scratch = not config.imagenet  # build_classifier refuses imagenet=True for small_cnn
    phases = [("scratch", config.head_epochs + config.fine_tune_epochs,
               config.head_learning_rate)] if scratch else [
        ("head", config.head_epochs, config.head_learning_rate),
        ("fine_tune", config.fine_tune_epochs, config.fine_tune_learning_rate)]
    fine_tune_from = config.fine_tune_from or default_fine_tune_from(model)
    state["fine_tune_from"] = fine_tune_from
    for phase, epochs, learning_rate in phases:
        done = state.get(f"{phase}_epochs_done", 0)
        if done >= epochs:
            continue
        set_phase(model, phase, fine_tune_from)
        steps = int(np.ceil(len(train_labels) / config.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs,
                                                          alpha=0.05)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)
        model.optimizer.iterations.assign(steps * done)
        checkpoint = _Checkpoint(run_dir, phase, val_images, val_labels, state, log)
        for epoch in range(done, epochs):
            dataset = make_dataset(train_images, train_labels, config,
                                   epoch_seed=epoch + 1000 * len(phase), weights=weights)
            model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, callbacks=[checkpoint],
                      verbose=verbose)
    return run_dir / "best.keras"
