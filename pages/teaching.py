"""Teaching quiz: commit to a diagnosis, then see the reference, the model and similar cases."""

import numpy as np
import plotly.express as px
import streamlit as st

from app import prefetch, resources, teaching_panels, ui
from lesionlib import explain, imaging, teaching
from lesionlib.classes import CLASS_DESCRIPTIONS, CLASS_NAMES

TEST_SET = "ham10000_test"
KEYS = ("teaching_round", "teaching_position", "teaching_answers", "teaching_committed",
        "teaching_round_model", "teaching_round_number")

ui.require_user()
st.title("Teaching quiz")
st.caption(f"{ui.DISCLAIMER}. Cases come from the HAM10000 test split, which the models "
           "never saw in training. Decide first: the reference diagnosis, the model's answer, "
           "its heatmap and similar training cases appear only after you commit.")

model_id = ui.model_picker("Model to compare with", key="teaching_model_choice",
                           container=st.sidebar, seven_class_only=True)
if model_id is None:
    st.stop()
for name, default in zip(KEYS, (None, 0, [], False, None, 0)):
    st.session_state.setdefault(name, default)


def available_pool():
    """The quiz model's test-split cases whose images are here, or ``None`` (with a message)."""
    loaded = resources.quiz_pool(model_id, TEST_SET)  # built once per model version
    if loaded is None:
        st.warning(f"`{model_id}` has no stored test-split predictions, which the quiz draws its "
                   f"cases from. Run `python -m lesionlib evaluate --model {model_id}`.")
        return None
    if resources.dataset_dir() is None:
        st.info("The HAM10000 images are not here: rounds use the 21 bundled sample images "
                "(HAM10000 test split). Put the dataset in `../shared/data/ham10000` or set "
                "`LESIONLIB_DATA` for all 1,509 test cases.")
    return loaded


def start_round(pool) -> None:
    with st.form("teaching_setup"):
        st.markdown("**A new round**")
        classes = st.multiselect("Classes (empty: all)", CLASS_NAMES, key="teaching_classes",
                                 format_func=ui.class_label)
        difficulty = st.selectbox("Difficulty", list(teaching.DIFFICULTIES),
                                  format_func=teaching.DIFFICULTIES.get,
                                  key="teaching_difficulty",
                                  help=f"Judged by {model_id}'s stored test-split predictions.")
        length = st.number_input("Cases in the round", 1, 50, 10, key="teaching_length")
        submitted = st.form_submit_button("Start the round", type="primary")
    if not submitted:
        return
    chosen = teaching.filter_pool(pool, classes, difficulty)
    if chosen.empty:
        st.warning(f"No case here matches: {teaching.DIFFICULTIES[difficulty]} among "
                   f"{', '.join(classes) or 'all classes'} ({len(pool)} cases available). "
                   "Choose other classes or another difficulty.")
        return
    number = st.session_state["teaching_round_number"] + 1
    cases = teaching.draw_round(chosen, int(length), seed=int(np.random.default_rng().integers(
        2**31)))
    st.session_state.update(teaching_round=cases.to_dict("records"), teaching_position=0,
                            teaching_answers=[], teaching_committed=False,
                            teaching_round_model=model_id, teaching_round_number=number)
    if len(cases) < length:
        st.session_state["teaching_short_note"] = (
            f"Only {len(cases)} cases match; the round has {len(cases)}.")
    st.rerun()


def load_case(row, paths):
    try:
        return resources.case_from_file(paths[row["image_id"]], "dataset",
                                        case_id=row["image_id"])
    except (KeyError, imaging.ImageLoadError) as error:
        st.error(f"Case {row['image_id']} cannot be shown: {ui.error_message(error)}. "
                 "Skip it with 'Next case'.")
        return None


def ask(case, row, position: int, total: int) -> bool:
    """The hidden case and the answer form; returns whether the student just committed (the
    caller then draws the reveal in the same run: no second run of the page)."""
    st.subheader(f"Case {position + 1} of {total}")
    left, right = st.columns([2, 3])
    left.image(case.image, caption=f"Case {position + 1} (diagnosis hidden)", width="stretch")
    stored = resources.stored_reveal(case, round_model())  # computed ahead per model version
    if stored is None:
        prefetch.prefetch_reveal(case, round_model())  # ready by the time the student commits
    key = f"teaching_answer_{st.session_state['teaching_round_number']}_{position}"
    with right:
        answer = st.radio("Your diagnosis", CLASS_NAMES, index=None, key=key,
                          format_func=ui.class_label)
        if st.button("Commit my answer", type="primary", key=f"{key}_commit"):
            if answer is None:
                st.warning("Choose one of the seven diagnoses first, then commit.")
                return False
            result = stored.result if stored else ui.run_model(case, round_model())
            if result is None:
                return False
            st.session_state["teaching_answers"].append(
                teaching.answer_record(position + 1, row, answer, result.prediction))
            st.session_state["teaching_committed"] = True
            return True
    return False


def round_model() -> str:
    return st.session_state["teaching_round_model"] or model_id


