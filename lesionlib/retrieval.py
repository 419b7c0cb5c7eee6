"""Similar cases: content-based retrieval of HAM10000 training images with classifier features.

A case's embedding is one single model's pooled features (the ``avg_pool`` layer, as in
Tschandl et al., "Diagnostic accuracy of content-based dermatoscopic image retrieval with deep
classification features", Br J Dermatol 2019), projected by a PCA fitted on the training split
and L2-normalised; neighbours are found by cosine distance (scikit-learn ``NearestNeighbors``).

The index is built once by ``python -m lesionlib similar --build --model ID`` and stored beside
the model as ``retrieval.npz`` (plain arrays, float16 embeddings, loaded with
``allow_pickle=False``). It records the model id, version and weights sha256 it was built with;
an index that no longer matches its model is refused (``StaleIndexError``). It also holds the
bundled sample images' embeddings, so similar cases can be shown with pictures when the dataset
is absent, and the retrieval figures measured on the test split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib import model_artefacts
from lesionlib.classes import CLASS_NAMES
from lesionlib.metrics import balanced_accuracy

INDEX_FILE = "retrieval.npz"
FEATURE_LAYER = "avg_pool"
DIMENSIONS = 128
DEFAULT_K = 5
SET_FIELDS = ("embeddings", "image_ids", "lesion_ids", "labels", "dx_types")


class IndexMissingError(model_artefacts.ArtefactMissingError):
    """The model has no similar-case index yet."""


class StaleIndexError(model_artefacts.StaleArtefactError):
    """The index was built with other weights than the installed model's."""


KIND = model_artefacts.ArtefactKind(INDEX_FILE, "similar-case index",
                                    "python -m lesionlib similar --build --model {model_id}",
                                    IndexMissingError, StaleIndexError)


def build_command(model_id: str) -> str:
    return KIND.build_command(model_id)


@dataclasses.dataclass(frozen=True)
class ReferenceSet:
    """Embedded images with their identity and reference diagnosis."""

    embeddings: np.ndarray  # (n, dims) float16, L2-normalised
    image_ids: np.ndarray  # str
    lesion_ids: np.ndarray  # str
    labels: np.ndarray  # int8 class indices
    dx_types: np.ndarray  # str: histo | follow_up | consensus | confocal

    def __len__(self) -> int:
        return len(self.image_ids)


def reference_set(embeddings: np.ndarray, frame: pd.DataFrame) -> ReferenceSet:
    """A set from embeddings and a frame of image_id, lesion_id, label and dx_type."""
    return ReferenceSet(np.asarray(embeddings, "float16"),
                        text_array(frame["image_id"]),
                        text_array(frame["lesion_id"].fillna("")),
                        frame["label"].to_numpy("int8"),
                        text_array(frame["dx_type"].fillna("unknown")))


def text_array(column: pd.Series) -> np.ndarray:
    """A fixed-width unicode array (object arrays would need pickle to load)."""
    return np.asarray(column.astype(str).tolist(), dtype=str)


