"""The quality and out-of-distribution gate: warn when an image or a prediction is not to be trusted.

Image checks (on the decoded RGB image): blank, blurred, too dark or too bright. Distribution
check: how far the image's pooled CNN features (one single model's ``avg_pool`` layer) lie from
the subspace spanned by the top principal components of HAM10000 training features (the norm of
the residual after projection): photographs that are not dermoscopy land far away. On the shipped
model this caught more photographs at a lower false-alarm rate than a Mahalanobis distance within
the subspace (compared in the issue notes; figures in reports/quality_gate.md).
Prediction checks: high normalised entropy of the calibrated probabilities, and ensemble members
that disagree on the top class.

Every threshold is fitted on HAM10000 training/validation data (``fit_gate``) and stored with the
model as ``quality_gate.npz`` (plain arrays, loaded with ``allow_pickle=False``). The detection
and false-alarm rates are measured by ``scripts/benchmark_quality_gate.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

GATE_FILE = "quality_gate.npz"
ENTROPY_THRESHOLD = 0.6  # normalised entropy (0 = certain, 1 = uniform over the 7 classes)
STAT_NAMES = ("gray_std", "sharpness", "brightness")


# A gate failure withholds the diagnosis and the melanoma flag until a reviewer asks for them;
# every other finding asks for careful review and withholds nothing.
WITHHOLD_CODES = frozenset({"blank", "blurred", "dark", "bright", "not_dermoscopic",
                            "no_colour"})


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str  # blank | blurred | dark | bright | not_dermoscopic | no_colour | grayscale |
    # uncertain | disagreement
    message: str

    @property
    def withholds(self) -> bool:
        return self.code in WITHHOLD_CODES


@dataclasses.dataclass(frozen=True)
class QualityReport:
    findings: tuple[Finding, ...]
    distance: float | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def withheld(self) -> bool:
        """The image failed the gate: show the reason, not the diagnosis."""
        return any(finding.withholds for finding in self.findings)

    @property
    def gate_failures(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.withholds)

    @property
    def cautions(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if not finding.withholds)

    @property
    def text(self) -> str:
        return "; ".join(finding.message for finding in self.findings)


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """Grey-level spread, sharpness (variance of the Laplacian at 224 px) and brightness."""
    gray = cv2.cvtColor(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY)
    return {"gray_std": float(gray.std()),
            "sharpness": float(cv2.Laplacian(gray, cv2.CV_64F).var()),
            "brightness": float(gray.mean())}


@dataclasses.dataclass(frozen=True)
class QualityGate:
    """Fitted thresholds and the feature model of the distribution check."""

    feature_layer: str
    feature_mean: np.ndarray
    components: np.ndarray  # (features, k) orthonormal principal axes
    distance_threshold: float
    min_gray_std: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float

    def image_findings(self, image: np.ndarray) -> list[Finding]:
        stats = image_statistics(image)
        findings = []
        if stats["gray_std"] < self.min_gray_std:
            findings.append(Finding("blank", "The image is almost uniform (blank?)."))
        elif stats["sharpness"] < self.min_sharpness:
            findings.append(Finding("blurred", "The image is heavily blurred or out of focus."))
        if stats["brightness"] < self.min_brightness:
            findings.append(Finding("dark", "The image is much darker than dermoscopic images."))
        elif stats["brightness"] > self.max_brightness:
            findings.append(Finding("bright", "The image is over-exposed."))
        return findings

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Norm of the part of each centred feature vector outside the principal subspace."""
        centred = np.asarray(features, "float64") - self.feature_mean
        residual = centred - (centred @ self.components) @ self.components.T
        return np.linalg.norm(residual, axis=1)

    def save(self, path: Path) -> Path:
        arrays = {field.name: np.asarray(getattr(self, field.name))
                  for field in dataclasses.fields(self)}
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> "QualityGate":
        with np.load(path, allow_pickle=False) as archive:
            values = {name: archive[name] for name in archive.files}
        values["feature_layer"] = str(values["feature_layer"])
        for name in ("distance_threshold", "min_gray_std", "min_sharpness", "min_brightness",
                     "max_brightness"):
            values[name] = float(values[name])
        return cls(**values)


def feature_extractor(keras_model, layer_name: str = "avg_pool"):
    """A second model sharing the (unmodified) layers, returning pooled features."""
    import keras

    return keras.Model(keras_model.inputs[0], keras_model.get_layer(layer_name).output)


