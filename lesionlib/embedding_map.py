"""Embedding map: the HAM10000 test split laid out in 2-D by one model's features.

Each test image is embedded as for similar-case retrieval (``lesionlib.retrieval``: the pooled
``avg_pool`` features of one single model), reduced by PCA to ``PCA_DIMENSIONS`` and
L2-normalised (cosine geometry, as the retrieval index), then laid out in two dimensions by
t-SNE (scikit-learn, fixed seed). An ensemble is mapped with its best member's features, as for
retrieval, and an edge (TensorFlow Lite) model with its parent Keras model's.

The map is computed offline, never on page load: ``python -m lesionlib embedding-map --model ID``
writes ``embedding_map.npz`` into the model's folder (plain arrays, loaded with
``allow_pickle=False``) and reseals the folder. It records the model id, version and weights
sha256; a map that no longer matches its model is refused (``StaleMapError``). It also records
how faithful the 2-D layout is (``neighbourhood_scores``), so nobody reads clusters into noise.

Why t-SNE and not UMAP: umap-learn brings numba and llvmlite, and imports TensorFlow when it is
imported; t-SNE on 1,509 points takes seconds with the scikit-learn already pinned.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib import model_artefacts, retrieval
from lesionlib.classes import CLASS_NAMES

MAP_FILE = "embedding_map.npz"
FEATURE_LAYER = retrieval.FEATURE_LAYER
PCA_DIMENSIONS = 50
PERPLEXITY = 30.0
NEIGHBOURS = 5  # k of the neighbourhood scores
METHODS = ("tsne", "pca")
FIELDS = ("image_ids", "lesion_ids", "labels", "dx_types", "datasets", "coordinates")
# colour option -> legend title (the page's "Colour by" choices)
COLOUR_OPTIONS = {"true_class": "true class", "prediction": "predicted class",
                  "correctness": "correct or wrong", "dataset": "source collection",
                  "dx_type": "how the diagnosis was confirmed"}


class MapMissingError(model_artefacts.ArtefactMissingError):
    """The model has no embedding map yet."""


class StaleMapError(model_artefacts.StaleArtefactError):
    """The map was computed with other weights than the installed model's."""


KIND = model_artefacts.ArtefactKind(MAP_FILE, "embedding map",
                                    "python -m lesionlib embedding-map --model {model_id}",
                                    MapMissingError, StaleMapError)


def build_command(model_id: str) -> str:
    return KIND.build_command(model_id)


@dataclasses.dataclass(frozen=True)
class EmbeddingMap:
    """2-D coordinates of a set's images, with their identity and the map's provenance."""

    model_id: str  # the single model whose features are mapped
    model_version: str
    weights_sha256: str
    feature_layer: str
    method: str  # "tsne" | "pca"
    parameters: dict  # how the layout was computed (PCA dims, perplexity, seed)
    set_name: str  # e.g. "ham10000_test"
    image_ids: np.ndarray  # str
    lesion_ids: np.ndarray  # str
    labels: np.ndarray  # int8 class indices (-1: none)
    dx_types: np.ndarray  # str
    datasets: np.ndarray  # str: HAM10000's source collection
    coordinates: np.ndarray  # (n, 2) float32
    metrics: dict  # see ``neighbourhood_scores``

    def __len__(self) -> int:
        return len(self.image_ids)

    def frame(self) -> pd.DataFrame:
        """One row per image: image_id, lesion_id, true_class, dx_type, dataset, x, y."""
        return pd.DataFrame({
            "image_id": self.image_ids.astype(str), "lesion_id": self.lesion_ids.astype(str),
            "true_class": [CLASS_NAMES[label] if label >= 0 else "" for label in self.labels],
            "dx_type": self.dx_types.astype(str), "dataset": self.datasets.astype(str),
            "x": self.coordinates[:, 0].astype(float), "y": self.coordinates[:, 1].astype(float)})

    def save(self, path: Path) -> Path:
        arrays = {"model_id": self.model_id, "model_version": self.model_version,
                  "weights_sha256": self.weights_sha256, "feature_layer": self.feature_layer,
                  "method": self.method, "parameters": json.dumps(self.parameters),
                  "set_name": self.set_name, "metrics": json.dumps(self.metrics),
                  **{name: getattr(self, name) for name in FIELDS}}
        return model_artefacts.save_arrays(path, arrays)

    @classmethod
    def load(cls, source) -> "EmbeddingMap":
        """Read a map from a path or bytes.

        Raises:
            ValueError: the file is not an embedding map (names what is missing).
        """
        values = model_artefacts.read_arrays(source, KIND.title,
                                             (*model_artefacts.IDENTITY_FIELDS, *FIELDS))
        return cls(str(values["model_id"]), str(values["model_version"]),
                   str(values["weights_sha256"]),
                   str(values.get("feature_layer", FEATURE_LAYER)),
                   str(values.get("method", "tsne")),
                   json.loads(str(values.get("parameters", "{}"))),
                   str(values.get("set_name", "")),
                   *(values[name] for name in FIELDS),
                   json.loads(str(values.get("metrics", "{}"))))


