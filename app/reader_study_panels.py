"""Drawing helpers of the Reader study page: creating a study, a reader's two steps per case, the
assigned AI support, and the read-out (logic and storage: ``lesionlib.reader_study``).

Nothing a reader sees before they finish reveals a case's reference diagnosis: images are drawn
from pixels (no file name or URL), captions say "Case n of N", and the AI's own answer is the only
diagnosis shown (as support).
"""

from __future__ import annotations

import secrets
import time

import pandas as pd
import streamlit as st

from app import resources, teaching_panels, ui
from lesionlib import explain, imaging, inference, reader_results, reader_study
from lesionlib.classes import CLASS_NAMES
from lesionlib.reader_study import StudyInputError

KEY = "reader_study"


# ----------------------------------------------------------------------------- setting up

def available_sources() -> dict[str, str]:
    """Case sources usable here: the bundled samples always, datasets when their folder is."""
    folders = resources.dataset_folders()
    present = {"samples": True, "ham10000_test": folders.get("ham10000") is not None,
               "isic2017": folders.get("isic2017") is not None,
               "ph2": folders.get("ph2") is not None,
               "bcn20000_test": folders.get("bcn20000") is not None, "folder": True}
    return {name: title for name, title in reader_study.CASE_SOURCES.items() if present[name]}


def create_form(store, admin_name: str) -> None:
    """The administrator's form for a new study; creates it (AI outputs computed) on submit."""
    sources = available_sources()
    model_id = ui.model_picker("Model whose support readers see", key=f"{KEY}_model",
                               seven_class_only=True)
    if model_id is None:
        return
    with st.form(f"{KEY}_create"):
        name = st.text_input("Study name (readers join by it)", key=f"{KEY}_new_name")
        source = st.selectbox("Cases from", list(sources), format_func=sources.get,
                              key=f"{KEY}_source")
        folder = st.text_input("Folder with a labels.csv (only for 'a folder')",
                               key=f"{KEY}_folder")
        count = st.number_input("Number of cases (balanced over the diagnoses present)", 1,
                                reader_study.MAX_CASES, 20, key=f"{KEY}_count")
        forms = st.multiselect("Forms of AI support to compare", list(reader_study.SUPPORT_FORMS),
                               default=["none", "probabilities"],
                               format_func=reader_study.SUPPORT_FORMS.get, key=f"{KEY}_forms")
        assignment = st.radio("How support forms are assigned", list(reader_study.ASSIGNMENTS),
                              format_func=reader_study.ASSIGNMENTS.get,
                              key=f"{KEY}_assignment")
        seed = st.number_input("Random seed (stored; the same seed gives the same study)", 0,
                               2**31 - 1, int(st.session_state.setdefault(
                                   f"{KEY}_default_seed", secrets.randbelow(2**31))),
                               key=f"{KEY}_seed")
        ask_management = st.checkbox("Ask for a management decision (excise / follow up / "
                                     "reassure)", value=True, key=f"{KEY}_ask_management")
        ask_confidence = st.checkbox("Ask for a confidence (1-5)", value=True,
                                     key=f"{KEY}_ask_confidence")
        submitted = st.form_submit_button("Create the study", type="primary")
    if not submitted:
        return
    try:
        folders = {**resources.dataset_folders(), "samples": resources.SAMPLE_DIR}
        cases = reader_study.case_list(source, folders, int(count), int(seed),
                                       folder=folder.strip() or None)
        with st.spinner(f"Computing the AI's answer on {len(cases)} cases..."):
            scored = reader_study.score_cases(resources.classifier(model_id), cases,
                                              resources.quality_checker(model_id).assess)
        card = resources.current_catalogue().cards[model_id]
        study = reader_study.new_study(name, card, source, forms, assignment, int(seed),
                                       ask_management, ask_confidence, scored, admin_name)
        study = store.create(study)
    except StudyInputError as error:
        st.error(f"The study was not created: {ui.error_message(error)}")
        return
    except ui.MODEL_ERRORS as error:
        st.error(f"Model `{model_id}` cannot be used: {ui.error_message(error)}")
        return
    st.success(f"Study **{ui.plain(study.name)}** created: {ui.count(len(study.cases), 'case')}, "
               f"support forms {', '.join(study.support_forms)}, model {study.model_id} "
               f"v{study.model_version}. Readers join it by its name on this page.")


# ----------------------------------------------------------------------------- reading

def experience_form(store, reader: str) -> bool:
    """Ask the reader's experience level once; returns whether it is recorded."""
    if store.experience(reader) is not None:
        return True
    st.markdown("**Before your first study: your experience level** (asked once, used only to "
                "split the results)")
    level = st.radio("I am a", reader_study.EXPERIENCE_LEVELS, index=None, horizontal=True,
                     key=f"{KEY}_experience")
    if st.button("Save my experience level", key=f"{KEY}_experience_save"):
        if level is None:
            st.warning("Choose one of the levels first.")
            return False
        store.set_experience(reader, level)
        st.rerun()
    return False


