"""Every cached resource of the dashboard, in one place (the only module using ``st.cache_*``).

Models, explainers and quality checkers are loaded once per process with ``st.cache_resource``
and shared by all sessions: they are never modified. A model is loaded (and its inference
compiled, ``lesionlib.compiled``) once, whether used alone, inside an ensemble or to explain its
edge export. Predictions and heatmaps are cached with ``st.cache_data`` keyed by the image's
sha256, the model id and its weights fingerprint, the heatmap method and the class (the quiz's
reveals may be precomputed: ``stored_reveal``). Arguments starting with ``_`` are not keys.

The weights and data folders are read from the environment on every call (not at import), so a
test or a deployment can point ``LESIONLIB_WEIGHTS`` / ``LESIONLIB_DATA`` elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from lesionlib import dataset_cases, edge, evaluation, explain, imaging, inference, quality
from lesionlib import quiz_reveals, registry, retrieval, subgroups
from lesionlib import embedding_map as lesion_embedding_map
from lesionlib import label_audit as lesion_label_audit
from lesionlib import data as lesion_data
from lesionlib.bounded_cache import ByteBoundedCache
from lesionlib.classes import CLASS_NAMES

REPO_ROOT = Path(__file__).resolve().parent.parent  # app/ sits in the repository root
SAMPLE_DIR = REPO_ROOT / "sample_images"
RESOURCES_DIR = REPO_ROOT / "lesionlib" / "resources"
# Decoded images kept for a second look, shared by all sessions: at most this many bytes (about
# 85 images at the 1024 px working size, or 1,000 HAM10000 images at 600x450).
DECODE_CACHE_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- folders and ids

def weights_dir() -> str:
    """The weights folder in use: ``$LESIONLIB_WEIGHTS`` or ``weights/`` beside the dashboard."""
    return str(Path(os.environ.get("LESIONLIB_WEIGHTS") or REPO_ROOT / "weights"))


def image_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class CaseImage:
    """A decoded image under review: where it came from, its sha256 and its RGB pixels."""

    case_id: str
    name: str
    sha256: str
    source: str  # "sample" | "upload" | "dataset"
    image: np.ndarray = dataclasses.field(repr=False, compare=False)


@st.cache_resource(show_spinner=False)
def decoded_images() -> ByteBoundedCache:
    """The process-wide cache of decoded images, by sha256, bounded by ``DECODE_CACHE_BYTES``."""
    return ByteBoundedCache(DECODE_CACHE_BYTES)


def _decode(sha256: str, data: bytes, name: str) -> np.ndarray:
    """The decoded (read-only) pixels of ``data``, from the cache when seen before."""
    cache = decoded_images()
    image = cache.get(sha256)
    if image is None:
        image = imaging.load_image(data, name=name)
        image.flags.writeable = False  # shared by every session that opens the same image
        cache.put(sha256, image)
    return image


def case_from_bytes(name: str, data: bytes, source: str = "upload",
                    case_id: str | None = None) -> CaseImage:
    """Decode uploaded (or read) bytes into a case; the decoded image is cached by sha256.

    The case's name is ``imaging.safe_file_name(name)``: an uploaded name is shown in captions
    and messages, so it must not carry Markdown or HTML.

    Raises:
        ImageLoadError: the bytes are not a usable image (the message says why).
    """
    name = imaging.safe_file_name(name)
    digest = image_sha256(data)
    image = _decode(digest, data, name)
    return CaseImage(case_id or digest[:12], name, digest, source, image)


def case_from_file(path: str | Path, source: str = "sample",
                   case_id: str | None = None) -> CaseImage:
    """A case from an image file (a sample or a dataset image).

    Raises:
        ImageLoadError: the file is missing or not a usable image.
    """
    path = Path(path)
    if not path.is_file():
        raise imaging.ImageLoadError(f"{path.name}: file not found.")
    return case_from_bytes(path.name, path.read_bytes(), source, case_id or path.name)


# ----------------------------------------------------------------------------- models

@st.cache_data(ttl=60, show_spinner=False)
def catalogue(folder: str) -> registry.Catalogue:
    """The model cards in ``folder`` (re-read every minute, so newly shipped models appear)."""
    return registry.discover(folder)


def current_catalogue() -> registry.Catalogue:
    return catalogue(weights_dir())


def fingerprint(model_id: str, cards: registry.Catalogue) -> str:
    """Identifies the exact files of a model (and of an ensemble's members) for cache keys.

    The manifest digest changes with any sealed file (weights, card values, gate, stored
    predictions), so a re-evaluated or re-gated model is never served from an older cache.
    """
    card = cards.cards.get(model_id)
    if card is None:
        return "unknown"
    seal = cards.seals.get(model_id, "")
    if card.kind in ("single", "edge"):
        return f"{card.version}:{card.weights_sha256}:{seal}"
    members = [fingerprint(member, cards) for member in card.members]
    return f"{card.version}:{card.temperature}:{seal}:" + ",".join(members)


@st.cache_resource(max_entries=8, show_spinner="Loading model...")
def _classifier(model_id: str, folder: str, weights_fingerprint: str):
    # An ensemble's members come from this same cache: loaded and compiled once per process.
    return registry.load_classifier(model_id, catalogue=registry.discover(folder),
                                    load_member=lambda card: classifier(card.id))


def classifier(model_id: str):
    """The loaded model (shared, read-only).

    Raises:
        KeyError: unknown model id.
        CardError: the model (or an ensemble member) was refused, e.g. a sha256 mismatch.
    """
    cards = current_catalogue()
    return _classifier(model_id, weights_dir(), fingerprint(model_id, cards))


@st.cache_resource(max_entries=8, show_spinner=False)
def _explainers(model_id: str, folder: str, weights_fingerprint: str) -> list[explain.Explainer]:
    return [explain.Explainer(_explained_model(member)) for member in classifier(model_id).members]


def _explained_model(member):
    """The model whose gradients explain ``member``: itself, or an edge model's parent, taken
    from the shared model cache (loaded and compiled once)."""
    if member.card.kind == edge.EDGE_KIND:
        return classifier(member.card.edge["parent"]).members[0]
    return edge.explained_by(member, current_catalogue())


def explainers(model_id: str) -> list[explain.Explainer]:
    """One thread-locked explainer per member of the model (built once, shared); an edge
    (TFLite) model has no gradients and is explained by its parent Keras model."""
    return _explainers(model_id, weights_dir(), fingerprint(model_id, current_catalogue()))


@st.cache_resource(max_entries=8, show_spinner=False)
def _quality_checker(model_id: str, folder: str, weights_fingerprint: str):
    return quality.QualityChecker(classifier(model_id))


def quality_checker(model_id: str) -> quality.QualityChecker:
    return _quality_checker(model_id, weights_dir(), fingerprint(model_id, current_catalogue()))


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """A model's calibrated prediction on a case, its members' predictions and quality report."""

    prediction: inference.Prediction
    members: tuple[inference.Prediction, ...]
    report: quality.QualityReport


@st.cache_data(max_entries=256, show_spinner="Predicting...")
def _predict(sha256: str, model_id: str, folder: str, weights_fingerprint: str,
             _image: np.ndarray) -> CaseResult:
    model = classifier(model_id)
    # One pass per member: probabilities, the gate's features and the heatmaps' inputs.
    scores = model.score([_image], with_heatmaps=True)
    probabilities, member_probabilities = scores.probabilities, scores.member_probabilities
    prediction = inference.to_predictions(model.card, probabilities)[0]
    members = tuple(inference.to_predictions(member.card, member_output)[0]
                    for member, member_output in zip(model.members, member_probabilities)) \
        if len(model.members) > 1 else ()
    report = quality_checker(model_id).assess([_image], probabilities, member_probabilities,
                                              scores.member_features)[0]
    return CaseResult(prediction, members, report)


def predict(case: CaseImage, model_id: str) -> CaseResult:
    """Cached prediction of ``model_id`` on ``case`` (by sha256); raises like ``classifier``."""
    return _predict(case.sha256, model_id, weights_dir(),
                    fingerprint(model_id, current_catalogue()), case.image)


@st.cache_data(max_entries=256, show_spinner="Computing heatmap...")
def _heatmap(sha256: str, model_id: str, method: str, class_index: int, folder: str,
             weights_fingerprint: str, _image: np.ndarray) -> np.ndarray:
    members = explainers(model_id)
    if len(members) == 1:
        return members[0].compute_map(_image, class_index, method)
    return explain.ensemble_map(members, _image, class_index, method)


def output_index(model_id: str, class_name: str) -> int:
    """The position of ``class_name`` among ``model_id``'s outputs (a binary melanoma model's
    are ``other``, ``mel``; every other model's the seven classes)."""
    card = current_catalogue().cards.get(model_id)
    names = tuple(card.class_names) if card is not None else CLASS_NAMES
    return names.index(class_name)


def heatmap(case: CaseImage, model_id: str, method: str, class_index: int) -> np.ndarray:
    """Cached ``[0, 1]`` heatmap of ``method`` for ``class_index`` (ensembles: members' mean)."""
    return _heatmap(case.sha256, model_id, method, int(class_index), weights_dir(),
                    fingerprint(model_id, current_catalogue()), case.image)


# ----------------------------------------------------------------------------- stored data

@st.cache_data(max_entries=64, show_spinner=False)
def _stored_predictions(model_id: str, set_name: str, folder: str,
                        weights_fingerprint: str) -> pd.DataFrame | None:
    card = catalogue(folder).cards[model_id]
    return evaluation.load_predictions(card, set_name)


def stored_predictions(model_id: str, set_name: str) -> pd.DataFrame | None:
    """A model's stored predictions on an evaluation set (``None`` if not shipped)."""
    cards = current_catalogue()
    if model_id not in cards.cards:
        return None
    return _stored_predictions(model_id, set_name, weights_dir(), fingerprint(model_id, cards))


def dataset_dir(name: str = "ham10000") -> Path | None:
    """A dataset folder (``$LESIONLIB_DATA`` or ``../shared/data/<name>``), ``None`` if absent."""
    try:
        return lesion_data.resolve_data_dir(name=name)
    except FileNotFoundError:
        return None


@st.cache_data(show_spinner=False)
def _bundled_metadata(metadata_path: str, split_path: str) -> pd.DataFrame:
    frame = pd.read_csv(metadata_path)
    splits = pd.read_csv(split_path)
    frame = frame.merge(splits, on="image_id", how="left")
    frame["age_band"] = lesion_data.age_bands(frame["age"])
    return frame


def bundled_metadata() -> pd.DataFrame:
    """HAM10000's official metadata (shipped in the package) with the project's split."""
    return _bundled_metadata(str(RESOURCES_DIR / "HAM10000_metadata.csv"),
                             str(RESOURCES_DIR / "ham10000_split.csv"))


@st.cache_data(show_spinner=False)
def _image_index(folder: str) -> dict[str, str]:
    labels = pd.read_csv(Path(folder) / "labels.csv")
    return {str(image_id): str(Path(folder) / file)
            for image_id, file in zip(labels["image_id"], labels["file"])}


def image_paths() -> tuple[dict[str, str], str]:
    """``image_id -> path`` for the images available here, and where they come from.

    The full HAM10000 folder when present, else the bundled sample images.
    """
    folder = dataset_dir()
    if folder is not None:
        return _image_index(str(folder)), "the HAM10000 image folder"  # no server path
    return _image_index(str(SAMPLE_DIR)), "the 21 bundled sample images (HAM10000 test split)"


def quiz_pool(model_id: str, set_name: str):
    """The teaching quiz's case pool for ``model_id`` on ``set_name``: ``(pool, paths,
    origin)``, or ``None`` when the model stores no predictions there.

    Built once per process for each set of model versions (the fingerprints of the quiz model
    and of every single model whose disagreement marks hard cases) and data folder: a class of
    students clicking "Commit my answer" used to rebuild it on every click (~60% of server
    time). The pool is shared between sessions: read it, never change it in place.
    """
    cards = current_catalogue()
    singles = tuple(sorted(other for other, card in cards.cards.items() if card.kind == "single"))
    versions = tuple(fingerprint(other, cards) for other in (model_id, *singles))
    return _quiz_pool(model_id, set_name, singles, versions, weights_dir(),
                      str(dataset_dir() or SAMPLE_DIR))


@st.cache_resource(max_entries=8, show_spinner=False)
def _quiz_pool(model_id: str, set_name: str, singles: tuple, versions: tuple, weights: str,
               images: str):
    from lesionlib import teaching

    predictions = stored_predictions(model_id, set_name)
    if predictions is None:
        return None
    others = {other: stored_predictions(other, set_name) for other in singles}
    paths, origin = image_paths()
    pool = teaching.case_pool(predictions, {key: frame for key, frame in others.items()
                                            if frame is not None}, set(paths))
    return pool, paths, origin


def sample_labels() -> pd.DataFrame:
    return _sample_labels(str(SAMPLE_DIR / "labels.csv"))


def available_samples() -> pd.DataFrame:
    """The rows of ``sample_images/labels.csv`` whose image file is present."""
    labels = sample_labels()
    return labels[labels["file"].map(lambda file: (SAMPLE_DIR / file).is_file())]


@st.cache_data(show_spinner=False)
def _sample_labels(path: str) -> pd.DataFrame:
    return pd.read_csv(path)


@st.cache_resource(max_entries=512, show_spinner=False)
def thumbnail(path: str, size: int = 160) -> bytes | None:
    """A small JPEG copy of a dataset image for galleries, encoded once for every session
    (``st.image`` would encode an array again on every run); ``None`` if unreadable."""
    try:
        image = imaging.load_image(path)
    except imaging.ImageLoadError:
        return None
    height, width = image.shape[:2]
    scale = size / max(height, width)
    import cv2

    small = cv2.resize(image, (max(1, int(width * scale)), max(1, int(height * scale))),
                       interpolation=cv2.INTER_AREA)
    encoded, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                 [cv2.IMWRITE_JPEG_QUALITY, 90])
    return data.tobytes() if encoded else None