@dataclasses.dataclass(frozen=True)
class RetrievalIndex:
    """The projection, the embedded training images (and samples), and the index's identity."""

    model_id: str  # the single model whose features are used
    model_version: str
    weights_sha256: str
    feature_layer: str
    mean: np.ndarray  # (features,) float32
    components: np.ndarray  # (features, dims) float32
    training: ReferenceSet
    samples: ReferenceSet | None
    description: str  # what the training set is
    metrics: dict  # retrieval figures on the test split (see ``retrieval_scores``)

    def project(self, features: np.ndarray) -> np.ndarray:
        """Features -> L2-normalised PCA embeddings (float32)."""
        projected = (np.asarray(features, "float32") - self.mean) @ self.components
        return normalise(projected)

    def save(self, path: Path) -> Path:
        arrays = {"model_id": self.model_id, "model_version": self.model_version,
                  "weights_sha256": self.weights_sha256, "feature_layer": self.feature_layer,
                  "mean": self.mean.astype("float32"),
                  "components": self.components.astype("float32"),
                  "description": self.description, "metrics": json.dumps(self.metrics)}
        for prefix, subset in (("training", self.training), ("samples", self.samples)):
            if subset is not None:
                arrays.update({f"{prefix}_{name}": getattr(subset, name) for name in SET_FIELDS})
        return model_artefacts.save_arrays(path, arrays)

    @classmethod
    def load(cls, source) -> "RetrievalIndex":
        """Read an index from a path or bytes.

        Raises:
            ValueError: the file is not a similar-case index (names what is missing).
        """
        values = model_artefacts.read_arrays(
            source, KIND.title, (*model_artefacts.IDENTITY_FIELDS, "mean", "components",
                                 *(f"training_{name}" for name in SET_FIELDS)))

        def subset(prefix):
            if f"{prefix}_image_ids" not in values:
                return None
            return ReferenceSet(*(values[f"{prefix}_{name}"] for name in SET_FIELDS))

        return cls(str(values["model_id"]), str(values["model_version"]),
                   str(values["weights_sha256"]), str(values.get("feature_layer", FEATURE_LAYER)),
                   values["mean"], values["components"], subset("training"), subset("samples"),
                   str(values.get("description", "")),
                   json.loads(str(values.get("metrics", "{}"))))


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, "float32")
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def fit_projection(train_features: np.ndarray, dimensions: int = DIMENSIONS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on training features: ``(mean, components (features, dims))``."""
    from sklearn.decomposition import PCA

    features = np.asarray(train_features, "float32")
    dimensions = min(dimensions, *features.shape)
    pca = PCA(n_components=dimensions, svd_solver="full", random_state=0).fit(features)
    return pca.mean_.astype("float32"), pca.components_.T.astype("float32")


# ----------------------------------------------------------------------------- which model

def embedding_card(card, catalogue):
    """The single model whose features serve ``card``: itself, or an ensemble's best member.

    An ensemble's member is the one with the highest validation balanced accuracy on its card.

    Raises:
        KeyError: a member is not installed.
    """
    from lesionlib.registry import get_card

    if card.kind == "single":
        return card
    members = [get_card(member, catalogue) for member in card.members]
    singles = [member for member in members if member.kind == "single"]

    def val_score(member):
        score = member.metrics.get("ham10000_val", {}).get("balanced_accuracy")
        return -1.0 if score is None else float(score)

    return max(singles, key=val_score)


def index_path(card) -> Path:
    return KIND.path(card)


def check_current(index: RetrievalIndex, card) -> None:
    """Raises: StaleIndexError when ``index`` was not built with ``card``'s exact weights."""
    model_artefacts.check_current(KIND, index, card)


def load_index(card, catalogue) -> tuple[RetrievalIndex, object]:
    """The checked index serving ``card`` and the card of the model whose features it uses.

    The file is read through the folder's manifest (``integrity.read_verified``).

    Raises:
        IndexMissingError: no index was built for this model.
        StaleIndexError: the index does not match the installed weights.
        ValueError: the file is not a similar-case index.
        IntegrityError: the file is not the sealed one.
    """
    embedder = embedding_card(card, catalogue)
    index = RetrievalIndex.load(model_artefacts.read_sealed(KIND, embedder))
    check_current(index, embedder)
    return index, embedder


# ----------------------------------------------------------------------------- querying

def embed_framed(extractor, framed: np.ndarray) -> np.ndarray:
    """Pooled features of images already framed for the model."""
    from lesionlib.quality import extract_features

    return extract_features(extractor, framed)


class Retriever:
    """Finds a case's nearest training images (or bundled samples) for one single model."""

    def __init__(self, index: RetrievalIndex, single_model):
        from sklearn.neighbors import NearestNeighbors

        from lesionlib.quality import feature_extractor

        self.index = index
        self.model = single_model
        self.extractor = feature_extractor(single_model.keras_model, index.feature_layer)
        self._search = {}
        for name, subset in (("training", index.training), ("samples", index.samples)):
            if subset is not None and len(subset):
                self._search[name] = NearestNeighbors(metric="cosine", algorithm="brute").fit(
                    subset.embeddings.astype("float32"))

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Decoded RGB images -> normalised embeddings."""
        return self.index.project(embed_framed(self.extractor, self.model.frame(images)))

    def neighbours(self, embeddings: np.ndarray, k: int = DEFAULT_K, reference: str = "training",
                   exclude_ids: list[set[str]] | None = None) -> list[pd.DataFrame]:
        """The ``k`` nearest images of ``reference`` for each embedding, nearest first.

        Args:
            embeddings: from ``embed``.
            k: neighbours per query.
            reference: "training" (HAM10000 training split) or "samples" (bundled images).
            exclude_ids: per query, image or lesion ids never returned (the case itself).

        Returns:
            One frame per query: rank, image_id, lesion_id, dx, dx_type, distance, similarity.
        """
        if reference not in self._search:
            raise ValueError(f"reference={reference!r}: this index has "
                             f"{sorted(self._search) or 'no sets'}.")
        subset = getattr(self.index, reference)
        extra = max(len(ids) for ids in exclude_ids) * 4 if exclude_ids else 0
        count = min(len(subset), k + extra)
        distances, positions = self._search[reference].kneighbors(
            np.asarray(embeddings, "float32"), n_neighbors=count)
        results = []
        for query, (row_distances, row_positions) in enumerate(zip(distances, positions)):
            frame = neighbour_frame(subset, row_positions, row_distances)
            if exclude_ids:
                excluded = exclude_ids[query]
                frame = frame[~(frame["image_id"].isin(excluded)
                                | frame["lesion_id"].isin(excluded - {""}))]
            frame = frame.head(k).reset_index(drop=True)
            frame["rank"] = np.arange(1, len(frame) + 1)
            results.append(frame)
        return results

    def similar(self, images: list[np.ndarray], k: int = DEFAULT_K,
                reference: str = "training", exclude_ids=None) -> list[pd.DataFrame]:
        """``neighbours`` of decoded images."""
        return self.neighbours(self.embed(images), k, reference, exclude_ids)


def neighbour_frame(subset: ReferenceSet, positions, distances) -> pd.DataFrame:
    positions = np.asarray(positions)
    distances = np.clip(np.asarray(distances, "float64"), 0.0, 2.0)
    return pd.DataFrame({
        "rank": np.arange(1, len(positions) + 1),
        "image_id": subset.image_ids[positions].astype(str),
        "lesion_id": subset.lesion_ids[positions].astype(str),
        "dx": [CLASS_NAMES[int(label)] for label in subset.labels[positions]],
        "dx_type": subset.dx_types[positions].astype(str),
        "distance": distances,
        "similarity": 1.0 - distances})


# ----------------------------------------------------------------------------- measuring

def majority_vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """The most frequent label of each row (ties: the label met first, i.e. nearest)."""
    votes = []
    for row in np.asarray(neighbour_labels):
        labels, first, counts = np.unique(row, return_index=True, return_counts=True)
        best = counts.max()
        votes.append(labels[first == first[counts == best].min()][0])
    return np.asarray(votes)


def retrieval_scores(query_labels, neighbour_labels) -> dict:
    """Class-balanced precision@k and the balanced accuracy of the neighbours' majority vote.

    Precision@k of a query is the share of its ``k`` neighbours with the query's diagnosis; the
    class-balanced figure is the mean over classes of the per-class mean (as balanced accuracy
    is for a classifier), so the many nevi do not dominate it.
    """
    query_labels = np.asarray(query_labels)
    neighbour_labels = np.asarray(neighbour_labels)
    hits = (neighbour_labels == query_labels[:, None]).mean(axis=1)
    per_class = {CLASS_NAMES[label]: float(hits[query_labels == label].mean())
                 for label in sorted(set(query_labels.tolist()))}
    return {"k": int(neighbour_labels.shape[1]), "n_queries": int(len(query_labels)),
            "precision_at_k": float(np.mean(list(per_class.values()))),
            "per_class_precision_at_k": per_class,
            "majority_vote_balanced_accuracy": balanced_accuracy(
                query_labels, majority_vote(neighbour_labels))}


# ----------------------------------------------------------------------------- building

def build_index(single_model, train_frame: pd.DataFrame, train_framed: np.ndarray,
                sample_frame: pd.DataFrame | None = None, sample_framed: np.ndarray | None = None,
                dimensions: int = DIMENSIONS, description: str = "") -> RetrievalIndex:
    """Embed the training images (and samples) of one single model into a new index.

    Args:
        single_model: a loaded single model (``registry.load_single``).
        train_frame: one row per training image: image_id, lesion_id, label, dx_type.
        train_framed: those images framed at the model's input size, uint8.
        sample_frame, sample_framed: the bundled sample images, likewise (optional).
        dimensions: PCA dimensions kept.
        description: what the training images are, for the page.
    """
    from lesionlib.quality import feature_extractor

    card = single_model.card
    extractor = feature_extractor(single_model.keras_model, FEATURE_LAYER)
    train_features = embed_framed(extractor, train_framed)
    mean, components = fit_projection(train_features, dimensions)
    index = RetrievalIndex(card.id, card.version, str(card.weights_sha256), FEATURE_LAYER, mean,
                           components, reference_set(np.zeros((0, 0)), train_frame.iloc[:0]),
                           None, description, {})
    training = reference_set(index.project(train_features), train_frame)
    samples = None
    if sample_frame is not None and len(sample_frame):
        samples = reference_set(index.project(embed_framed(extractor, sample_framed)),
                                sample_frame)
    return dataclasses.replace(index, training=training, samples=samples)


def evaluate_index(retriever: Retriever, test_labels, test_framed: np.ndarray,
                   k: int = DEFAULT_K) -> dict:
    """``retrieval_scores`` of test images (already framed) against the training set."""
    embeddings = retriever.index.project(embed_framed(retriever.extractor, test_framed))
    neighbours = retriever.neighbours(embeddings, k)
    labels = np.array([[CLASS_NAMES.index(dx) for dx in frame["dx"]] for frame in neighbours])
    return retrieval_scores(np.asarray(test_labels), labels)