def _answer_inputs(study, key: str, first: dict | None = None) -> tuple:
    """Diagnosis, management and confidence inputs (pre-set to the first answer in step 2)."""
    first = first or {}
    answer = st.radio("Your diagnosis", CLASS_NAMES, key=f"{key}_answer",
                      index=CLASS_NAMES.index(first["answer"]) if first.get("answer") else None,
                      format_func=ui.class_label)
    management = confidence = None
    if study.ask_management:
        options = list(reader_study.MANAGEMENT)
        management = st.radio("Your management decision", options, horizontal=True,
                              key=f"{key}_management",
                              index=options.index(first["management"])
                              if first.get("management") in options else None)
    if study.ask_confidence:
        confidence = st.select_slider("Your confidence (1: a guess, 5: certain)",
                                      reader_study.CONFIDENCE_LEVELS,
                                      value=first.get("confidence") or 3,
                                      key=f"{KEY}_{key}_confidence")
    return answer, management, confidence


def _complete(study, answer, management) -> bool:
    if answer is None:
        st.warning("Choose one of the seven diagnoses first, then commit.")
        return False
    if study.ask_management and management is None:
        st.warning("Choose a management decision too, then commit.")
        return False
    return True


def _elapsed(key: str) -> float:
    """Seconds since this step was first drawn (kept across reruns)."""
    started = st.session_state.setdefault(key, time.monotonic())
    return time.monotonic() - started


def load_case(study, index: int):
    """The case's image as a ``CaseImage`` (pixels only reach the browser), or ``None``."""
    case = study.cases[index]
    try:
        return resources.case_from_file(case.file, "study", case_id=f"study-{study.id}-{index}")
    except imaging.ImageLoadError:
        st.error(f"Case {index + 1}'s image is not available on this server. Tell the study's "
                 "administrator.")
        return None


def reading(store, study, reader: str) -> bool:
    """The reader's current case (step 1 or 2); returns True once every case is done."""
    answers = store.answers(study, reader)
    state = reader_study.progress(study, answers, reader)
    total = len(state["plan"])
    if state["next"] is None:
        return True
    position, index, form = state["next"]
    st.progress(state["done"] / total, text=f"Case {position + 1} of {total}")
    case = load_case(study, index)
    if case is None:
        return False
    key = f"{KEY}_{study.id}_{index}"
    left, right = st.columns([2, 3])
    left.image(case.image, caption=f"Case {position + 1} of {total}", width="stretch")
    with right:
        if not state["awaiting_final"]:
            st.markdown("**Step 1: the image alone.** Commit your diagnosis before any AI "
                        "support is shown.")
            answer, management, confidence = _answer_inputs(study, f"{key}_first")
            if st.button("Commit my answer", type="primary", key=f"{key}_commit_first") \
                    and _complete(study, answer, management):
                store.record_first(study, reader, index, position, form, answer, management,
                                   confidence, _elapsed(f"{key}_t1"))
                st.rerun()
            _elapsed(f"{key}_t1")
            return False
        row = answers[answers["case_index"] == index].iloc[0]
        first = {"answer": row["first_answer"], "management": row["first_management"],
                 "confidence": None if pd.isna(row["first_confidence"])
                 else int(row["first_confidence"])}
        st.markdown(f"**Step 2: with AI support** ({reader_study.SUPPORT_FORMS[form]}). Your "
                    f"first answer: **{ui.class_label(first['answer'])}**. Keep it or revise it.")
        answer, management, confidence = _answer_inputs(study, f"{key}_final", first)
        if st.button("Commit my final answer", type="primary", key=f"{key}_commit_final") \
                and _complete(study, answer, management):
            store.record_final(study, reader, index, answer, management, confidence,
                               _elapsed(f"{key}_t2"))
            st.rerun()
        _elapsed(f"{key}_t2")
    support(study, study.cases[index], case, form, key)
    return False


# ----------------------------------------------------------------------------- AI support

def _prediction(study, case) -> inference.Prediction:
    probabilities = {name: float(case.ai_probabilities.get(name, 0.0)) for name in CLASS_NAMES}
    return inference.Prediction(
        model_id=study.model_id, model_version=study.model_version, model_name=study.model_name,
        intended_use=study.intended_use, probabilities=probabilities, top_class=case.ai_answer,
        top_probability=probabilities[case.ai_answer],
        melanoma_probability=case.ai_melanoma_probability,
        melanoma_threshold=study.melanoma_threshold)


