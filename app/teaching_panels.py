"""Drawing helpers for similar cases and teaching (no caching here: see ``app.resources``).

Used by the Case review, Teaching quiz and Dataset explorer pages. Errors a user can cause are
shown as messages, never as tracebacks.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import resources, ui
from lesionlib import retrieval
from lesionlib.cards import CardError
from lesionlib.classes import CLASS_LONG_NAMES

INDEX_ERRORS = (retrieval.IndexMissingError, retrieval.StaleIndexError, ValueError, KeyError,
                CardError, OSError)
COLUMNS = 5


def retrieval_figures(index) -> str:
    """One sentence with the index's measured retrieval figures (empty if none)."""
    metrics = index.metrics
    if "precision_at_k" not in metrics:
        return ""
    k = metrics["k"]
    return (f"Measured on the {metrics.get('query_set', 'test split')}: class-balanced "
            f"precision@{k} {metrics['precision_at_k']:.3f} (share of the {k} neighbours with "
            f"the query's diagnosis), balanced accuracy of the neighbours' majority vote "
            f"{metrics['majority_vote_balanced_accuracy']:.3f}.")


def similar_cases_panel(case, model_id: str, key: str, k: int = retrieval.DEFAULT_K,
                        stored: dict | None = None) -> None:
    """The case's most similar training images with diagnosis, dx_type and similarity.

    Without the HAM10000 images, the training neighbours are listed without pictures and the
    most similar bundled sample images are shown instead (and the page says so). ``stored``:
    the neighbours computed ahead, by reference set (the quiz's stored reveals).
    """
    stored = stored or {}
    try:
        index, single_card = resources.retrieval_index(model_id)
        neighbours = stored["training"].head(k) if "training" in stored else \
            resources.similar_cases(case, model_id, k)
    except INDEX_ERRORS as error:
        st.info(f"Similar cases are not available for this model: "
                f"{ui.error_message(error)}")
        return
    via = "" if single_card.id == model_id else (
        f" ({model_id} is an ensemble: its member {single_card.id} has the best validation "
        "balanced accuracy)")
    st.caption(f"The {len(neighbours)} nearest of the {index.description}, by the image "
               f"features of **{single_card.id}** v{single_card.version}{via}; cosine "
               f"similarity (1 = identical features). Similar-looking is not the same "
               f"diagnosis: these are references to compare with, not a vote. "
               + retrieval_figures(index))
    if resources.dataset_dir() is not None:
        paths, _ = resources.image_paths()
        neighbour_gallery(neighbours, paths, key)
        return
    st.info("The HAM10000 images are not here, so the training neighbours are listed without "
            "pictures; below them, the most similar of the bundled sample images (HAM10000 test "
            "split), with pictures.")
    st.dataframe(neighbour_table(neighbours), hide_index=True, key=f"{key}_similar_table")
    if index.samples is not None:
        samples = stored["samples"].head(k) if "samples" in stored else \
            resources.similar_cases(case, model_id, k, reference="samples")
        paths, _ = resources.image_paths()
        neighbour_gallery(samples, paths, f"{key}_samples")


def neighbour_table(neighbours: pd.DataFrame) -> pd.DataFrame:
    table = neighbours[["rank", "image_id", "dx", "dx_type", "similarity"]].copy()
    table["diagnosis"] = table["dx"].map(CLASS_LONG_NAMES)
    table["similarity"] = table["similarity"].round(3)
    return table


def neighbour_gallery(neighbours: pd.DataFrame, paths: dict[str, str], key: str) -> None:
    """Thumbnails with rank, diagnosis, how it was confirmed and the similarity."""
    for column, row in zip(st.columns(COLUMNS), neighbours.itertuples()):
        caption = (f"#{row.rank} {row.dx} ({row.dx_type}) · similarity {row.similarity:.2f} · "
                   f"{row.image_id}")
        thumbnail = resources.thumbnail(paths[row.image_id]) \
            if row.image_id in paths else None
        if thumbnail is None:
            column.caption(f"{caption} (image not here)")
        else:
            column.image(thumbnail, caption=caption, width="stretch")


def retrieval_performance(card) -> None:
    """The similar-case index's measured figures beside the classifier's, for the Models page."""
    st.markdown("**Similar-case retrieval**")
    try:
        index, single_card = resources.retrieval_index(card.id)
    except INDEX_ERRORS as error:
        st.caption(f"No usable similar-case index: {ui.error_message(error)}")
        return
    metrics = index.metrics
    if "precision_at_k" not in metrics:
        st.caption("The index records no measured figures; rebuild it: "
                   f"`{retrieval.build_command(single_card.id)}`.")
        return
    k = metrics["k"]
    classifier = card.metrics.get("ham10000_test", {}).get("balanced_accuracy")
    st.dataframe(pd.DataFrame([
        {"on the HAM10000 test split": "classifier: balanced accuracy",
         "value": classifier},
        {"on the HAM10000 test split": f"{k} nearest training images: majority-vote "
                                       "balanced accuracy",
         "value": metrics["majority_vote_balanced_accuracy"]},
        {"on the HAM10000 test split": f"{k} nearest training images: class-balanced "
                                       f"precision@{k}",
         "value": metrics["precision_at_k"]}]).round(3), hide_index=True,
        key=f"models_retrieval_{card.id}")
    via = "" if single_card.id == card.id else f" (the ensemble's member {single_card.id})"
    st.caption(f"Features of {single_card.id} v{single_card.version}{via}; "
               f"{index.description}; {index.components.shape[1]} PCA dimensions. "
               f"Reproduce: `{metrics.get('command', retrieval.build_command(single_card.id))}`.")
