"""The Models page's "Import a model for audit" form (administrators): the same declarations
as ``python -m lesionlib import-model``, run with its evaluation as a background job."""

from __future__ import annotations

import os
import re
from pathlib import Path

import streamlit as st

from app import resources, ui
from lesionlib import model_import, model_versions, retraining_job
from lesionlib.classes import CLASS_NAMES

MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,80}$")
TASKS = {"seven": "seven HAM10000 classes", "binary": "melanoma vs the rest (binary)"}
MELANOMA_OUTPUTS = {"single": "its single output (a sigmoid)", "0": "output 0 of two (softmax)",
                    "1": "output 1 of two (softmax)"}


def import_form(user_name: str) -> None:
    """Upload (or name on the server) a .keras file, declare what it cannot say, start."""
    st.subheader("Import a model for audit")
    st.caption("A seven-class or binary melanoma Keras classifier trained elsewhere, checked "
               "in Keras safe mode "
               "(Lambda layers and custom code are refused), rebuilt for heatmaps, then "
               "evaluated on the fixed sets and given its quality gate in the background. Its "
               "card shows what you declare here as declared, and what is measured as measured.")
    if retraining_job.status(resources.weights_dir()).running:
        st.caption("A background job is running; an import can start when it ends.")
        return
    with st.form("import_model_form"):
        upload = st.file_uploader("Keras model file (.keras)", type=["keras"],
                                  key="import_model_upload")
        server_path = st.text_input("...or its path on the server", key="import_model_path")
        model_id = st.text_input("Model id (lower case, e.g. resnet50.clinic_a)",
                                 key="import_model_id")
        name = st.text_input("Display name", key="import_model_name")
        task = st.radio("What the model answers", list(TASKS), format_func=TASKS.get,
                        horizontal=True, key="import_model_task")
        classes = st.text_input("Order of the model's seven outputs (seven-class models)",
                                ",".join(CLASS_NAMES), key="import_model_classes")
        melanoma_output = st.selectbox(
            "Its melanoma output (binary models)", list(MELANOMA_OUTPUTS),
            format_func=MELANOMA_OUTPUTS.get, key="import_model_melanoma_output")
        scaling = st.selectbox("Input the model expects", list(model_import.SCALINGS),
                               format_func=lambda key: model_import.SCALINGS[key][2],
                               key="import_model_scaling")
        training_data = st.text_input("Training data (as you declare it)",
                                      key="import_model_training")
        licence = st.text_input("Licence (as you declare it)", key="import_model_licence")
        submitted = st.form_submit_button("Import and evaluate")
    if submitted:
        _start(upload, server_path.strip(), model_id.strip(), name.strip(), classes, scaling,
               training_data.strip(), licence.strip(), user_name,
               melanoma_output if task == "binary" else None)


def _start(upload, server_path: str, model_id: str, name: str, classes: str, scaling: str,
           training_data: str, licence: str, user_name: str,
           melanoma_output: str | None = None) -> None:
    """``melanoma_output``: ``None`` for a seven-class model, else a ``MELANOMA_OUTPUTS`` key."""
    if not MODEL_ID.match(model_id) or not name:
        st.error("Give a model id (2-80 lower-case letters, digits, '.', '_' or '-') and a "
                 "display name.")
        return
    if melanoma_output is None:
        try:
            declared = ["--classes", ",".join(model_import.parse_classes(classes))]
        except model_import.ImportRefused as error:
            st.error(ui.error_message(error))
            return
    else:
        declared = ["--binary-melanoma"] + ([] if melanoma_output == "single"
                                            else ["--melanoma-output", melanoma_output])
    weights = resources.weights_dir()
    if upload is not None:
        staging = model_versions.retraining_root(weights) / "imports"
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / f"{model_id}.keras"
        path.write_bytes(upload.getvalue())
    elif server_path and Path(server_path).is_file():
        path = Path(server_path)
    else:
        st.error("Upload a .keras file, or give the path of one on the server.")
        return
    options = [str(path), "--name", name, *declared, "--scaling", scaling]
    options += ["--training-data", training_data] if training_data else []
    options += ["--licence", licence] if licence else []
    try:
        pid = retraining_job.start(weights, model_id, user_name, options, env={**os.environ},
                                   command="import-model")
    except retraining_job.JobRunning as error:
        st.error(str(error))
        return
    st.success(f"Importing {model_id} in the background (process {pid}): it is checked, "
               "evaluated and gated; the progress and log appear under Retraining above, and "
               "the model in the list below when it is done.")