def reveal(case, row, position: int, total: int) -> None:
    record = st.session_state["teaching_answers"][-1]
    stored = resources.stored_reveal(case, round_model())
    st.subheader(f"Case {position + 1} of {total}: the answer")
    left, right = st.columns([2, 3])
    left.image(case.image, caption=f"{row['image_id']}", width="stretch")
    with right:
        verdict = "right" if record["student_correct"] else "not right"
        st.markdown(f"You said **{ui.class_label(record['student'])}**: {verdict}.")
        st.success(f"Reference diagnosis: **{ui.class_label(record['reference'])}**, "
                   f"confirmed by {record['dx_type']}.")
        st.caption(CLASS_DESCRIPTIONS[record["reference"]])
        show_model_answer(case, stored)
    st.markdown("**What drove the model's answer**")
    answer_map = stored.heatmap if stored and stored.heatmap_class == resources.output_index(
        round_model(), record["model"]) else None
    ui.show_heatmap(case, round_model(), explain.METHODS[0], record["model"], 0.45,
                    precomputed=answer_map)
    st.markdown("**Similar training cases**")
    teaching_panels.similar_cases_panel(case, round_model(), key=f"teaching_{position}",
                                        stored=stored.neighbours if stored else None)
    if st.button("Next case" if position + 1 < total else "See my results", type="primary",
                 key=f"teaching_next_{st.session_state['teaching_round_number']}_{position}"):
        st.session_state.update(teaching_position=position + 1, teaching_committed=False)
        st.rerun()


def show_model_answer(case, stored) -> None:
    result = stored.result if stored else ui.run_model(case, round_model())
    if result is None:
        return
    card = resources.current_catalogue().cards[round_model()]
    st.markdown(f"**The model's answer** ({card.name})")
    ui.model_identity(card)
    if result.report.withheld:
        st.warning("The quality gate withholds this model's output in case review: "
                   + "; ".join(finding.message for finding in result.report.gate_failures)
                   + " Read the answer below with that in mind.", icon="⚠️")
    for finding in result.report.cautions:
        st.warning(f"Review carefully ({finding.code}): {finding.message}", icon="⚠️")
    prediction = result.prediction
    st.markdown(f"{ui.class_label(prediction.top_class)}, calibrated confidence "
                f"{100 * prediction.top_probability:.0f}%.")


def results() -> None:
    frame = teaching.round_frame(st.session_state["teaching_answers"])
    st.subheader("Your round")
    if frame.empty:
        st.info("No case was answered in this round.")
        return
    scores = teaching.score_round(frame)
    model = round_model()
    columns = st.columns(4)
    columns[0].metric("Your balanced accuracy", f"{scores['student_balanced_accuracy']:.2f}")
    columns[1].metric(f"{model}'s balanced accuracy", f"{scores['model_balanced_accuracy']:.2f}")
    columns[2].metric("Your accuracy", f"{scores['student_accuracy']:.2f}")
    columns[3].metric("Model's accuracy", f"{scores['model_accuracy']:.2f}")
    st.caption(f"{scores['cases']} cases. Balanced accuracy is the mean recall over the classes "
               "in the round, so rare classes count as much as nevi.")
    st.dataframe(teaching.per_class_recall(frame).round(2).rename(columns={
                     "class": "class", "cases": "cases", "student_recall": "your recall",
                     "model_recall": "model's recall"}), hide_index=True,
                 key="teaching_per_class")
    left, right = st.columns(2)
    for column, who, label in ((left, "student", "You"), (right, "model", model)):
        matrix = teaching.confusion(frame, who)
        column.plotly_chart(px.imshow(matrix, text_auto=True, color_continuous_scale="Blues",
                                      labels=dict(x=f"{label}: answer", y="reference",
                                                  color="cases"),
                                      title=f"Confusion matrix: {label}"),
                            key=f"teaching_confusion_{who}")
    st.download_button("Download the round (CSV)", teaching.round_csv(frame),
                       file_name=f"teaching_round_{st.session_state['teaching_round_number']}"
                       ".csv", mime="text/csv", key="teaching_download")
    st.dataframe(frame, hide_index=True, key="teaching_round_table")


loaded = available_pool()
if loaded is None:
    st.stop()
pool, paths, origin = loaded
st.caption(f"{len(pool):,} test-split cases available from {origin}.")
round_cases = st.session_state["teaching_round"]
if not round_cases:
    start_round(pool)
    st.stop()
note = st.session_state.pop("teaching_short_note", None)
if note:
    st.info(note)
position = st.session_state["teaching_position"]
if position >= len(round_cases):
    results()
    if st.button("New round", key="teaching_new_round"):
        st.session_state.update(teaching_round=None, teaching_answers=[])
        st.rerun()
    st.stop()
row = round_cases[position]
case = load_case(row, paths)
if case is None:
    if st.button("Next case", key=f"teaching_skip_{position}"):
        st.session_state["teaching_position"] = position + 1
        st.rerun()
    st.stop()
if not st.session_state["teaching_committed"]:
    question = st.empty()
    with question.container():
        committed = ask(case, row, position, len(round_cases))
    if not committed:
        st.stop()
    question.empty()  # the reveal replaces the question in this same run
reveal(case, row, position, len(round_cases))