# ----------------------------------------------------------------------------- computing

def layout(features: np.ndarray, method: str = "tsne", seed: int = 0,
           perplexity: float = PERPLEXITY) -> tuple[np.ndarray, dict]:
    """2-D coordinates of feature rows, and the parameters used.

    Features are reduced by PCA to at most ``PCA_DIMENSIONS`` and L2-normalised first.

    Args:
        features: (n, d) pooled features.
        method: "tsne" (the map) or "pca" (first two principal components, for quick checks).
        seed: random state of PCA and t-SNE (the layout is reproducible).
        perplexity: t-SNE perplexity (capped below n / 3 for small sets).

    Raises:
        ValueError: unknown method, or fewer than 4 rows.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}.")
    features = np.asarray(features, "float32")
    if features.ndim != 2 or len(features) < 4:
        raise ValueError(f"Need at least 4 feature rows (n, d) to lay out; received shape "
                         f"{features.shape}.")
    reduced = reduced_features(features, seed)
    parameters = {"pca_dimensions": int(reduced.shape[1]), "seed": int(seed),
                  "normalised": True}
    if method == "pca":
        coordinates = PCA(n_components=2, random_state=seed).fit_transform(reduced)
    else:
        perplexity = float(min(perplexity, (len(reduced) - 1) / 3))
        # one thread: a few thousand points need no more, and OpenMP threads on a busy machine
        # spend their time waiting for each other
        with threadpool_limits(limits=1):
            coordinates = TSNE(n_components=2, perplexity=perplexity, init="pca",
                               random_state=seed).fit_transform(reduced)
        parameters["perplexity"] = perplexity
    return coordinates.astype("float32"), parameters


def reduced_features(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """PCA to at most ``PCA_DIMENSIONS``, then L2-normalised rows."""
    from sklearn.decomposition import PCA

    dimensions = min(PCA_DIMENSIONS, *features.shape)
    reduced = PCA(n_components=dimensions, svd_solver="full",
                  random_state=seed).fit_transform(features)
    return retrieval.normalise(reduced)


def neighbourhood_scores(features: np.ndarray, coordinates: np.ndarray, labels,
                         k: int = NEIGHBOURS, seed: int = 0) -> dict:
    """How faithful the 2-D map is to the feature space.

    - ``trustworthiness`` (scikit-learn, 0.5-1): whether a point's neighbours on the map are also
      its neighbours in feature space (1: no false neighbours).
    - class-balanced ``precision_at_k`` of the same true class, among the k nearest points in
      feature space and on the map (``retrieval.retrieval_scores``, the point itself excluded).
    """
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels)
    reduced = reduced_features(np.asarray(features, "float32"), seed)
    k = int(min(k, len(labels) - 1))

    def class_precision(points):
        positions = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(
            points, return_distance=False)[:, 1:]
        return retrieval.retrieval_scores(labels, labels[positions])["precision_at_k"]

    return {"k": k, "n": int(len(labels)),
            "trustworthiness": float(trustworthiness(reduced, coordinates, n_neighbors=k)),
            "class_precision_at_k_features": float(class_precision(reduced)),
            "class_precision_at_k_map": float(class_precision(np.asarray(coordinates)))}


def build_map(single_model, frame: pd.DataFrame, framed: np.ndarray, set_name: str,
              method: str = "tsne", seed: int = 0, log=lambda message: None) -> EmbeddingMap:
    """Embed ``framed`` images with one single model and lay them out in 2-D.

    Args:
        single_model: a loaded single model (``registry.load_single``).
        frame: one row per image: image_id, label, and where known lesion_id, dx_type, dataset.
        framed: those images framed at the model's input size, uint8.
        set_name: which set the images are (``ham10000_test``).
        method, seed: see ``layout``.
        log: called with a line of progress after each step.
    """
    from lesionlib.quality import feature_extractor

    card = single_model.card
    features = retrieval.embed_framed(feature_extractor(single_model.keras_model,
                                                        FEATURE_LAYER), framed)
    log(f"Embedded {len(features)} images ({features.shape[1]} features); laying out ...")
    coordinates, parameters = layout(features, method, seed)
    log("Laid out; scoring the map's neighbourhoods ...")
    labels = frame["label"].to_numpy("int8")
    scores = neighbourhood_scores(features, coordinates, labels, seed=seed)

    def column(name):
        values = frame[name] if name in frame.columns else pd.Series("unknown", frame.index)
        return retrieval.text_array(values.fillna("unknown"))

    return EmbeddingMap(card.id, card.version, str(card.weights_sha256), FEATURE_LAYER, method,
                        parameters, set_name, column("image_id"), column("lesion_id"), labels,
                        column("dx_type"), column("dataset"), coordinates, scores)


# ----------------------------------------------------------------------------- loading

def mapped_card(card, catalogue):
    """The single model whose features map ``card``: itself, an ensemble's best member
    (``retrieval.embedding_card``), or an edge model's parent Keras model.

    Raises:
        KeyError: a member or the parent is not installed.
    """
    if card.kind == "edge":
        from lesionlib.registry import get_card

        return get_card(card.edge["parent"], catalogue)
    return retrieval.embedding_card(card, catalogue)


def map_path(card) -> Path:
    return KIND.path(card)


def check_current(embedding_map: EmbeddingMap, card) -> None:
    """Raises: StaleMapError when the map was not computed with ``card``'s exact weights."""
    model_artefacts.check_current(KIND, embedding_map, card)