@st.cache_resource(max_entries=128, show_spinner=False)  # up to ~2 MB each at 1024 px
def encoded_png(key: tuple, _make) -> bytes:
    """PNG bytes of ``_make()`` (an RGB array), made once per ``key`` for every session (the
    case image, its heatmap overlay, the legend): ``st.image`` re-encodes an array every run."""
    import cv2

    return cv2.imencode(".png", cv2.cvtColor(_make(), cv2.COLOR_RGB2BGR))[1].tobytes()


def dataset_image_path(set_folder: str, file: str) -> Path | None:
    """The image file of a stored prediction row, when that dataset is present here."""
    folder = dataset_dir(set_folder)
    if folder is None:
        return None
    path = folder / file
    return path if path.is_file() else None


@st.cache_data(max_entries=8, show_spinner=False)
def _labels_table(folder: str) -> pd.DataFrame:
    return pd.read_csv(Path(folder) / "labels.csv")


def dataset_folders() -> dict[str, Path | None]:
    """Each dataset Case review can open by id -> its folder here (``None`` when absent)."""
    return {name: dataset_dir(name) for name in dataset_cases.DATASETS}


def dataset_image(image_id: str) -> dataset_cases.DatasetImage:
    """A dataset image by id, from the folders present; raises like
    ``dataset_cases.find_image`` (``ValueError``, ``FileNotFoundError``, ``KeyError``)."""
    folders = dataset_folders()
    labels = {name: _labels_table(str(folder)) for name, folder in folders.items() if folder}
    return dataset_cases.find_image(image_id, folders, labels)


