"""Two-phase transfer learning on HAM10000, with checkpoints, resume and fixed seeds.

Phase 1 trains the head on a frozen backbone. Phase 2 unfreezes the backbone from
``fine_tune_from`` on (``"all"``: the whole backbone) with every BatchNormalization layer kept
frozen, as in the keras-io fine-tuning guide, optionally after a linear learning-rate warm-up and
with an exponential moving average (EMA) of the weights. A model trained from scratch
(``small_cnn``) runs one phase with everything trainable. The epoch with the best validation
balanced accuracy is kept (scored with the EMA weights when EMA is on).

Augmentation suited to dermoscopy (no preferred orientation). ``"basic"`` (version 1.0.0 models):
flips, 90-degree rotations, zoom and small colour changes, each shared by a batch. ``"strong"``:
per-image flips and 90-degree rotations, a random affine transform (rotation, scale, shear,
shift; reflected borders), per-image brightness/contrast/saturation and channel-gain jitter, and
random erasing. Class imbalance: class weights proportional to
``(1 / class frequency) ** class_weight_power``, normalised to a mean of 1 over samples, or
instead the logit-adjusted loss (``losses.py``), or the same weights as sampling probabilities
(``balanced_sampling``). Optionally mixup of each batch (``mixup.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import keras
import tensorflow as tf

from lesionlib.architectures import build_classifier
from lesionlib.classes import CLASS_NAMES
from lesionlib.distributed import (ClusterError, gather_from_workers, prepare_model,
                                   release_write_dir, shard_rows, worker_count, write_dir)
from lesionlib.losses import LogitAdjustedCrossentropy, class_priors
from lesionlib.metrics import balanced_accuracy
from lesionlib.mixup import mixup


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
    # Added for version 2 recipes; the defaults reproduce the version 1.0.0 training.
    colour_constancy: bool = False
    augmentation: str = "basic"  # "basic" or "strong"
    warmup_epochs: float = 0.0  # of phase 2, linear from 0 to fine_tune_learning_rate
    ema_momentum: float | None = None  # e.g. 0.998; None = no EMA
    weight_decay: float = 0.0  # decoupled (AdamW) when > 0
    extra_training_sets: tuple[str, ...] = ()  # e.g. ("isic2017",): their "train" split
    # Added for version 3 recipes (a second clinic); the defaults reproduce version 2.
    low_resolution_probability: float = 0.0  # share of images seen at 72-128 px, upsampled back
    extra_validation_sets: tuple[str, ...] = ()  # e.g. ("bcn20000",): scored with HAM10000 val
    initial_weights: str | None = None  # a model file to start from (lineage), not ImageNet
    # extra training sets whose class weights are computed on their own (each set's weights
    # normalised to a mean of 1 over its samples), so that a set with another class mix (BCN20000:
    # a quarter melanomas) does not lower the weights of HAM10000's rare classes
    class_weight_groups: tuple[str, ...] = ()
    # Further levers (issue 18's ablation); the defaults reproduce version 3.
    logit_adjustment: float = 0.0  # tau of the logit-adjusted loss (losses.py); 0 = off
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of each batch (mixup.py); 0 = off
    # draw each epoch's images with replacement, in proportion to their class weight, and train
    # unweighted: the same class balance as the weights, with less noisy gradients
    balanced_sampling: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    """Weights ``(1 / frequency) ** power``, normalised so the mean weight per sample is 1."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype("float64")
    raw = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    raw /= (raw * counts).sum() / counts.sum()
    return {index: float(weight) for index, weight in enumerate(raw)}


def grouped_sample_weights(labels: np.ndarray, groups: np.ndarray, own_groups: tuple[str, ...],
                           power: float) -> tuple[np.ndarray, dict]:
    """Per-sample class weights, computed separately for each of ``own_groups`` and once for all
    other samples together; each part keeps a mean weight of 1 over its samples.

    Returns the weights and ``{group: {class index: weight}}`` (``"others"``: the pooled rest).
    """
    groups = np.asarray(groups)
    pooled = ~np.isin(groups, list(own_groups))
    sample_weights = np.zeros(len(labels), dtype="float32")
    per_group = {}
    for name, members in [("others", pooled), *((group, groups == group)
                                                for group in own_groups)]:
        if not members.any():
            continue
        weights = class_weights(labels[members], power)
        sample_weights[members] = [weights[int(label)] for label in labels[members]]
        per_group[name] = weights
    return sample_weights, per_group


