"""The quality and out-of-distribution gate: warn when an image or a prediction is not to be
trusted.

Image checks (on the decoded RGB image): blank, blurred, too dark or too bright, pixel noise, no
colour at all (gate failures) or barely any (a caution). Distribution check: how far the image's pooled CNN
features (the model's ``avg_pool`` layer) lie from the subspace spanned by the top principal
components of its HAM10000 training features (the norm of the residual after projection):
photographs that are not dermoscopy land far away. Prediction checks ("review carefully"):
normalised entropy of the calibrated probabilities and, for an ensemble, member disagreement,
with thresholds chosen on validation predictions (``lesionlib.selective``).

Every model has its own gate, fitted on its own features (``fit_gate``) and stored with it as
``quality_gate.npz`` (plain arrays, loaded with ``allow_pickle=False``). An ensemble's gate
combines its members' gates: its distance is the mean over members of each member's distance
divided by that member's threshold, and its threshold on that mean is set on validation images
like any other (``fit_ensemble_gate``); it needs every member's gate. A model without a gate
is never checked silently: each report then carries a ``no_gate`` finding. The detection and
false-alarm rates are measured by ``scripts/benchmarks/benchmark_quality_gate.py``.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

from lesionlib.selective import (UncertaintyThresholds, member_disagreement,
                                 normalised_entropy)

from lesionlib.cards import CardError

GATE_FILE = "quality_gate.npz"
FEATURE_LAYER = "avg_pool"  # the layer whose features ``registry.Scores`` carries
ENTROPY_THRESHOLD = UncertaintyThresholds().entropy  # unfitted default, used only without a gate
STAT_NAMES = ("gray_std", "sharpness", "brightness", "colourfulness")
NO_COLOUR_LIMIT = 2.0  # colourfulness of an image whose channels are equal up to JPEG noise
# Pixel noise sits far above the sharpest validation image (uniform noise: about 10x). Other
# clinics' higher-resolution images are sharper once resized (PH2 up to 2.5x HAM10000's
# sharpest), so the noise check keeps this margin above the validation maximum.
NOISE_MARGIN = 3.0


# A gate failure withholds the diagnosis and the melanoma flag until a reviewer asks for them;
# every other finding asks for careful review and withholds nothing.
WITHHOLD_CODES = frozenset({"blank", "blurred", "dark", "bright", "not_dermoscopic",
                            "no_colour"})


@dataclasses.dataclass(frozen=True)
class Finding:
    code: str  # blank | blurred | dark | bright | not_dermoscopic | no_colour | grayscale |
    # uncertain | disagreement | no_gate
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


def colourfulness(image: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness (0 for a grey image, about 10-100 for dermoscopy)."""
    rgb = np.asarray(image, "float64")
    red_green = rgb[..., 0] - rgb[..., 1]
    yellow_blue = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(red_green.std(), yellow_blue.std())
                 + 0.3 * np.hypot(red_green.mean(), yellow_blue.mean()))


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """Grey-level spread, sharpness (variance of the Laplacian at 224 px), brightness, colour."""
    small = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return {"gray_std": float(gray.std()),
            "sharpness": float(cv2.Laplacian(gray, cv2.CV_64F).var()),
            "brightness": float(gray.mean()),
            "colourfulness": colourfulness(small)}