def is_training_image(sha256: str) -> bool:
    """Whether these exact bytes are an image of a training split of a set present here."""
    folders = dataset_folders()
    return sha256.lower() in _training_digests(tuple(sorted(
        (name, str(folder)) for name, folder in folders.items() if folder)))


@st.cache_resource(max_entries=4, show_spinner=False)
def _training_digests(folders: tuple) -> frozenset:
    return dataset_cases.training_digests({name: Path(folder) for name, folder in folders})


def subgroup_frame(model_id: str, set_name: str) -> pd.DataFrame | None:
    """A model's labelled stored predictions on a set, with the set's metadata joined when the
    stored file lacks it and the dataset is here (ISIC 2017's age and sex)."""
    frame = stored_predictions(model_id, set_name)
    if frame is None:
        return None
    folder = _set_folder(set_name)
    return subgroups.with_metadata(frame[frame["label"] >= 0],
                                   _labels_table(str(folder)) if folder else None)


def _set_folder(set_name: str) -> Path | None:
    dataset = evaluation.EVALUATION_SETS.get(set_name, (None,))[0]
    return dataset_dir(dataset) if dataset else None


@st.cache_data(max_entries=64, show_spinner="Bootstrapping confidence intervals...")
def _subgroup_table(model_id: str, set_name: str, column: str, threshold: float, folder: str,
                    weights_fingerprint: str, data_folder: str | None) -> pd.DataFrame:
    return subgroups.subgroup_table(subgroup_frame(model_id, set_name), column, threshold)


