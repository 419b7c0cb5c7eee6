"""The teaching quiz's reveals, computed once per model version (``quiz_reveals.npz``).

A class committing answers at once asked the server for a prediction, a Grad-CAM and a
similar-case search per student within seconds, about 1 s of CPU each: with 20 students on 2
cores a commit waited 10-30 s. The quiz draws its cases from one fixed set (the HAM10000 test
split; the bundled samples are some of its images), so what each reveal shows is computed ahead
by ``python -m lesionlib quiz-reveals --model ID`` and kept in the model's folder: the
calibrated output (and each ensemble member's), the quality gate's findings, the Grad-CAM of the
model's answer (stored at 56 x 56, scaled back up when read) and the nearest training and sample
images. A reveal is looked up by the sha256 of the image file's bytes, so a changed file is
never given another image's answer.

The store names the exact files it was computed from (``source_digest``: every card, gate and
similar-case index involved): re-evaluating, re-gating or retraining makes it stale, and the
quiz then computes live, as before, until it is rebuilt (``scripts/pipelines/rebuild_derived.sh``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lesionlib import model_artefacts

FILE = "quiz_reveals.npz"
HEATMAP_METHOD = "Grad-CAM"
HEATMAP_STORED_SIZE = 56  # Grad-CAM of a 7 x 7 feature map, upsampled: nothing finer is lost
REFERENCES = ("training", "samples")
FIELDS = ("image_sha256", "image_ids", "probabilities", "member_probabilities", "findings",
          "distances", "heatmaps", "heatmap_classes")


class RevealsMissingError(model_artefacts.ArtefactMissingError):
    """The model has no quiz reveal store yet."""


class StaleRevealsError(model_artefacts.StaleArtefactError):
    """The store was computed from other files than the installed model's."""


def load_errors() -> tuple[type[Exception], ...]:
    """Why ``load`` may refuse a store (missing, stale, not a store, not the sealed file, an
    unknown member): each means "compute live"."""
    from lesionlib.cards import CardError

    return (FileNotFoundError, ValueError, KeyError, CardError, OSError)


KIND = model_artefacts.ArtefactKind(FILE, "quiz reveal store",
                                    "python -m lesionlib quiz-reveals --model {model_id}",
                                    RevealsMissingError, StaleRevealsError)


@dataclasses.dataclass(frozen=True)
class Reveal:
    """What the quiz shows after a commit, for one image and one model."""

    probabilities: np.ndarray  # (classes,) calibrated, in the card's class order
    member_probabilities: np.ndarray  # (members, classes); empty for a single model
    findings: tuple[tuple[str, str], ...]  # the gate's (code, message) pairs
    distance: float | None
    heatmap: np.ndarray  # (size, size) float32 in [0, 1]: Grad-CAM of the top class
    heatmap_class: int
    neighbours: dict  # reference ("training" / "samples") -> frame as ``Retriever.similar``


@dataclasses.dataclass(frozen=True)
class QuizReveals:
    """Stored reveals of one model, one row per distinct image."""

    model_id: str
    model_version: str
    weights_sha256: str  # the model card's (an ensemble's: its own field)
    source_digest: str  # see ``source_digest``
    heatmap_size: int  # the size the maps were computed at (restored when read)
    k: int
    image_sha256: np.ndarray  # (n,) str
    image_ids: np.ndarray  # (n,) str
    probabilities: np.ndarray  # (n, classes) float32
    member_probabilities: np.ndarray  # (n, members, classes) float32
    findings: np.ndarray  # (n,) str: JSON list of [code, message]
    distances: np.ndarray  # (n,) float32, NaN where the gate gave none
    heatmaps: np.ndarray  # (n, 56, 56) uint8
    heatmap_classes: np.ndarray  # (n,) int8: the output each map explains (the answer)
    neighbour_positions: dict  # reference -> (n, k) int32 rows of the index's reference set
    neighbour_distances: dict  # reference -> (n, k) float32

    def __len__(self) -> int:
        return len(self.image_sha256)

    @property
    def rows(self) -> dict[str, int]:
        return {str(digest): row for row, digest in enumerate(self.image_sha256)}

    def save(self, path: str | Path) -> Path:
        arrays = {"model_id": self.model_id, "model_version": self.model_version,
                  "weights_sha256": self.weights_sha256, "source_digest": self.source_digest,
                  "heatmap_size": np.int32(self.heatmap_size), "k": np.int32(self.k),
                  **{name: getattr(self, name) for name in FIELDS}}
        for reference in self.neighbour_positions:
            arrays[f"neighbours_{reference}"] = self.neighbour_positions[reference]
            arrays[f"neighbour_distances_{reference}"] = self.neighbour_distances[reference]
        return model_artefacts.save_arrays(path, arrays)

    @classmethod
    def load(cls, source) -> "QuizReveals":
        """Read a store from a path or bytes. Raises: ValueError: not a quiz reveal store."""
        values = model_artefacts.read_arrays(
            source, KIND.title, (*model_artefacts.IDENTITY_FIELDS, "source_digest",
                                 "heatmap_size", "k", *FIELDS))
        positions = {reference: values[f"neighbours_{reference}"] for reference in REFERENCES
                     if f"neighbours_{reference}" in values}
        distances = {reference: values[f"neighbour_distances_{reference}"]
                     for reference in positions}
        return cls(str(values["model_id"]), str(values["model_version"]),
                   str(values["weights_sha256"]), str(values["source_digest"]),
                   int(values["heatmap_size"]), int(values["k"]),
                   *(values[name] for name in FIELDS), positions, distances)

    def reveal(self, sha256: str, index=None, rows: dict[str, int] | None = None
               ) -> Reveal | None:
        """The stored reveal of the image with this file sha256, or ``None``.

        ``index`` is the model's similar-case index (``retrieval.load_index``), whose reference
        sets the stored neighbour rows point into; without it the reveal has no neighbours.
        """
        row = (self.rows if rows is None else rows).get(sha256)
        if row is None:
            return None
        from lesionlib import retrieval

        neighbours = {}
        for reference, positions in self.neighbour_positions.items():
            subset = getattr(index, reference, None) if index is not None else None
            kept = positions[row] >= 0  # fewer than k images in a small reference set
            if subset is not None and len(subset):
                neighbours[reference] = retrieval.neighbour_frame(
                    subset, positions[row][kept], self.neighbour_distances[reference][row][kept])
        distance = float(self.distances[row])
        stored = self.heatmaps[row].astype("float32") / 255.0
        heatmap = cv2.resize(stored, (self.heatmap_size, self.heatmap_size),
                             interpolation=cv2.INTER_LINEAR)
        probabilities = self.probabilities[row]
        return Reveal(probabilities, self.member_probabilities[row],
                      tuple((str(code), str(message))
                            for code, message in json.loads(str(self.findings[row]))),
                      None if np.isnan(distance) else distance, np.clip(heatmap, 0.0, 1.0),
                      int(self.heatmap_classes[row]), neighbours)


