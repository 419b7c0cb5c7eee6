"""Training losses for imbalanced classes that do not distort the model's probabilities.

Class weights (``training.class_weights``) raise the rare classes' recall but make the softmax a
reweighted one. Logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR
2021) instead trains ``softmax(logits + tau * log(prior))`` with plain cross-entropy, so the
model's own ``softmax(logits)`` is the *balanced* posterior (each class equally likely a priori)
and its argmax targets balanced accuracy; with ``tau = 1`` this is also Ren et al.'s balanced
softmax. The shipped classifiers end in a softmax, so the adjustment is applied to their
probabilities: ``log p + tau * log prior`` re-normalised, which equals the adjusted logits' softmax.
"""

from __future__ import annotations

import numpy as np

import keras
from keras import ops


def class_priors(labels: np.ndarray, class_count: int) -> list[float]:
    """Each class's share of ``labels`` (integer class indices); every class must occur.

    >>> class_priors(np.array([0, 0, 1, 2]), 3)
    [0.5, 0.25, 0.25]
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=class_count)[:class_count]
    if (counts == 0).any():
        missing = [int(index) for index in np.flatnonzero(counts == 0)]
        raise ValueError(f"Logit adjustment needs every class in the training labels; classes "
                         f"{missing} have no example among {len(labels)} labels.")
    return [float(count) for count in counts / counts.sum()]


@keras.saving.register_keras_serializable(package="lesionlib")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Cross-entropy of ``softmax(logits + tau * log(priors))`` for a model that outputs
    probabilities (``y_pred``) and one-hot (optionally smoothed) targets ``y_true``."""

    def __init__(self, priors, tau: float = 1.0, label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        priors = [float(value) for value in priors]
        if not priors or min(priors) <= 0:
            raise ValueError(f"priors must be positive class shares; received {priors}.")
        if tau < 0:
            raise ValueError(f"tau must be >= 0; received {tau}.")
        self.priors, self.tau, self.label_smoothing = priors, float(tau), float(label_smoothing)

    def call(self, y_true, y_pred):
        log_probabilities = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        adjusted = log_probabilities + self.tau * ops.log(ops.convert_to_tensor(self.priors))
        log_softmax = adjusted - ops.logsumexp(adjusted, axis=-1, keepdims=True)
        classes = len(self.priors)
        targets = ops.cast(y_true, log_softmax.dtype)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / classes
        return -ops.sum(targets * log_softmax, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "priors": self.priors, "tau": self.tau,
                "label_smoothing": self.label_smoothing}