def subgroup_table(model_id: str, set_name: str, column: str, threshold: float) -> pd.DataFrame:
    """Cached ``subgroups.subgroup_table`` (1,000 seeded resamples) of a model on a set."""
    data_folder = _set_folder(set_name)
    return _subgroup_table(model_id, set_name, column, float(threshold), weights_dir(),
                           fingerprint(model_id, current_catalogue()),
                           str(data_folder) if data_folder else None)


# ----------------------------------------------------------------------------- feedback

def feedback_store():
    """The reviewer-feedback store (``$LESIONLIB_FEEDBACK_URL``, default ``feedback.db``).

    Shared per URL; raises ``FeedbackStoreError`` when the store cannot be opened.
    """
    return _feedback_store(os.environ.get("LESIONLIB_FEEDBACK_URL") or None)


@st.cache_resource(max_entries=4, show_spinner=False)
def _feedback_store(url: str | None):
    from lesionlib.feedback import FeedbackStore

    return FeedbackStore(url=url)


def reader_study_store():
    """The reader-study store, on the same database as the feedback (one per URL); raises
    ``ReaderStudyError`` when it cannot be opened."""
    return _reader_study_store(os.environ.get("LESIONLIB_FEEDBACK_URL") or None)


@st.cache_resource(max_entries=4, show_spinner=False)
def _reader_study_store(url: str | None):
    from lesionlib.reader_study import ReaderStudyStore

    return ReaderStudyStore(url=url)