def extract_features(extractor, framed: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([extractor(np.asarray(framed[start:start + batch_size], "float32"),
                                     training=False).numpy()
                           for start in range(0, len(framed), batch_size)])


def fit_gate(train_features: np.ndarray, val_features: np.ndarray, val_images,
             components: int = 64, false_alarm_rate: float = 0.01) -> QualityGate:
    """Fit the feature model on training features; set thresholds on validation data.

    Each threshold lets through all but ``false_alarm_rate`` of the validation images (split
    between the two ends for brightness).
    """
    mean = train_features.mean(axis=0)
    centred = train_features - mean
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    gate = QualityGate("avg_pool", mean, axes[:components].T, 0.0, 0.0, 0.0, 0.0, 255.0)
    stats = np.array([[image_statistics(image)[name] for name in STAT_NAMES]
                      for image in val_images])
    percent = 100 * false_alarm_rate
    return dataclasses.replace(
        gate,
        distance_threshold=float(np.percentile(gate.distances(val_features), 100 - percent)),
        min_gray_std=float(np.percentile(stats[:, 0], percent / 3)),
        min_sharpness=float(np.percentile(stats[:, 1], percent / 3)),
        min_brightness=float(np.percentile(stats[:, 2], percent / 6)),
        max_brightness=float(np.percentile(stats[:, 2], 100 - percent / 6)))


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.clip(np.asarray(probabilities, "float64"), 1e-12, 1.0)
    return -(probabilities * np.log(probabilities)).sum(axis=-1) / np.log(probabilities.shape[-1])


def prediction_findings(probabilities: np.ndarray,
                        member_probabilities: list[np.ndarray] | None = None) -> list[Finding]:
    """Uncertainty findings for one image's calibrated probabilities (and its members')."""
    findings = []
    entropy = float(normalised_entropy(probabilities))
    if entropy > ENTROPY_THRESHOLD:
        findings.append(Finding("uncertain", f"The model is unsure (normalised entropy "
                                             f"{entropy:.2f} > {ENTROPY_THRESHOLD})."))
    if member_probabilities and len(member_probabilities) > 1:
        tops = {int(np.argmax(member)) for member in member_probabilities}
        if len(tops) > 1:
            findings.append(Finding("disagreement", "The ensemble's models disagree on the top "
                                                    "diagnosis."))
    return findings


class QualityChecker:
    """Runs the whole gate for a classifier (single or ensemble) whose member has a gate file."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.gate_member = next((member for member in classifier.members
                                 if (member.card.folder / GATE_FILE).is_file()), None)
        self.gate = QualityGate.load(self.gate_member.card.folder / GATE_FILE) \
            if self.gate_member else None
        # An edge (TFLite) model computes its pooled features itself: no Keras extractor.
        self.extractor = feature_extractor(self.gate_member.keras_model, self.gate.feature_layer) \
            if self.gate and not hasattr(self.gate_member, "pooled_features") else None

    def assess(self, images: list[np.ndarray], probabilities: np.ndarray | None = None,
               member_probabilities: list[np.ndarray] | None = None) -> list[QualityReport]:
        """One report per image.

        Args:
            images: decoded RGB images.
            probabilities: the classifier's calibrated outputs (computed when ``None``).
            member_probabilities: each ensemble member's calibrated outputs (computed when
                ``None`` for an ensemble).
        """
        if probabilities is None or (member_probabilities is None
                                     and len(self.classifier.members) > 1):
            probabilities, member_probabilities = self.classifier.predict_with_members(images)
        members = member_probabilities if len(self.classifier.members) > 1 else None
        distances = [None] * len(images)
        if self.gate:
            distances = self.gate.distances(self._features(images))
        reports = []
        for index, image in enumerate(images):
            findings = self.gate.image_findings(image) if self.gate else []
            if self.gate and distances[index] > self.gate.distance_threshold:
                findings.append(Finding("not_dermoscopic", "The image looks unlike the "
                                        "dermoscopic images the model was trained on."))
            findings += prediction_findings(
                probabilities[index], [member[index] for member in members] if members else None)
            reports.append(QualityReport(tuple(findings), None if distances[index] is None
                                         else float(distances[index])))
        return reports

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        if self.extractor is None:
            return self.gate_member.pooled_features(images)
        return extract_features(self.extractor, self.gate_member.frame(images))

    def warnings_for_batch(self, images, probabilities, member_probabilities=None) -> list[str]:
        """Warning texts for ``inference.predict_files(..., quality_check=...)``."""
        return [report.text for report in
                self.assess(images, probabilities, member_probabilities)]