def case_outputs(reveal: Reveal, card, member_cards) -> tuple:
    """``(prediction, member predictions, quality report)`` of a stored reveal, as a live
    pass gives them (``inference.to_predictions``; members only for an ensemble)."""
    from lesionlib import inference, quality

    prediction = inference.to_predictions(card, reveal.probabilities[None])[0]
    members = tuple(inference.to_predictions(member, outputs[None])[0]
                    for member, outputs in zip(member_cards, reveal.member_probabilities)) \
        if len(member_cards) > 1 else ()
    report = quality.QualityReport(tuple(quality.Finding(code, message)
                                         for code, message in reveal.findings), reveal.distance)
    return prediction, members, report


# ----------------------------------------------------------------------------- identity

def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def source_digest(card, catalogue) -> str:
    """One sha256 over every file a reveal depends on: the card and quality gate of the model
    and of each member (an edge member's parent too), and the similar-case index serving it."""
    from lesionlib import edge, quality, registry, retrieval

    cards = [card] + [registry.get_card(member, catalogue) for member in (card.members or ())]
    cards += [registry.get_card(other.edge["parent"], catalogue) for other in list(cards)
              if other.kind == edge.EDGE_KIND]
    parts = {}
    for other in cards:
        folder = Path(other.folder)
        for name in ("card.json", quality.GATE_FILE):
            parts[f"{other.id}/{name}"] = _file_digest(folder / name)
    try:
        embedder = retrieval.embedding_card(card, catalogue)
    except KeyError:
        embedder = None
    if embedder is not None:
        parts[f"{embedder.id}/{retrieval.KIND.file}"] = _file_digest(retrieval.KIND.path(embedder))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def check_current(store: QuizReveals, card, catalogue) -> None:
    """Raises: StaleRevealsError when ``store`` was not computed from ``card``'s installed
    files (weights, card values, gates, similar-case index); the message says how to rebuild."""
    model_artefacts.check_current(KIND, store, card)
    if store.source_digest != source_digest(card, catalogue):
        raise StaleRevealsError(
            f"The {KIND.title} of {card.id} v{card.version} was computed before its card, "
            f"quality gate or similar-case index last changed. Rebuild it: "
            f"`{KIND.build_command(card.id)}`.")


def load(card, catalogue) -> QuizReveals:
    """The checked store of ``card``, read through its folder's manifest.

    Raises:
        RevealsMissingError, StaleRevealsError, ValueError (not a store), IntegrityError.
    """
    store = QuizReveals.load(model_artefacts.read_sealed(KIND, card))
    check_current(store, card, catalogue)
    return store


# ----------------------------------------------------------------------------- computing

