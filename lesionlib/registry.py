"""The shipped models: discover their cards, verify and load their weights.

``weights/<model id>/`` holds ``card.json``, ``manifest.json`` and, for a single model,
``model.keras``. Every file of a folder is checked against its sealed manifest (and signature,
where a deployment requires one: ``lesionlib.integrity``) before the card is used; weights are
checked against the card's sha256 again just before loading, and loaded with Keras safe mode (no
Lambda layers, no pickled Python). A refused model never stops the others from loading.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
from pathlib import Path

import numpy as np

from lesionlib.cards import CardError, ModelCard, read_card, verify_weights
from lesionlib.imaging import frame_square
from lesionlib.integrity import MANIFEST_FILE, manifest_digest, verify_folder
from lesionlib.metrics import apply_temperature
from lesionlib.scores import Scores

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO_ROOT / "weights"
WEIGHTS_ENV = "LESIONLIB_WEIGHTS"


def default_weights_dir() -> Path:
    """``$LESIONLIB_WEIGHTS`` (read at each call), else ``weights/`` in the repo."""
    return Path(os.environ.get(WEIGHTS_ENV) or WEIGHTS_DIR)
DEFAULT_MODEL_ID = "ensemble.ham10000"


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """Valid cards by id, the folders that were refused with the reason, and each valid
    folder's manifest digest (it changes whenever any file of the folder changes)."""

    cards: dict[str, ModelCard]
    problems: dict[str, str]
    seals: dict[str, str] = dataclasses.field(default_factory=dict)

    def default_id(self) -> str | None:
        if DEFAULT_MODEL_ID in self.cards:
            return DEFAULT_MODEL_ID
        return next(iter(sorted(self.cards)), None)


def discover(weights_dir: str | Path | None = None) -> Catalogue:
    """Read and verify every model folder under ``weights_dir``.

    A folder whose files differ from its manifest, whose signature is missing or wrong (where
    required), whose card is invalid or whose quality gate is unreadable goes to ``problems``
    with the reason instead of raising.
    """
    weights_dir = Path(weights_dir or default_weights_dir())
    cards, problems, seals = {}, {}, {}
    if weights_dir.is_dir():
        for folder in sorted(path for path in weights_dir.iterdir() if path.is_dir()):
            try:
                seal_digest = manifest_digest(folder) if (folder / MANIFEST_FILE).is_file() \
                    else ""
                card = read_verified_card(folder)
            except (CardError, OSError) as error:
                problems[folder.name] = str(error)
                continue
            cards[card.id] = card
            seals[card.id] = seal_digest
    for model_id, reason in stale_ensembles(cards).items():
        problems[model_id] = reason
        cards.pop(model_id)
    return Catalogue(cards, problems, seals)


def stale_ensembles(cards: dict[str, ModelCard]) -> dict[str, str]:
    """Ensembles whose live members are not the versions they were built and calibrated with
    (``training.member_versions``; older cards do not record them), with the reason.

    Such an ensemble's temperature, threshold, gate and stored predictions describe other
    members (e.g. after a promotion was killed half-way), so it is refused, not served.
    """
    stale = {}
    for card in cards.values():
        recorded = card.training.get("member_versions") if card.kind == "ensemble" else None
        if not isinstance(recorded, dict):
            continue
        differing = [f"{member} v{version} (live: "
                     f"{'missing' if member not in cards else 'v' + cards[member].version})"
                     for member, version in sorted(recorded.items())
                     if member not in cards or cards[member].version != version]
        if differing:
            stale[card.id] = (
                f"ensemble {card.id} v{card.version} was built and calibrated with "
                f"{', '.join(differing)}; its calibration, threshold and gate do not describe the "
                "live members. Finish or repeat the promotion (run the same retrain command "
                "again), or rebuild the ensemble with `ensemble` and `evaluate`.")
    return stale


def read_verified_card(folder: Path) -> ModelCard:
    """The card of a model folder whose files all match its manifest and whose gate parses.

    Raises:
        CardError: an integrity failure (``IntegrityError``), an invalid card or gate.
    """
    from lesionlib.quality import GATE_FILE, load_model_gate

    verify_folder(folder)
    card = read_card(folder)
    if (folder / GATE_FILE).is_file():
        load_model_gate(folder)
    return card