@st.cache_data(max_entries=32, show_spinner="Bootstrapping the study's intervals...")
def reader_study_results(_study, study_id: int, answers: pd.DataFrame,
                         experiences: dict) -> dict:
    """Cached ``reader_results.results`` (keyed by the study and its answers)."""
    from lesionlib import reader_results

    return reader_results.results(_study, answers, experiences)


# ----------------------------------------------------------------------------- similar cases

@st.cache_resource(max_entries=8, show_spinner=False)
def _retrieval_index(model_id: str, folder: str, weights_fingerprint: str):
    cards = catalogue(folder)
    return retrieval.load_index(cards.cards[model_id], cards)


def retrieval_index(model_id: str):
    """The checked similar-case index serving ``model_id`` and its embedding model's card.

    Raises:
        IndexMissingError, StaleIndexError, ValueError: see ``retrieval.load_index``.
        KeyError: unknown model id or ensemble member.
    """
    return _retrieval_index(model_id, weights_dir(), fingerprint(model_id, current_catalogue()))


@st.cache_resource(max_entries=4, show_spinner="Loading the similar-case index...")
def _retriever(model_id: str, folder: str, weights_fingerprint: str) -> retrieval.Retriever:
    index, single_card = retrieval_index(model_id)
    return retrieval.Retriever(index, classifier(single_card.id).members[0])


@st.cache_data(max_entries=256, show_spinner="Finding similar cases...")
def _similar(sha256: str, model_id: str, reference: str, k: int, exclude: tuple[str, ...],
             folder: str, weights_fingerprint: str, _image: np.ndarray) -> pd.DataFrame:
    retriever = _retriever(model_id, folder, weights_fingerprint)
    return retriever.similar([_image], k, reference, [set(exclude)])[0]