def build(classifier, catalogue, images: list[tuple[str, bytes]], k: int,
          batch_size: int = 32, log=lambda message: None) -> QuizReveals:
    """Compute the reveals of ``classifier`` (a loaded model) for ``images``.

    Args:
        classifier: ``registry.load_classifier``'s model (single, ensemble or edge).
        catalogue: the installed models (for the gate's members and the similar-case index).
        images: ``(image_id, file bytes)`` pairs; the same bytes twice are stored once.
        k: neighbours per reference set, as the quiz shows them.
        batch_size: images scored at a time.
        log: called with a line of progress after each batch.

    Raises:
        ImageLoadError: an image cannot be decoded (named).
    """
    from lesionlib import edge, explain, imaging, quality, registry, retrieval

    card = classifier.card
    binary = len(card.class_names) == 2
    checker = quality.QualityChecker(classifier)
    explainers = [explain.Explainer(edge.explained_by(member, catalogue))
                  for member in classifier.members]
    try:
        index, embedder = retrieval.load_index(card, catalogue)
        retriever = retrieval.Retriever(index, registry.load_single(embedder))
    except (FileNotFoundError, ValueError, KeyError) as error:
        log(f"No similar cases stored: {error}")
        retriever = None
    unique, seen = [], set()
    for image_id, data in images:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append((image_id, digest, data))
    columns = {name: [] for name in FIELDS}
    positions = {reference: [] for reference in REFERENCES}
    distances = {reference: [] for reference in REFERENCES}
    heatmap_size = None
    for start in range(0, len(unique), batch_size):
        batch = unique[start:start + batch_size]
        decoded = [imaging.load_image(data, name=f"{image_id}.jpg")
                   for image_id, _, data in batch]
        scores = classifier.score(decoded)
        reports = checker.assess(decoded, scores.probabilities, scores.member_probabilities,
                                 scores.member_features)
        tops = [int(row[1] >= card.melanoma_threshold) if binary else int(np.argmax(row))
                for row in scores.probabilities]
        maps = (explainers[0].compute_maps(decoded, tops, HEATMAP_METHOD)
                if len(explainers) == 1 else
                explain.ensemble_maps(explainers, decoded, tops, HEATMAP_METHOD))
        heatmap_size = int(maps.shape[-1])
        columns["heatmaps"] += [np.round(255 * np.clip(cv2.resize(
            heatmap, (HEATMAP_STORED_SIZE, HEATMAP_STORED_SIZE),
            interpolation=cv2.INTER_AREA), 0, 1)).astype("uint8") for heatmap in maps]
        columns["heatmap_classes"] += tops
        columns["image_ids"] += [image_id for image_id, _, _ in batch]
        columns["image_sha256"] += [digest for _, digest, _ in batch]
        columns["probabilities"].append(np.asarray(scores.probabilities, "float32"))
        members = (np.stack(scores.member_probabilities, axis=1) if len(classifier.members) > 1
                   else np.zeros((len(batch), 0, scores.probabilities.shape[1])))
        columns["member_probabilities"].append(members.astype("float32"))
        columns["findings"] += [json.dumps([[finding.code, finding.message]
                                            for finding in report.findings])
                                for report in reports]
        columns["distances"] += [np.nan if report.distance is None else report.distance
                                 for report in reports]
        if retriever is not None:
            embeddings = retriever.embed(decoded)
            exclude = [{image_id} for image_id, _, _ in batch]
            for reference in REFERENCES:
                if getattr(index, reference, None) is None or not len(getattr(index, reference)):
                    continue
                frames = retriever.neighbours(embeddings, k, reference, exclude)
                row_of = {str(image_id): row for row, image_id
                          in enumerate(getattr(index, reference).image_ids)}
                positions[reference] += [_padded([row_of[i] for i in frame["image_id"]], k, -1)
                                         for frame in frames]
                distances[reference] += [_padded(list(frame["distance"]), k, np.nan)
                                         for frame in frames]
        log(f"{min(start + batch_size, len(unique))} of {len(unique)} images")
    kept = [reference for reference in REFERENCES if positions[reference]]
    return QuizReveals(
        card.id, card.version, str(card.weights_sha256), source_digest(card, catalogue),
        heatmap_size or card.input_size, int(k),
        retrieval.text_array(pd.Series(columns["image_sha256"], dtype=object)),
        retrieval.text_array(pd.Series(columns["image_ids"], dtype=object)),
        np.concatenate(columns["probabilities"]) if unique else np.zeros((0, 0), "float32"),
        np.concatenate(columns["member_probabilities"]) if unique
        else np.zeros((0, 0, 0), "float32"),
        np.asarray(columns["findings"], dtype=str),
        np.asarray(columns["distances"], "float32"),
        np.asarray(columns["heatmaps"], "uint8").reshape(-1, HEATMAP_STORED_SIZE,
                                                         HEATMAP_STORED_SIZE),
        np.asarray(columns["heatmap_classes"], "int8"),
        {reference: np.asarray(positions[reference], "int32") for reference in kept},
        {reference: np.asarray(distances[reference], "float32") for reference in kept})


def _padded(values: list, k: int, fill) -> list:
    return (list(values) + [fill] * k)[:k]
