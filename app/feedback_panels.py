"""The reviewer's feedback form (Case review, the error browser): agree or disagree, corrected
diagnosis and note, saved to the feedback store as a revision of their review."""

from __future__ import annotations

import streamlit as st

from app import resources, ui
from lesionlib.classes import CLASS_NAMES
from lesionlib.feedback import FeedbackStoreError


CASE_DETAIL_FIELDS = ("age", "sex", "body_site")


VERDICTS = ("Agree", "Disagree")


def feedback_form(case_id: str, prediction, source: str, key: str,
                  image_sha256: str | None = None, image_png=None, context: str = "",
                  default_verdict: str | None = "Agree") -> None:
    """Agree/disagree, corrected diagnosis and note, saved to the feedback store.

    ``image_png`` is a callable returning the EXIF-stripped image (called only on save), or
    ``None``. ``default_verdict=None`` leaves the verdict unchosen (for a known error, where
    "Agree" would be a one-click mistake). Saving again on the same case revises the
    reviewer's earlier review. On a store error the message is shown and the form keeps what
    was typed.
    """
    with st.form(key=f"{key}_form", clear_on_submit=False):
        binary = getattr(prediction, "binary", False)
        answer = (("melanoma" if prediction.melanoma_flag else "not melanoma") if binary
                  else prediction.top_class)
        st.markdown(f"**Your review** of `{case_id}` — model says **{answer}**")
        verdict = st.radio("Do you agree with its melanoma answer?" if binary else
                           "Do you agree with the top diagnosis?", VERDICTS, horizontal=True,
                           key=f"{key}_verdict", index=None if default_verdict is None
                           else VERDICTS.index(default_verdict))
        corrected = st.selectbox("Corrected diagnosis (if you disagree)",
                                 ["(none)", *CLASS_NAMES], key=f"{key}_corrected",
                                 format_func=lambda name: name if name == "(none)"
                                 else ui.class_label(name))
        note = st.text_area("Note", key=f"{key}_note", placeholder="What did you see?")
        submitted = st.form_submit_button("Save feedback", type="primary")
    if submitted and verdict is None:
        st.warning("Choose Agree or Disagree, then save again.")
    elif submitted:
        save_feedback(case_id, prediction, source, verdict == "Agree",
                      None if corrected == "(none)" else corrected,
                      "\n".join(part for part in (note.strip(), context) if part),
                      image_sha256, image_png)


def save_feedback(case_id, prediction, source, agree, corrected, note, image_sha256,
                  image_png) -> int | None:
    from lesionlib.feedback import FeedbackRecord

    if not agree and corrected is None:
        st.warning("You disagreed: please choose the corrected diagnosis, then save again.")
        return None
    try:
        record = FeedbackRecord(
            case_id=case_id, source=source, model_id=prediction.model_id,
            model_version=prediction.model_version, predicted_class=prediction.top_class,
            agree=agree, corrected_class=None if agree else corrected, note=note,
            reviewer=ui.reviewer_name(), image_sha256=image_sha256,
            image_png=image_png() if callable(image_png) else image_png)
        saved = resources.feedback_store().save(record)
    except (FeedbackStoreError, ValueError, TypeError) as error:
        st.error(f"Feedback was NOT saved: {ui.store_error_message(error)} Your entries are "
                 "still in the form; try again, or copy your note.")
        return None
    if saved.superseded:
        st.success(f"Feedback saved (record {saved.record_id}) for `{case_id}`: it "
                   f"updates your earlier review (now revision {saved.revision}; the earlier "
                   "one is kept in the history, marked superseded).")
    else:
        st.success(f"Feedback saved (record {saved.record_id}) for `{case_id}`.")
    return saved.record_id