def load_map(card, catalogue) -> tuple[EmbeddingMap, object]:
    """The checked map serving ``card`` and the card of the model whose features it maps.

    The file is read through the folder's manifest (``integrity.read_verified``).

    Raises:
        MapMissingError: no map was computed for this model.
        StaleMapError: the map does not match the installed weights.
        ValueError: the file is not an embedding map.
        IntegrityError: the file is not the sealed one.
    """
    embedder = mapped_card(card, catalogue)
    embedding_map = EmbeddingMap.load(model_artefacts.read_sealed(KIND, embedder))
    check_current(embedding_map, embedder)
    return embedding_map, embedder


def with_predictions(map_frame: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """The map's rows with a model's stored prediction, confidence and correctness.

    Images without a stored prediction get ``prediction`` "" and ``correctness`` "no prediction".
    """
    frame = map_frame.copy()
    if predictions is None or predictions.empty:
        frame["prediction"], frame["confidence"] = "", np.nan
    else:
        stored = predictions.drop_duplicates("image_id").set_index("image_id")
        frame["prediction"] = frame["image_id"].map(stored["prediction"]).fillna("")
        frame["confidence"] = frame["image_id"].map(stored["confidence"])
    frame["correctness"] = np.select(
        [frame["prediction"] == "", frame["prediction"] == frame["true_class"]],
        ["no prediction", "correct"], "wrong")
    return frame
