"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) for training batches.

Each batch is blended with a shuffled copy of itself: ``lam * x + (1 - lam) * x[perm]``, and the
targets and sample weights likewise, with one ``lam ~ Beta(alpha, alpha)`` per batch. Stateless
(seeded per batch), so a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

import tensorflow as tf


def mixup(images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, seed: tf.Tensor,
          alpha: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Blend a batch with a permutation of itself; ``alpha <= 0`` returns it unchanged.

    ``images``: float (batch, h, w, 3); ``targets``: float (batch, classes), e.g. one-hot;
    ``weights``: float (batch,); ``seed``: an int64 pair, as the augmentations take.
    """
    if alpha <= 0:
        return images, targets, weights
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 104729), num=3)
    first = tf.random.stateless_gamma([], seeds[0], alpha)
    second = tf.random.stateless_gamma([], seeds[1], alpha)
    lam = first / tf.maximum(first + second, 1e-12)
    batch = tf.shape(images)[0]
    order = tf.argsort(tf.random.stateless_uniform([batch], seeds[2]))
    images = tf.cast(images, tf.float32)

    def blend(tensor):
        return lam * tensor + (1.0 - lam) * tf.gather(tensor, order)
    return blend(images), blend(tf.cast(targets, tf.float32)), blend(tf.cast(weights, tf.float32))