def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The version 1 ("basic") augmentation of a uint8 batch; returns float32 in [0, 255]."""
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


def _affine_transforms(batch: tf.Tensor, size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per-image projective transforms (output -> input pixel maps) for rotation up to 45
    degrees, scale 0.8-1.25, shear up to 0.1 and shifts up to 8% of the side, about the centre."""
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = tf.random.stateless_uniform([batch], seeds[0], -np.pi / 4, np.pi / 4)
    scale = tf.exp(tf.random.stateless_uniform([batch], seeds[1], np.log(0.8), np.log(1.25)))
    shear = tf.random.stateless_uniform([batch], seeds[2], -0.1, 0.1)
    shift = tf.random.stateless_uniform([batch, 2], seeds[3], -0.08, 0.08) * tf.cast(size,
                                                                                    tf.float32)
    centre = (tf.cast(size, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Inverse map: input = A @ (output - centre - shift) + centre, with A = R(-angle) S^-1 H.
    a0, a1 = cos, cos * shear + sin
    b0, b1 = -sin, -sin * shear + cos
    x_offset = centre - a0 * (centre + shift[:, 0]) - a1 * (centre + shift[:, 1])
    y_offset = centre - b0 * (centre + shift[:, 0]) - b1 * (centre + shift[:, 1])
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, x_offset, b0, b1, y_offset, zeros, zeros], axis=1)