def support(study, case, image, form: str, key: str) -> None:
    """The assigned AI support for a case, with the model, its version and intended use."""
    st.divider()
    st.caption(f"AI support from **{study.model_name}** ({study.model_id} v{study.model_version}"
               f"), computed when the study was created. Intended use: "
               f"{study.intended_use.rstrip('.')}.")
    if case.ai_warning:
        st.warning(f"The model's quality checks on this image: {ui.plain(case.ai_warning)}",
                   icon="⚠️")
    prediction = _prediction(study, case)
    live = resources.current_catalogue().cards.get(study.model_id)
    changed = live is None or live.version != study.model_version
    if form in ("probabilities", "heatmap", "all"):
        st.markdown(f"**The AI's answer: {ui.class_label(prediction.top_class)}**, calibrated "
                    f"confidence {100 * prediction.top_probability:.0f}%.")
        st.plotly_chart(ui.probability_figure(prediction, height=260), key=f"{key}_bars")
        ui.melanoma_box(prediction, None if changed else live)  # with the other-clinic caveat
    if form in ("heatmap", "similar", "all") and changed:
        st.warning(f"{study.model_id} v{study.model_version} is no longer the live model here, "
                   "so its heatmap and similar cases cannot be shown; tell the study's "
                   "administrator.")
        return
    if form in ("heatmap", "all"):
        st.markdown("**Where the AI looked**")
        ui.show_heatmap(image, study.model_id, explain.METHODS[0], prediction.top_class, 0.45)
    if form in ("similar", "all"):
        st.markdown("**Similar training cases** (their diagnoses are references to compare with)")
        teaching_panels.similar_cases_panel(image, study.model_id, key=f"{key}_similar")


# ----------------------------------------------------------------------------- results

def _with_interval(frame: pd.DataFrame) -> pd.DataFrame:
    """Score frames as "0.62 (0.51-0.73)" per who, for reading."""
    if frame.empty:
        return frame
    shown = pd.DataFrame({"group": frame["group"]} if "group" in frame else {})
    shown["measure"] = frame["metric"]
    for who, title in (("before", "reader before AI"), ("after", "reader after AI"),
                       ("ai", "AI alone")):
        shown[title] = [f"{value:.2f} ({low:.2f}-{high:.2f})" if pd.notna(value) else "—"
                        for value, low, high in zip(frame[who], frame[f"{who}_low"],
                                                    frame[f"{who}_high"])]
    shown["readings"] = frame["answers"]
    shown["cases"] = frame["cases"]
    shown["readers"] = frame["readers"]
    return shown


def _switch_table(switches):
    """The switch counts as text, "— (AI not shown)" where the AI's answer was not shown.

    One column holding both numbers and text cannot be drawn (Arrow wants one type a column).
    """
    shown = switches.copy()
    for column in ("followed_wrong_ai", "switched_to_wrong_ai"):
        shown[column] = [("— (AI not shown)" if value is None or value != value
                          else str(int(value))) for value in shown[column]]
    return shown


def read_out(study, read_out: dict, key: str, export: bool) -> None:
    """The results of a study (or of one reader), with the CSV export for administrators."""
    st.markdown(read_out["summary"])
    if read_out["table"].empty:
        return
    st.markdown("**Balanced accuracy and melanoma sensitivity / specificity** (95% bootstrap "
                "intervals: cases resampled, and readers too when there are several)")
    st.dataframe(_with_interval(read_out["overall"]), hide_index=True, key=f"{key}_overall")
    for title, part in (("By whether the AI was right", "by_ai"),
                        ("By form of AI support", "by_form"),
                        ("By experience level", "by_experience")):
        st.markdown(f"**{title}**")
        st.dataframe(_with_interval(read_out[part]), hide_index=True, key=f"{key}_{part}")
    st.markdown("**Switches after AI support** (helped: wrong to right; misled: right to wrong; "
                "with the AI wrong, how often readers ended on its answer or switched to it)")
    st.dataframe(_switch_table(read_out["switches"]).rename(columns={
        "support_form": "support", "answers": "readings", "followed_wrong_ai":
        "ended on the wrong AI answer", "switched_to_wrong_ai": "switched to it",
        "ai_wrong": "AI wrong"}), hide_index=True, key=f"{key}_switches")
    management = read_out["management"]
    if management["melanomas"]:
        st.markdown(f"**Melanomas the reader would have reassured**: "
                    f"{management['reassured_before']} of {management['melanomas']} before AI "
                    f"support, {management['reassured_after']} after.")
    if export:
        st.download_button("Download every answer (CSV, pseudonymous readers)",
                           reader_results.export_csv(study, read_out["table"]),
                           file_name=f"reader_study_{study.id}.csv", mime="text/csv",
                           key=f"{key}_download")