class SingleModel:
    """One Keras classifier with its card. ``predict_proba`` returns calibrated probabilities.

    Inference runs through a ``compiled.CompiledModel`` (built on first use, shared by threads),
    which returns the pooled gate features with the probabilities; a model whose graph cannot be
    compiled is called eagerly instead.
    """

    def __init__(self, card: ModelCard, keras_model):
        self.card = card
        self.keras_model = keras_model
        self._compiled = None
        self._compile_lock = threading.Lock()

    @property
    def compiled(self):
        """The model's ``CompiledModel``, or ``None`` when its graph does not allow one."""
        from lesionlib.compiled import CompiledModel, NotCompilableError

        with self._compile_lock:
            if self._compiled is None:
                try:
                    self._compiled = CompiledModel(self.keras_model, self.card.cam_layer)
                except NotCompilableError:
                    self._compiled = False
        return self._compiled or None

    def frame(self, images: list[np.ndarray]) -> np.ndarray:
        size = self.card.input_size
        return np.stack([frame_square(image, size) for image in images]).astype("float32")

    def predict_framed(self, framed: np.ndarray, batch_size: int = 32
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """Uncalibrated probabilities (float64) and pooled features (``None`` if not compiled)
        of already framed images."""
        compiled = self.compiled
        if compiled is not None:
            probabilities, features = compiled.predict(framed, batch_size)
            return probabilities.astype("float64"), features
        outputs = [self.keras_model(framed[start:start + batch_size], training=False).numpy()
                   for start in range(0, len(framed), batch_size)]
        return np.concatenate(outputs).astype("float64"), None

    def predict_uncalibrated(self, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        return self.predict_framed(self.frame(images), batch_size)[0]

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        return apply_temperature(self.predict_uncalibrated(images), self.card.temperature)

    def predict_with_members(self, images: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """Calibrated probabilities and, per member, the member's own (here: itself)."""
        probabilities = self.predict_proba(images)
        return probabilities, [probabilities]

    def score(self, images: list[np.ndarray], framed: dict | None = None,
              with_heatmaps: bool = False) -> Scores:
        """Probabilities and gate features in one pass.

        Args:
            images: decoded RGB images.
            framed: input size -> ``images`` framed at that size (filled in here, so an
                ensemble frames once per size).
            with_heatmaps: for one image, run the pass that also keeps every class's heatmap
                inputs (``CompiledModel.analyse``), so its heatmaps need no second pass.
        """
        framed = {} if framed is None else framed
        size = self.card.input_size
        if size not in framed:
            framed[size] = self.frame(images)
        compiled = self.compiled
        if with_heatmaps and len(images) == 1 and compiled is not None:
            probabilities, features = compiled.analyse(framed[size])[:2]
            uncalibrated = probabilities.astype("float64")
        else:
            uncalibrated, features = self.predict_framed(framed[size])
        probabilities = apply_temperature(uncalibrated, self.card.temperature)
        return Scores(probabilities, [probabilities], [features])

    @property
    def members(self) -> list["SingleModel"]:
        return [self]


class EnsembleModel:
    """The mean of its members' calibrated probabilities, recalibrated by its own temperature."""

    def __init__(self, card: ModelCard, members: list[SingleModel]):
        self.card = card
        self.members = members

    def predict_uncalibrated(self, images: list[np.ndarray]) -> np.ndarray:
        return np.mean(self.score(images).member_probabilities, axis=0)

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        return self.predict_with_members(images)[0]

    def predict_with_members(self, images: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """Calibrated ensemble probabilities and each member's calibrated probabilities."""
        scores = self.score(images)
        return scores.probabilities, scores.member_probabilities

    def score(self, images: list[np.ndarray], framed: dict | None = None,
              with_heatmaps: bool = False) -> Scores:
        """Each member's pass (images framed once per input size) and the combined output."""
        framed = {} if framed is None else framed
        member_scores = [member.score(images, framed, with_heatmaps) for member in self.members]
        member_probabilities = [scores.probabilities for scores in member_scores]
        combined = apply_temperature(np.mean(member_probabilities, axis=0), self.card.temperature)
        return Scores(combined, member_probabilities,
                      [scores.member_features[0] for scores in member_scores])


def get_card(model_id: str, catalogue: Catalogue) -> ModelCard:
    """Raises: KeyError for an unknown or refused id, with the reason or close matches."""
    if model_id in catalogue.cards:
        return catalogue.cards[model_id]
    if model_id in catalogue.problems:
        raise KeyError(f"Model {model_id!r} was refused: {catalogue.problems[model_id]}")
    close = difflib.get_close_matches(model_id, list(catalogue.cards), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise KeyError(f"Unknown model {model_id!r}.{hint} Available: "
                   f"{', '.join(sorted(catalogue.cards)) or 'none'}.")


def load_single(card: ModelCard) -> SingleModel:
    """Verify the sha256, then load in safe mode.

    Raises:
        ModelIntegrityError: hash mismatch or missing file.
        CardError: Keras cannot load the file safely.
    """
    import keras

    from lesionlib import colour  # noqa: F401 - registers the colour-constancy layer class

    path = verify_weights(card)
    try:
        keras_model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any loader failure means the file is unusable
        raise CardError(f"Model {card.id!r}: {path.name} could not be loaded safely "
                        f"({type(error).__name__}: {_first_sentence(str(error))}). The "
                        "dashboard only loads models in Keras safe mode; a model that needs "
                        "custom Python code is refused.") from None
    keras_model.trainable = False
    return SingleModel(card, keras_model)


def _first_sentence(text: str, limit: int = 300) -> str:
    """The first sentence of an error message (no final full stop), cut at ``limit`` chars."""
    text = " ".join(text.split())
    end = text.find(". ")
    sentence = (text if end < 0 else text[:end]).rstrip(".")
    return sentence if len(sentence) <= limit else sentence[:limit].rstrip() + "..."


def load_classifier(model_id: str, weights_dir: str | Path | None = None,
                    catalogue: Catalogue | None = None, load_member=None):
    """Load a model (single or ensemble) by id.

    ``load_member(card)`` loads an ensemble's member (default ``load_single``): a caller that
    keeps loaded models (the dashboard's cache) passes its own, so a model used alone and inside
    an ensemble is loaded, compiled and held in memory once.

    Raises:
        KeyError: unknown id.
        CardError / ModelIntegrityError: the model or one of an ensemble's members is refused.
    """
    catalogue = catalogue or discover(weights_dir)
    card = get_card(model_id, catalogue)
    if card.kind == "single":
        return load_single(card)
    if card.kind == "edge":  # a TensorFlow Lite export (lesionlib.edge)
        from lesionlib.edge_model import load_edge

        return load_edge(card)
    members = []
    for member_id in card.members:
        try:
            members.append((load_member or load_single)(get_card(member_id, catalogue)))
        except (KeyError, CardError) as error:
            raise CardError(f"Ensemble {model_id!r} cannot load member {member_id!r}: "
                            f"{error}") from None
    return EnsembleModel(card, members)