@dataclasses.dataclass(frozen=True)
class QualityGate:
    """Fitted thresholds and the feature model of the distribution check.

    For an ensemble, ``members`` names the member models, ``feature_layer`` is empty and
    ``distance_threshold`` applies to the mean of the members' normalised distances.
    """

    feature_layer: str
    feature_mean: np.ndarray
    components: np.ndarray  # (features, k) orthonormal principal axes
    distance_threshold: float
    min_gray_std: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    min_colourfulness: float = NO_COLOUR_LIMIT
    max_sharpness: float = float("inf")
    entropy_threshold: float = UncertaintyThresholds().entropy
    disagreement_threshold: float = UncertaintyThresholds().disagreement
    flag_rate_val: float = float("nan")
    error_ratio_val: float = float("nan")
    members: tuple[str, ...] = ()

    @property
    def uncertainty(self) -> UncertaintyThresholds:
        return UncertaintyThresholds(self.entropy_threshold, self.disagreement_threshold,
                                     self.flag_rate_val, self.error_ratio_val,
                                     bool(np.isfinite(self.flag_rate_val)))

    def with_uncertainty(self, thresholds: UncertaintyThresholds) -> "QualityGate":
        return dataclasses.replace(self, entropy_threshold=thresholds.entropy,
                                   disagreement_threshold=thresholds.disagreement,
                                   flag_rate_val=thresholds.flag_rate,
                                   error_ratio_val=thresholds.error_ratio)

    def image_findings(self, image: np.ndarray) -> list[Finding]:
        stats = image_statistics(image)
        findings = []
        if stats["gray_std"] < self.min_gray_std:
            findings.append(Finding("blank", "The image is almost uniform (blank?)."))
        elif stats["sharpness"] < self.min_sharpness:
            findings.append(Finding("blurred", "The image is heavily blurred or out of focus."))
        elif stats["sharpness"] > self.max_sharpness:
            findings.append(Finding("not_dermoscopic", "The image is dominated by fine texture "
                                    "or pixel noise, far sharper than dermoscopic images."))
        if stats["brightness"] < self.min_brightness:
            findings.append(Finding("dark", "The image is much darker than dermoscopic images."))
        elif stats["brightness"] > self.max_brightness:
            findings.append(Finding("bright", "The image is over-exposed."))
        if stats["colourfulness"] < NO_COLOUR_LIMIT:
            findings.append(Finding("no_colour", "The image has no colour (grayscale): the "
                                    "models read colour, which is not there."))
        elif stats["colourfulness"] < self.min_colourfulness:
            findings.append(Finding("grayscale", f"The image is nearly colourless "
                                    f"(colourfulness {stats['colourfulness']:.1f}, below "
                                    f"{self.min_colourfulness:.1f} of 99.7% of validation "
                                    "images): colour cues may be lost."))
        return findings

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Norm of the part of each centred feature vector outside the principal subspace."""
        centred = np.asarray(features, "float64") - self.feature_mean
        residual = centred - (centred @ self.components) @ self.components.T
        return np.linalg.norm(residual, axis=1)

    def prediction_findings(self, probabilities, member_probabilities=None) -> list[Finding]:
        return prediction_findings(probabilities, member_probabilities, self.uncertainty)

    def save(self, path: Path) -> Path:
        arrays = {field.name: np.asarray(getattr(self, field.name))
                  for field in dataclasses.fields(self)}
        arrays["members"] = np.asarray(self.members, dtype="U200")
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path, name: str | None = None) -> "QualityGate":
        """Read a gate from a path or a binary file object.

        Raises:
            GateFileError: the file is not a gate written by ``save`` (e.g. truncated).
        """
        name = name or str(path)
        fields = {field.name: field for field in dataclasses.fields(cls)}
        required = {key for key, field in fields.items()
                    if field.default is dataclasses.MISSING}
        try:
            with np.load(path, allow_pickle=False) as archive:
                values = {key: archive[key] for key in archive.files}
            if not required <= set(values) <= set(fields):
                raise ValueError(f"arrays {sorted(values)}")
            values["feature_layer"] = str(values["feature_layer"])
            values["members"] = tuple(str(member) for member in values.get("members", ()))
            for key, field in fields.items():
                if field.type == "float" and key in values:
                    values[key] = float(values[key])
        except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
            raise GateFileError(f"{name} is not a readable quality gate ({type(error).__name__}: "
                                f"{error}); expected the .npz arrays {sorted(fields)} written "
                                "by `python -m lesionlib fit-gate`.") from None
        return cls(**values)


class GateFileError(CardError):
    """A quality-gate file cannot be read (truncated, corrupt or not a gate)."""


def load_model_gate(folder: Path) -> QualityGate:
    """The gate of a model folder, read through the folder's manifest check.

    Raises:
        IntegrityError: the gate differs from the folder's manifest.
        GateFileError: the sealed file is not a readable gate.
    """
    from lesionlib.integrity import read_verified

    folder = Path(folder)
    content = read_verified(folder, GATE_FILE)
    return QualityGate.load(io.BytesIO(content), f"Model folder {folder.name!r}: {GATE_FILE}")


def load_gate(card) -> QualityGate | None:
    """The gate stored with a model (``weights/<id>/quality_gate.npz``, checked against the
    folder's manifest), or ``None`` when it has none."""
    if card.folder is None or not (Path(card.folder) / GATE_FILE).is_file():
        return None
    return load_model_gate(card.folder)


def feature_extractor(keras_model, layer_name: str = "avg_pool"):
    """A second model sharing the (unmodified) layers, returning pooled features."""
    import keras

    return keras.Model(keras_model.inputs[0], keras_model.get_layer(layer_name).output)


def extract_features(extractor, framed: np.ndarray, batch_size: int = 16) -> np.ndarray:
    return np.concatenate([extractor(np.asarray(framed[start:start + batch_size], "float32"),
                                     training=False).numpy()
                           for start in range(0, len(framed), batch_size)])


def image_thresholds(val_images, false_alarm_rate: float = 0.01) -> dict[str, float]:
    """Image-check thresholds that let through all but ``false_alarm_rate`` of ``val_images``
    (split between the checks; brightness between its two ends); the noise check lets through
    every validation image, with a margin (``NOISE_MARGIN``)."""
    stats = np.array([[image_statistics(image)[name] for name in STAT_NAMES]
                      for image in val_images])
    percent = 100 * false_alarm_rate
    return {"min_gray_std": float(np.percentile(stats[:, 0], percent / 3)),
            "min_sharpness": float(np.percentile(stats[:, 1], percent / 3)),
            "max_sharpness": NOISE_MARGIN * float(stats[:, 1].max()),
            "min_brightness": float(np.percentile(stats[:, 2], percent / 6)),
            "max_brightness": float(np.percentile(stats[:, 2], 100 - percent / 6)),
            "min_colourfulness": max(NO_COLOUR_LIMIT,
                                     float(np.percentile(stats[:, 3], percent / 3)))}


def fit_gate(train_features: np.ndarray, val_features: np.ndarray, val_images,
             components: int = 64, false_alarm_rate: float = 0.01) -> QualityGate:
    """Fit the feature model on training features; set thresholds on validation data.

    The distance threshold lets through all but ``false_alarm_rate`` of the validation images,
    and so do the image checks together (``image_thresholds``).
    """
    mean = train_features.mean(axis=0)
    _, _, axes = np.linalg.svd(train_features - mean, full_matrices=False)
    gate = QualityGate("avg_pool", mean, axes[:components].T, 0.0,
                       **image_thresholds(val_images, false_alarm_rate))
    percent = 100 * false_alarm_rate
    return dataclasses.replace(gate, distance_threshold=float(
        np.percentile(gate.distances(val_features), 100 - percent)))


def combined_distances(member_gates: list[QualityGate], member_features) -> np.ndarray:
    """Mean over members of each member's distance over its own threshold (1 = at threshold)."""
    return np.mean([gate.distances(features) / gate.distance_threshold
                    for gate, features in zip(member_gates, member_features)], axis=0)


def fit_ensemble_gate(member_ids, member_gates: list[QualityGate], member_val_features,
                      val_images, false_alarm_rate: float = 0.01) -> QualityGate:
    """An ensemble's gate: a threshold on its members' combined distance, set on validation."""
    combined = combined_distances(member_gates, member_val_features)
    return QualityGate("", np.zeros(0), np.zeros((0, 0)),
                       float(np.percentile(combined, 100 - 100 * false_alarm_rate)),
                       **image_thresholds(val_images, false_alarm_rate),
                       members=tuple(member_ids))


def _uncertainty_note(thresholds: UncertaintyThresholds) -> str:
    if not np.isfinite(thresholds.flag_rate) or not np.isfinite(thresholds.error_ratio):
        return " (unfitted default threshold)"
    return (f" On validation, the {thresholds.flag_rate:.0%} of cases flagged this way were "
            f"wrong {thresholds.error_ratio:.1f}x as often as the others.")


def prediction_findings(probabilities: np.ndarray,
                        member_probabilities: list[np.ndarray] | None = None,
                        thresholds: UncertaintyThresholds | None = None) -> list[Finding]:
    """"Review carefully" findings for one image's calibrated probabilities (and its members')."""
    thresholds = thresholds or UncertaintyThresholds()
    findings = []
    entropy = float(normalised_entropy(probabilities))
    if entropy > thresholds.entropy:
        findings.append(Finding("uncertain", f"The model is unsure (normalised entropy "
                                f"{entropy:.2f} > {thresholds.entropy:.2f})."
                                + _uncertainty_note(thresholds)))
    if member_probabilities is not None and len(member_probabilities) > 1:
        disagreement = float(member_disagreement(member_probabilities)[0])
        if disagreement > thresholds.disagreement:
            findings.append(Finding("disagreement", f"The ensemble's models disagree "
                                    f"(disagreement {disagreement:.2f} > "
                                    f"{thresholds.disagreement:.2f})."
                                    + _uncertainty_note(thresholds)))
    return findings


NO_GATE = Finding("no_gate", "This model has no quality gate (quality_gate.npz): the image was "
                  "NOT checked for blank, blurred, badly exposed, colourless or non-dermoscopic "
                  "input. Run `python -m lesionlib fit-gate --model {model}`.")


# The gate is unsure, not sure: a real melanoma from another clinic can lie this far out too
# (PH2 IMD058). Say what was measured and what it may mean, never that the image is not
# dermoscopic.
UNFAMILIAR_MESSAGE = ("The model's features of this image lie far from those of the images it "
                      "was trained on: it may be an unusual lesion, another device, framing or "
                      "clinic, or not a dermoscopic image at all. The model cannot vouch for "
                      "its output on it.")


class QualityChecker:
    """Runs a classifier's own gate (an ensemble's combines its members' gates).

    ``gate`` is ``None`` when the model, or one of an ensemble's members, has no gate file;
    ``missing`` then names what is missing and every report carries a ``no_gate`` finding.
    """

    def __init__(self, classifier):
        self.classifier = classifier
        self.gate = load_gate(classifier.card)
        self.member_gates, self.missing = self._member_gates()
        if self.missing:
            self.gate, self.member_gates = None, []
        self._extractors: list | None = None

    @property
    def extractors(self) -> list:
        """Per member, a Keras feature model (built at first use, only when features were not
        passed in); ``None`` for an edge (TFLite) model, which computes its features itself."""
        if self._extractors is None:
            self._extractors = [None if hasattr(member, "pooled_features")
                                else feature_extractor(member.keras_model, gate.feature_layer)
                                for member, gate in zip(self.classifier.members,
                                                        self.member_gates)]
        return self._extractors

    def _member_gates(self) -> tuple[list[QualityGate], list[str]]:
        """The gates that give each member's distance, and the ids whose gate is missing."""
        card = self.classifier.card
        if self.gate is None:
            return [], [card.id]
        if card.kind != "ensemble":
            return [self.gate], []
        if tuple(self.gate.members) != tuple(card.members):
            return [], [card.id]  # a gate fitted for other members is no gate for this one
        gates = [load_gate(member.card) for member in self.classifier.members]
        return gates, [member.card.id for member, gate in zip(self.classifier.members, gates)
                       if gate is None]

    def distances(self, images: list[np.ndarray],
                  member_features: list[np.ndarray | None] | None = None) -> np.ndarray:
        """Each image's distance (an ensemble's: combined) to compare with the threshold.

        ``member_features``: each member's pooled features of ``images`` when already computed
        (``registry.Scores``; used for a gate that reads ``avg_pool``), else ``None``.
        """
        given = member_features or [None] * len(self.classifier.members)
        features = [known if known is not None and gate.feature_layer == FEATURE_LAYER
                    else self._member_features(index, images)
                    for index, (known, gate) in enumerate(zip(given, self.member_gates))]
        if self.gate.members:
            return combined_distances(self.member_gates, features)
        return self.gate.distances(features[0])

    def _member_features(self, index: int, images: list[np.ndarray]) -> np.ndarray:
        member, extractor = self.classifier.members[index], self.extractors[index]
        if extractor is None:
            return member.pooled_features(images)
        return extract_features(extractor, member.frame(images))

    def assess(self, images: list[np.ndarray], probabilities: np.ndarray | None = None,
               member_probabilities: list[np.ndarray] | None = None,
               member_features: list[np.ndarray | None] | None = None) -> list[QualityReport]:
        """One report per image.

        Args:
            images: decoded RGB images.
            probabilities: the classifier's calibrated outputs (computed when ``None``).
            member_probabilities: each ensemble member's calibrated outputs (computed when
                ``None`` for an ensemble).
            member_features: each member's pooled features of ``images`` from the same pass
                (``registry.Scores.member_features``); computed again where ``None``.
        """
        if probabilities is None or (member_probabilities is None
                                     and len(self.classifier.members) > 1):
            scores = self.classifier.score(images)
            probabilities, member_probabilities = scores.probabilities, scores.member_probabilities
            member_features = scores.member_features
        members = member_probabilities if len(self.classifier.members) > 1 else None
        if self.gate is None:
            no_gate = Finding(NO_GATE.code, NO_GATE.message.format(model=self.missing[0]))
            return [QualityReport((no_gate, *prediction_findings(
                probabilities[index], [member[index:index + 1] for member in members]
                if members else None))) for index in range(len(images))]
        distances = self.distances(images, member_features)
        reports = []
        for index, image in enumerate(images):
            findings = self.gate.image_findings(image)
            if distances[index] > self.gate.distance_threshold:
                findings.append(Finding("not_dermoscopic", UNFAMILIAR_MESSAGE))
            findings += self.gate.prediction_findings(
                probabilities[index],
                [member[index:index + 1] for member in members] if members else None)
            reports.append(QualityReport(tuple(findings), float(distances[index])))
        return reports

    def warnings_for_batch(self, images, probabilities, member_probabilities=None) -> list[str]:
        """Warning texts for ``inference.predict_files(..., quality_check=...)``."""
        return [report.text for report in
                self.assess(images, probabilities, member_probabilities)]
