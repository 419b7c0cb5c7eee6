"""Dashboard panels for retraining: approving corrections, version history, rollback, the
background run's progress. Administrators act; reviewers see. The work happens in
``lesionlib.retraining`` (in a separate process, through ``lesionlib.retraining_job``)."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app import resources, ui
from lesionlib import corrections, data, model_versions, retraining, retraining_job
from lesionlib.feedback import FeedbackStoreError

ADMIN_ONLY = "Only administrators approve corrections, start retraining or roll back models."


def _fixed_sets() -> corrections.FixedSets:
    ham = resources.dataset_dir("ham10000")
    if ham is None:
        return corrections.FixedSets()
    external = {name: resources.dataset_dir(name) for name in data.EXTERNAL_SETS}
    return corrections.fixed_sets(ham, external)


def corrections_panel(store, admin_name: str, admin: bool) -> None:
    """Which corrections would enter retraining, and (administrators) approve or reject one."""
    st.subheader("Corrections for retraining")
    st.caption("A correction enters retraining only when an administrator other than its author "
               "approves it, or when two different reviewers name the same class for the same "
               "case. Cases of the fixed evaluation sets never do.")
    try:
        records, decisions = store.records(), store.correction_decisions()
    except FeedbackStoreError as error:
        st.error(ui.store_error_message(error, admin))
        return
    fixed = _fixed_sets()
    if not fixed.image_ids:
        st.caption("No dataset folder here: the fixed-set check runs when retraining starts.")
    accepted, excluded = corrections.select_corrections(records, decisions, fixed)
    if not admin:  # a reviewer sees only the cases of their own corrections
        accepted, excluded = corrections.own_view(accepted, excluded, records, admin_name)
        st.caption("Only your own corrections are listed.")
    st.markdown(f"**{ui.count(len(accepted), 'case')} would enter retraining**, "
                f"{len(excluded)} would not.")
    if not accepted.empty:
        st.dataframe(accepted.drop(columns=["case_key", "image_record_id"]), hide_index=True)
    if not excluded.empty:
        with st.expander("Not entering retraining, and why"):
            st.dataframe(excluded.drop(columns=["case_key"]), hide_index=True)
    if not admin:
        st.info(ADMIN_ONLY)
        return
    pending = records[~records["agree"] & records["corrected_class"].notna()]
    if pending.empty:
        return
    with st.form("correction_decision_form"):
        record_id = st.selectbox("Correction (record id)", list(pending["id"]),
                                 key="correction_record", format_func=lambda value: (
                                     f"{value}: " + _describe(pending, value)))
        decision = st.radio("Verdict", ["approve", "reject"], horizontal=True,
                            key="correction_decision")
        note = st.text_input("Note (optional)", key="correction_note")
        submitted = st.form_submit_button("Record verdict")
    if submitted:
        try:
            store.decide_correction(int(record_id), decision, admin_name, note.strip())
        except (ValueError, KeyError, FeedbackStoreError) as error:
            st.error(ui.store_error_message(error, admin))
        else:
            st.success(f"Record {record_id}: {decision} recorded (audited).")


def _describe(pending, record_id) -> str:
    row = pending[pending["id"] == record_id].iloc[0]
    return f"{row['case_id']} -> {row['corrected_class']} by {row['reviewer']}"


def version_history(card, admin: bool) -> None:
    """A model's versions (live, archived, rejected candidates) and, for administrators, a
    rollback to an archived one (run in the background)."""
    weights = Path(resources.weights_dir())
    history = model_versions.history(weights, card.id)
    st.markdown("**Version history**")
    if len(history) <= 1:
        st.caption("Only the live version so far; versions replaced by retraining are kept "
                   f"in `{model_versions.retraining_root(weights).name}/` and listed here.")
    st.dataframe(history, hide_index=True)
    archived = [version for version in model_versions.archived_versions(weights, card.id)
                if version != card.version]
    if not admin or not archived or card.kind != "single":
        return  # an ensemble gets its versions from its members
    columns = st.columns([2, 1])
    version = columns[0].selectbox("Roll back to", archived, key=f"rollback_{card.id}")
    if columns[1].button("Roll back", key=f"rollback_button_{card.id}"):
        _start(card.id, "rollback", ["--version", version])


def retraining_panel(cards, user_name: str, admin: bool) -> None:
    """The background run's progress and log; for administrators, a form to start one."""
    weights = resources.weights_dir()
    st.subheader("Retraining")
    status = retraining_job.status(weights)
    _show_status(status)
    if not admin:
        st.info(ADMIN_ONLY)
        return
    if status.running:
        st.caption("A second run cannot start until this one ends.")
        return
    singles = sorted(model_id for model_id, card in cards.cards.items() if card.kind == "single")
    if not singles:
        return
    with st.form("retrain_form"):
        model_id = st.selectbox("Model to retrain", singles, key="retrain_model")
        epochs = st.number_input("Fine-tuning epochs", 1, 20, retraining.DEFAULT_EPOCHS,
                                 key="retrain_epochs")
        new_images = st.text_input("Folder of newly labelled images (optional, on the server)",
                                   key="retrain_new_images")
        submitted = st.form_submit_button("Start retraining")
    if submitted:
        options = ["--epochs", str(int(epochs))]
        if new_images.strip():
            if not (Path(new_images.strip()) / "labels.csv").is_file():
                st.error(f"{ui.plain(new_images.strip())} has no labels.csv; expected a "
                         "folder with labels.csv (image_id, file, label) and the images.")
                return
            options += ["--new-images", new_images.strip()]
        _start(model_id, "retrain", options, user_name)


def _start(model_id: str, command: str, options: list[str], user_name: str | None = None) -> None:
    user_name = user_name or ui.reviewer_name()
    environment = {**os.environ}
    try:
        pid = retraining_job.start(resources.weights_dir(), model_id, user_name, options,
                                   env=environment, command=command)
    except retraining_job.JobRunning as error:
        st.error(str(error))
        return
    except ValueError as error:  # RetrainingError: e.g. a signed deployment
        st.error(ui.error_message(error))
        return
    st.success(f"Started `{command}` of {model_id} in the background (process {pid}); its "
               "progress and log appear below. The page is free meanwhile.")


def _show_status(status: retraining_job.JobStatus) -> None:
    progress = status.progress
    if status.running:
        stage = progress.get("stage", "starting")
        line = f"Running: **{stage}**"
        if progress.get("epochs"):
            line += f", epoch {progress.get('epoch', 0)} of {progress['epochs']}"
        if progress.get("eta_s") is not None:
            minutes, seconds = divmod(int(progress["eta_s"]), 60)
            line += f", about {minutes} min {seconds} s left"
        st.info(line + f" (started by {ui.plain(status.lock.get('user', '?'))}).")
        if progress.get("epochs"):
            st.progress(min(1.0, progress.get("epoch", 0) / progress["epochs"]))
        st.button("Refresh", key="retrain_refresh")
    elif progress.get("stage") == "done":
        resources.catalogue.clear()  # the live versions changed
        st.success(f"Last run: v{progress.get('version')} {progress.get('verdict')} "
                   f"({progress.get('updated_at', '')}).")
    elif progress.get("stage") == "failed":
        st.warning(f"Last run failed: {ui.plain(progress.get('error', ''))}")
    elif progress:
        st.warning("The last run stopped before it finished (its process ended); see its log.")
    if status.log_tail:
        with st.expander("Log of the latest run", expanded=status.running):
            st.code(ui.without_server_paths(status.log_tail), language="text")