def similar_cases(case: CaseImage, model_id: str, k: int = retrieval.DEFAULT_K,
                  reference: str = "training") -> pd.DataFrame:
    """The case's ``k`` most similar training images (or bundled samples), nearest first.

    The case's own image (by file name) is never among them. Raises like ``retrieval_index``.
    """
    exclude = (Path(case.name).stem, str(case.case_id))
    return _similar(case.sha256, model_id, reference, int(k), exclude, weights_dir(),
                    fingerprint(model_id, current_catalogue()), case.image)


@dataclasses.dataclass(frozen=True)
class StoredReveal:
    """A quiz reveal computed ahead (``lesionlib.quiz_reveals``): no model work at commit."""

    result: CaseResult
    heatmap: np.ndarray  # Grad-CAM of ``heatmap_class``, the model's answer
    heatmap_class: int
    neighbours: dict  # "training" / "samples" -> frame as ``similar_cases``


@st.cache_resource(max_entries=4, show_spinner=False)
def _quiz_reveals(model_id: str, folder: str, weights_fingerprint: str):
    cards = catalogue(folder)
    try:
        store = quiz_reveals.load(cards.cards[model_id], cards)
    except quiz_reveals.load_errors():
        return None  # missing or stale: the quiz computes live, as without a store
    return store, store.rows


def stored_reveal(case: CaseImage, model_id: str) -> StoredReveal | None:
    """The quiz's stored reveal of ``case`` by ``model_id``, or ``None`` (no current store, or
    an image it does not hold): the caller then computes live."""
    return _stored_reveal(model_id, weights_dir(), fingerprint(model_id, current_catalogue()),
                          case.sha256)


# Shared by every session (a reveal is read twice per case: at the question and at the answer);
# ~0.2 MB each (the heatmap at the model's input size), so a bounded number.
@st.cache_resource(max_entries=256, show_spinner=False)
def _stored_reveal(model_id: str, folder: str, weights_fingerprint: str,
                   sha256: str) -> StoredReveal | None:
    loaded = _quiz_reveals(model_id, folder, weights_fingerprint)
    if loaded is None or sha256 not in loaded[1]:
        return None
    try:
        index = retrieval_index(model_id)[0]
    except quiz_reveals.load_errors():
        index = None  # no neighbours: the similar-case panel says why
    reveal = loaded[0].reveal(sha256, index, loaded[1])
    cards = catalogue(folder)
    card = cards.cards[model_id]
    members = [cards.cards[member] for member in card.members] if card.kind == "ensemble" else []
    return StoredReveal(CaseResult(*quiz_reveals.case_outputs(reveal, card, members)),
                        reveal.heatmap, reveal.heatmap_class, reveal.neighbours)


# ----------------------------------------------------------------------------- research views

@st.cache_resource(max_entries=8, show_spinner=False)
def _embedding_map(model_id: str, folder: str, weights_fingerprint: str):
    cards = catalogue(folder)
    return lesion_embedding_map.load_map(cards.cards[model_id], cards)


def embedding_map(model_id: str):
    """The checked embedding map serving ``model_id`` and its embedding model's card.

    Raises:
        MapMissingError, StaleMapError, ValueError: see ``embedding_map.load_map``.
        KeyError: unknown model id or ensemble member; IntegrityError: not the sealed file.
    """
    cards = current_catalogue()
    embedder = lesion_embedding_map.mapped_card(cards.cards[model_id], cards)
    return _embedding_map(model_id, weights_dir(), fingerprint(embedder.id, cards))


@st.cache_data(max_entries=16, show_spinner="Looking for likely label errors...")
def _label_audit(model_id: str, folder: str, weights_fingerprint: str):
    return lesion_label_audit.audit_model(catalogue(folder).cards[model_id])


def label_audit(model_id: str):
    """The label-issue audit of ``model_id``'s stored HAM10000 predictions (cached per model
    fingerprint). Raises: ValueError when it stores no validation or test predictions."""
    return _label_audit(model_id, weights_dir(), fingerprint(model_id, current_catalogue()))