def augment_strong(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Per-image dermoscopy augmentation of a uint8 batch; returns float32 in [0, 255]."""
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    images = tf.cast(images, tf.float32) / 255.0
    seeds = tf.random.experimental.stateless_split(seed, num=10)
    images = tf.image.stateless_random_flip_left_right(images, seeds[0])
    images = tf.image.stateless_random_flip_up_down(images, seeds[1])
    transpose = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[2]) < 0.5
    images = tf.where(transpose, tf.transpose(images, [0, 2, 1, 3]), images)  # with flips: D4
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=_affine_transforms(batch, size, seeds[3]),
        output_shape=tf.stack([size, size]), fill_value=0.0, interpolation="BILINEAR",
        fill_mode="REFLECT")
    brightness = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[4], -0.12, 0.12)
    contrast = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[5], 0.8, 1.2)
    saturation = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[6], 0.75, 1.25)
    gains = tf.random.stateless_uniform([batch, 1, 1, 3], seeds[7], 0.92, 1.08)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    grey = tf.reduce_mean(images, axis=3, keepdims=True)
    images = (grey + (images - grey) * saturation) * gains
    images = _random_erasing(tf.clip_by_value(images, 0.0, 1.0), seeds[8:10])
    return images * 255.0


def _random_erasing(images: tf.Tensor, seeds: tf.Tensor, probability: float = 0.5) -> tf.Tensor:
    """Fill one random rectangle (2-12% of the image) per image, with probability 0.5, with the
    image's mean colour (Zhong et al. 2020)."""
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    values = tf.random.stateless_uniform([batch, 6], seeds[0])
    area = 0.02 + 0.10 * values[:, 0]
    aspect = tf.exp((values[:, 1] - 0.5) * 2.0 * np.log(3.0))
    height = tf.minimum(tf.sqrt(area * aspect), 1.0)
    width = tf.minimum(tf.sqrt(area / aspect), 1.0)
    top = values[:, 2] * (1.0 - height)
    left = values[:, 3] * (1.0 - width)
    coordinates = (tf.cast(tf.range(size), tf.float32) + 0.5) / tf.cast(size, tf.float32)
    rows = (coordinates[None, :] >= top[:, None]) & (coordinates[None, :] < (top + height)[:, None])
    columns = ((coordinates[None, :] >= left[:, None])
               & (coordinates[None, :] < (left + width)[:, None]))
    box = rows[:, :, None] & columns[:, None, :] & (values[:, 4] < probability)[:, None, None]
    fill = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.where(box[..., None], fill, images)


def no_augmentation(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """No augmentation (tests, ablations): the uint8 batch as float32 in [0, 255]."""
    del seed
    return tf.cast(images, tf.float32)


AUGMENTATIONS = {"basic": augment, "strong": augment_strong, "none": no_augmentation}


def low_resolution(images: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Resolution augmentation: with ``probability`` per image, downsample to one side drawn per
    batch from 72-128 px (area) and upsample back (bilinear), as a second clinic's 84x84 images
    reach the model. Float batch in [0, 255] in and out."""
    if probability <= 0:
        return images
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 7919), num=2)
    low = tf.random.stateless_uniform([], seeds[0], 72, 129, dtype=tf.int32)
    small = tf.image.resize(images, tf.stack([low, low]), method="area")
    blurred = tf.image.resize(small, tf.stack([size, size]), method="bilinear")
    chosen = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[1]) < probability
    return tf.where(chosen, blurred, images)


def make_dataset(images: np.ndarray, labels: np.ndarray, config: TrainConfig,
                 epoch_seeds: list[int], weights: dict[int, float] | np.ndarray,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Shuffled, augmented batches for consecutive epochs, one seed per epoch (so a resumed run
    sees the same data order as an uninterrupted one).

    ``shard=(index, count)``: this worker's contiguous part of each global batch of
    ``config.batch_size``, augmented with its own seed (one worker: the whole batch, unchanged).
    ``weights``: per class, or already per sample (``grouped_sample_weights``); with
    ``config.balanced_sampling`` they are sampling probabilities instead of loss weights.
    """
    sample_weights = (np.asarray(weights, dtype="float32") if isinstance(weights, np.ndarray)
                      else np.array([weights[int(label)] for label in labels], dtype="float32"))
    draw = sample_weights / sample_weights.sum() if config.balanced_sampling else None
    if draw is not None:
        sample_weights = np.ones_like(sample_weights)
    shard_index, shard_count = shard

    def generator():
        for epoch_seed in epoch_seeds:
            rng = np.random.default_rng(config.seed + epoch_seed)
            order = (rng.permutation(len(labels)) if draw is None
                     else rng.choice(len(labels), len(labels), p=draw))
            for step, start in enumerate(range(0, len(order), config.batch_size)):
                batch = np.sort(order[start:start + config.batch_size])  # sorted: mmap reads
                batch = shard_rows(batch, shard_count, shard_index)
                yield (images[batch], labels[batch], sample_weights[batch],
                       [epoch_seed, step * shard_count + shard_index])

    size = config.image_size
    if config.augmentation not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {config.augmentation!r}; expected one of "
                         f"{sorted(AUGMENTATIONS)}.")
    chosen_augmentation = AUGMENTATIONS[config.augmentation]

    def augmentation(batch_images, seed):
        return low_resolution(chosen_augmentation(batch_images, seed), seed,
                              config.low_resolution_probability)
    dataset = tf.data.Dataset.from_generator(generator, output_signature=(
        tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.float32), tf.TensorSpec((2,), tf.int64)))
    dataset = dataset.map(
        lambda batch_images, batch_labels, batch_weights, seed: mixup(
            augmentation(batch_images, seed), tf.one_hot(batch_labels, len(CLASS_NAMES)),
            batch_weights, seed, config.mixup_alpha),
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


def default_fine_tune_from(model: keras.Model, whole_backbone: bool = False) -> str:
    """The first layer of the backbone's last ~70% of conv layers (top of the network), or its
    first conv layer when ``whole_backbone``."""
    convolutions = [layer.name for layer in model.layers
                    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
                    and layer.name != "scaling"]
    return convolutions[0 if whole_backbone else int(len(convolutions) * 0.3)]


def _swap_ema(model: keras.Model) -> bool:
    """Swap the model's trainable weights with the optimizer's EMA copies (call twice to undo);
    returns False when the optimizer keeps no EMA."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "use_ema", False):
        return False
    for variable, average in zip(optimizer._trainable_variables,
                                 optimizer._model_variables_moving_average):
        current = keras.ops.convert_to_numpy(variable)
        variable.assign(average)
        average.assign(current)
    return True


def _start_ema_from_weights(model: keras.Model) -> None:
    """On resume, start the optimizer's EMA from the resumed weights.

    Keras copies the weights into the average only at step 0 and builds the averages as zeros;
    a resumed phase starts at a later step, so without this the average decays from zeros and
    the scored (EMA) model collapses.
    """
    optimizer = model.optimizer
    if not getattr(optimizer, "use_ema", False):
        return
    if not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)
    for variable, average in zip(optimizer._trainable_variables,
                                 optimizer._model_variables_moving_average):
        average.assign(variable)


SCORED_LAST = "last_scored.keras"


class _Checkpoint(keras.callbacks.Callback):
    """Each epoch: validation balanced accuracy, keep the best model, save resume state."""

    def __init__(self, run_dir: Path, phase: str, val_images, val_labels, state: dict, log,
                 extra_validation: dict | None = None):
        super().__init__()
        self.run_dir, self.phase, self.state, self.log = run_dir, phase, state, log
        self.val_images, self.val_labels = val_images, val_labels
        self.extra_validation = extra_validation or {}
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def _score(self, images, labels) -> tuple[float, float]:
        probabilities = _predict(self.model, images)
        score = balanced_accuracy(labels, probabilities.argmax(axis=1))
        melanoma = (labels == CLASS_NAMES.index("mel")).astype(int)
        return score, float(roc_auc_score(melanoma, probabilities[:, CLASS_NAMES.index("mel")]))

    def on_epoch_end(self, epoch, logs=None):
        epoch_seconds = time.time() - self.started
        swapped = _swap_ema(self.model)  # score and keep the EMA weights
        try:
            ham_score, auc = self._score(self.val_images, self.val_labels)
            entry = {"phase": self.phase, "epoch": epoch + 1, "loss": float(logs["loss"]),
                     "val_balanced_accuracy": ham_score, "val_melanoma_auc": auc,
                     "ema": swapped, "time": time.time(), "epoch_seconds": epoch_seconds,
                     "load_average": list(os.getloadavg()),
                     "workers": worker_count(self.model.distribute_strategy)}
            scores = [ham_score]
            for name, (images, labels) in self.extra_validation.items():
                extra_score, extra_auc = self._score(images, labels)
                entry[f"{name}_val_balanced_accuracy"] = extra_score
                entry[f"{name}_val_melanoma_auc"] = extra_auc
                scores.append(extra_score)
            # The kept epoch: HAM10000 validation BA, or its mean with the other clinics' val BA.
            score = float(np.mean(scores))
            entry["selection_score"] = score
            history = self.state.setdefault("history", [])
            history.append(entry)
            best = self.state.get("best_selection_score",
                                  self.state.get("best_val_balanced_accuracy", -1.0))
            if score > best:
                self.state["best_selection_score"] = score
                self.state["best_val_balanced_accuracy"] = ham_score
                self.state["best"] = {"phase": self.phase, "epoch": epoch + 1}
                self.model.save(self.run_dir / "best.keras")
            # The weights this epoch was scored with (the EMA average where there is one), kept
            # whether or not they are the best: after the run, the end of its schedule as scored.
            # last.keras below holds the optimizer's live weights, for resuming.
            self.model.save(self.run_dir / SCORED_LAST)
        finally:
            if swapped:
                _swap_ema(self.model)
        self.model.save(self.run_dir / "last.keras")
        self.state[f"{self.phase}_epochs_done"] = epoch + 1
        (self.run_dir / "state.json").write_text(json.dumps(self.state, indent=2))
        extra = "".join(f", {name} val BA {entry[name + '_val_balanced_accuracy']:.4f} / AUC "
                        f"{entry[name + '_val_melanoma_auc']:.4f}" for name in self.extra_validation)
        self.log(f"[{self.phase}] epoch {epoch + 1}: loss {logs['loss']:.4f}, "
                 f"val balanced accuracy {ham_score:.4f}, melanoma AUC {auc:.4f}{extra}, "
                 f"selection {score:.4f} (best {self.state['best_selection_score']:.4f}), "
                 f"{epoch_seconds:.0f} s, load {entry['load_average'][0]:.2f}")


def _predict(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of ``images``. On several workers each one scores the whole set by
    itself (no collectives), so all of them reach the same best-epoch decision."""
    if worker_count(model.distribute_strategy) == 1:
        return model.predict(images, batch_size=batch_size, verbose=0)
    forward = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
    return np.concatenate([
        forward(tf.cast(images[start:start + batch_size], tf.float32)).numpy()
        for start in range(0, len(images), batch_size)])


def _check_batches(samples: int, batch_size: int, workers: int) -> None:
    """Every worker needs at least one sample of every global batch."""
    last = samples % batch_size
    if batch_size < workers or 0 < last < workers:
        raise ClusterError(
            f"{workers} workers need at least {workers} samples in every batch: received "
            f"batch size {batch_size} over {samples} samples (last batch {last or batch_size}). "
            "Choose a batch size of at least the number of workers that leaves no smaller "
            "last batch.")


def _check_workers_agree(strategy, state: dict, run_dir: Path) -> None:
    """Refuse to start when the workers would resume from different checkpoints."""
    resume_point = [int((run_dir / "last.keras").exists())] + [
        int(state.get(f"{phase}_epochs_done", 0)) for phase in ("head", "fine_tune", "scratch")]
    seen = gather_from_workers(strategy, resume_point)
    if any(row != seen[0] for row in seen):
        raise ClusterError(
            f"The workers see different checkpoints in {run_dir} (per worker: has last.keras, "
            f"head/fine-tune/scratch epochs done = {seen}). Give every worker the same shared "
            "run folder (or a copy of the chief's) before resuming.")


def _training_dataset(strategy, train_images, train_labels, config: TrainConfig,
                      epoch_seeds: list[int], weights: dict[int, float] | np.ndarray):
    """``make_dataset`` for one process; on several workers each builds its own shard."""
    if worker_count(strategy) == 1:
        return make_dataset(train_images, train_labels, config, epoch_seeds, weights=weights)
    return strategy.distribute_datasets_from_function(
        lambda context: make_dataset(
            train_images, train_labels, config, epoch_seeds, weights=weights,
            shard=(context.input_pipeline_id, context.num_input_pipelines)))


def train(config: TrainConfig, train_images, train_labels, val_images, val_labels,
          run_dir: Path, log=print, verbose: int = 2, strategy=None,
          initial_model: keras.Model | None = None,
          extra_validation: dict | None = None, train_groups: np.ndarray | None = None) -> Path:
    """Train (or resume) a run in ``run_dir``; return the path of the best model (``best.keras``).

    Resume: a ``run_dir`` holding ``state.json`` and ``last.keras`` continues where it stopped.
    ``strategy``: from ``lesionlib.distributed.make_strategy``; several workers each run this
    with the same arguments and share ``config.batch_size`` (the global batch). Only the chief
    writes ``run_dir``. None: this process alone.
    ``initial_model`` (e.g. the live model, for retraining; one process only) replaces the
    freshly built one when the run starts; it is trained in place.
    ``extra_validation``: ``{name: (images, labels)}`` of other clinics' validation splits; the
    kept epoch is then the best mean of their balanced accuracy and HAM10000's.
    ``train_groups``: each training sample's set (``data.training_arrays``' ``train_groups``),
    needed when ``config.class_weight_groups`` is set.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _check_batches(len(train_labels), config.batch_size, worker_count(strategy))
    run_dir.mkdir(parents=True, exist_ok=True)
    output_dir = write_dir(run_dir, strategy)
    keras.utils.set_random_seed(config.seed)
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    state["config"] = config.to_dict()
    _check_workers_agree(strategy, state, run_dir)
    if initial_model is not None and worker_count(strategy) > 1:
        raise ClusterError("Retraining from an existing model runs in one process; received "
                           f"{worker_count(strategy)} workers.")
    with strategy.scope():
        if (run_dir / "last.keras").exists():
            model = keras.models.load_model(run_dir / "last.keras", safe_mode=True)
            log(f"Resuming {run_dir} after {state.get('history', [])[-1:]}.")
        elif initial_model is not None:
            model = initial_model
            log(f"Starting from {model.name} (fine-tuning an existing model).")
        else:
            model = build_classifier(config.architecture, config.image_size, config.imagenet,
                                     config.dropout, colour_constancy=config.colour_constancy)
    prepare_model(model, strategy)
    loss = _loss(config, train_labels)
    if config.logit_adjustment > 0:
        weights = state["class_weights"] = {index: 1.0 for index in range(len(CLASS_NAMES))}
    elif config.class_weight_groups:
        if train_groups is None:
            raise ValueError("class_weight_groups needs train_groups (each sample's set).")
        weights, state["class_weights"] = grouped_sample_weights(
            train_labels, train_groups, config.class_weight_groups, config.class_weight_power)
    else:
        weights = class_weights(train_labels, config.class_weight_power)
        state["class_weights"] = weights
    scratch = not config.imagenet  # build_classifier refuses imagenet=True for small_cnn
    phases = [("scratch", config.head_epochs + config.fine_tune_epochs,
               config.head_learning_rate)] if scratch else [
        ("head", config.head_epochs, config.head_learning_rate),
        ("fine_tune", config.fine_tune_epochs, config.fine_tune_learning_rate)]
    fine_tune_from = (default_fine_tune_from(model, whole_backbone=True)
                      if config.fine_tune_from == "all"
                      else config.fine_tune_from or default_fine_tune_from(model))
    state["fine_tune_from"] = fine_tune_from
    for phase, epochs, learning_rate in phases:
        done = state.get(f"{phase}_epochs_done", 0)
        if done >= epochs:
            continue
        set_phase(model, phase, fine_tune_from)
        steps = int(np.ceil(len(train_labels) / config.batch_size))
        with strategy.scope():
            model.compile(optimizer=_optimizer(config, phase, learning_rate, steps, epochs),
                          loss=loss)
        model.optimizer.iterations.assign(steps * done)
        if done:
            _start_ema_from_weights(model)
        checkpoint = _Checkpoint(output_dir, phase, val_images, val_labels, state, log,
                                 extra_validation)
        # One fit call per phase: Keras folds the EMA into the weights when fit returns.
        dataset = _training_dataset(
            strategy, train_images, train_labels, config,
            [epoch + 1000 * len(phase) for epoch in range(done, epochs)], weights)
        model.fit(dataset, epochs=epochs, initial_epoch=done, steps_per_epoch=steps,
                  callbacks=[checkpoint], verbose=verbose)
    release_write_dir(output_dir, run_dir)
    return run_dir / "best.keras"


def _loss(config: TrainConfig, train_labels: np.ndarray) -> keras.losses.Loss:
    """Cross-entropy, or the logit-adjusted loss on the training labels' class shares (which
    replaces class weights: both at once would correct the imbalance twice)."""
    if config.logit_adjustment <= 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    if config.class_weight_power or config.class_weight_groups:
        raise ValueError(
            f"Logit adjustment (tau {config.logit_adjustment}) replaces class weights; received "
            f"class_weight_power {config.class_weight_power} and class_weight_groups "
            f"{list(config.class_weight_groups)}. Pass --class-weight-power 0 and no "
            "--class-weight-groups.")
    return LogitAdjustedCrossentropy(class_priors(train_labels, len(CLASS_NAMES)),
                                     tau=config.logit_adjustment,
                                     label_smoothing=config.label_smoothing)


def _optimizer(config: TrainConfig, phase: str, learning_rate: float, steps: int,
               epochs: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW with weight decay) on a cosine schedule; phase 2 may warm up and keep an EMA."""
    warmup = int(steps * config.warmup_epochs) if phase != "head" else 0
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps * epochs - warmup, alpha=0.02, warmup_target=learning_rate,
            warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs,
                                                          alpha=0.05)
    ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if (
        config.ema_momentum and phase != "head") else {}
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **ema)
    return keras.optimizers.Adam(schedule, **ema)
