"""Reviewer feedback: the saved verdicts, filtered; CSV export and audit log for administrators."""

import datetime

import streamlit as st

from app import resources, retraining_panels, ui
from lesionlib.feedback import SOURCES, FeedbackStoreError

user = ui.require_user()
st.title("Reviewer feedback")
reviewer = ui.reviewer_name(user)
admin = ui.is_admin(user)

try:
    store = resources.feedback_store()
except (FeedbackStoreError, ValueError) as error:
    st.error(f"The feedback store cannot be opened: {ui.store_error_message(error, admin)}")
    st.stop()

st.caption(f"Stored in {ui.plain(store.location)}. As an administrator you see every "
           "reviewer's feedback." if admin
           else f"You see your own feedback ({ui.plain(reviewer)}).")

columns = st.columns(5)
reviewer_filter = (columns[0].text_input("Reviewer", key="feedback_reviewer").strip() or None
                   if admin else reviewer)
model_filter = columns[1].text_input("Model id", key="feedback_model")
verdict = columns[2].selectbox("Verdict", ["all", "agree", "disagree"], key="feedback_verdict")
source = columns[3].selectbox("Page", ["all", *SOURCES], key="feedback_source")
since = columns[4].date_input("Since", value=None, key="feedback_since")
filters = {
    "reviewer": reviewer_filter,
    "model_id": model_filter.strip() or None,
    "agree": {"all": None, "agree": True, "disagree": False}[verdict],
    "source": None if source == "all" else source,
    "since": datetime.datetime.combine(since, datetime.time()) if since else None,
    "include_superseded": st.toggle(
        "Include earlier revisions", key="feedback_revisions",
        help="A reviewer who saves feedback again on the same case and model revises it: the "
             "list shows the latest revision; this adds the superseded ones."),
}

try:
    records = store.records(**filters)
except (FeedbackStoreError, ValueError) as error:
    st.error(f"Could not read the feedback: {ui.store_error_message(error, admin)}")
    st.stop()

disagreements = int((~records["agree"]).sum()) if len(records) else 0
st.markdown(f"**{ui.count(len(records), 'record')}**" + (
    f" — {ui.count(disagreements, 'disagreement')}" if len(records) else ""))
if records.empty:
    st.info("No feedback matches. Reviewers add feedback on the Case review and "
            "Performance and error audit pages.")
else:
    st.dataframe(records, hide_index=True)
    with_image = records[records["has_image"]]
    if not with_image.empty:
        record_id = st.selectbox("Show the stored (metadata-free) image of record",
                                 list(with_image["id"]), key="feedback_image_record")
        try:
            image = store.image(int(record_id))
        except (FeedbackStoreError, KeyError) as error:
            st.error(ui.store_error_message(error, admin))
        else:
            if image:
                st.image(image, width=320)

retraining_panels.corrections_panel(store, reviewer, admin)

st.subheader("Export and audit")
if not admin:
    st.info("CSV export and the audit log are for administrators.")
    st.stop()


def log_export() -> None:
    try:
        store.audit("export", reviewer, f"feedback CSV; filters {filters}")
    except (FeedbackStoreError, ValueError):
        pass  # the export itself already happened; the audit page shows what was logged


try:
    csv_bytes = store.export_csv(**filters)
except (FeedbackStoreError, ValueError) as error:
    st.error(f"Could not export: {ui.store_error_message(error, admin)}")
else:
    st.download_button("Export these records (CSV)", csv_bytes, "feedback.csv", "text/csv",
                       key="feedback_export", on_click=log_export)
with st.expander("Audit log"):
    try:
        st.dataframe(store.audit_log(), hide_index=True)
    except FeedbackStoreError as error:
        st.error(ui.store_error_message(error, admin))
