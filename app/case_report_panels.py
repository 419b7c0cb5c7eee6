"""Case review's "Download report": the case as a one-page PDF and as FHIR R5 JSON
(``lesionlib.case_report``, ``lesionlib.fhir_report``)."""

from __future__ import annotations

import logging

import streamlit as st

from app import resources, ui
from lesionlib import case_report, explain, fhir_report
from lesionlib.caveats import melanoma_caveat
from lesionlib.database import DatabaseError

logger = logging.getLogger(__name__)


def saved_verdict(case, model_id: str) -> case_report.Verdict | None:
    """The reviewer's current saved feedback on this case, model and image, if any."""
    reviewer = ui.reviewer_name()
    try:
        history = resources.feedback_store().history(case.case_id, reviewer, model_id)
    except (DatabaseError, ValueError):
        return None
    history = history[(history["image_sha256"] == case.sha256) & history["superseded_by"].isna()]
    if history.empty:
        return None
    record = history.iloc[-1]
    return case_report.Verdict(reviewer=reviewer, agree=bool(record["agree"]),
                               corrected_class=record["corrected_class"] or None,
                               note=str(record["note"] or ""),
                               saved_at=record["created_at"].strftime("%Y-%m-%d %H:%M UTC"))


def build(case, result, card, method: str, class_name: str, opacity: float):
    """The ``CaseReport`` of what the page shows (heatmap left out if it cannot be computed)."""
    heatmap = caption = None
    try:
        heatmap = explain.overlay(case.image, resources.heatmap(
            case, card.id, method, resources.output_index(card.id, class_name)), opacity)
        caption = f"{method} for {ui.class_label(class_name)}, from {ui.heatmap_layers(card.id)}"
    except (*ui.MODEL_ERRORS, ValueError, RuntimeError) as error:
        logger.warning("report heatmap unavailable for %s: %s", card.id, error)
    prediction = result.prediction
    return case_report.from_prediction(
        case.case_id, case.image, prediction, card, result.report,
        melanoma_caveat(card, above=prediction.melanoma_flag), heatmap=heatmap,
        heatmap_caption=caption or "", legend=explain.colour_scale() if heatmap is not None
        else None, verdict=saved_verdict(case, card.id))


def download_buttons(case, result, card, method: str, class_name: str, opacity: float,
                     key: str) -> None:
    """The PDF and FHIR downloads; file names carry no part of the upload's name."""
    report = build(case, result, card, method, class_name, opacity)
    st.caption("One page for the patient's record: the image and heatmap, the probabilities, the "
               "melanoma box, quality findings, the model and its intended use, and your saved "
               "verdict" + ("" if report.verdict else " (none saved yet: save your feedback "
                            "above first to include it)") + ". FHIR R5 for a hospital system.")
    stem = f"case_report_{case.sha256[:12]}"
    left, right = st.columns(2)
    left.download_button("Download report (PDF)", case_report.pdf_bytes(report),
                         file_name=f"{stem}.pdf", mime="application/pdf", key=f"{key}_pdf")
    right.download_button("Download report (FHIR JSON)", fhir_report.bundle_json(report),
                          file_name=f"{stem}.fhir.json", mime="application/fhir+json",
                          key=f"{key}_fhir")
