"""Reader study: readers commit a diagnosis on the image alone, then with AI support; the
read-out measures what the model does to them (``lesionlib.reader_study``)."""

import streamlit as st

from app import reader_study_panels as panels
from app import resources, ui
from lesionlib.reader_study import ReaderStudyError, StudyInputError

ui.require_user()
st.title("Reader study")
st.caption("How do readers decide with and without the model? Each case: your diagnosis on the "
           "image alone first, then the AI support assigned to you, then your final answer. The "
           "reference diagnoses are shown only at the end. "
           f"{ui.DISCLAIMER}.")

reader, admin = ui.reviewer_name(), ui.is_admin()
try:
    store = resources.reader_study_store()
    sections = ["Take part", "Results", "Create a study"] if admin else ["Take part"]
    section = st.radio("Section", sections, horizontal=True, key="reader_study_section",
                       label_visibility="collapsed")
    if section == "Create a study":
        panels.create_form(store, reader)
    elif section == "Results":
        studies = store.studies()
        if not studies:
            st.info("No study yet: create one under 'Create a study'.")
            st.stop()
        chosen = st.selectbox("Study", studies, format_func=lambda study: study.name,
                              key="reader_study_results_choice")
        panels.read_out(chosen, resources.reader_study_results(
            chosen, chosen.id, store.answers(chosen), store.experiences()),
            key="reader_study_all", export=True)
    else:
        joined = st.session_state.get("reader_study_joined")
        study = store.find(joined) if joined else None
        if study is None:
            name = st.text_input("Study name (given by the study's administrator)",
                                 key="reader_study_join_name")
            if st.button("Join the study", type="primary", key="reader_study_join"):
                if store.find(name) is None:
                    st.error("No study of that name here. Check the name with the study's "
                             "administrator.")
                else:
                    st.session_state["reader_study_joined"] = name
                    st.rerun()
            st.stop()
        st.markdown(f"**{ui.plain(study.name)}** · {ui.count(len(study.cases), 'case')} · you "
                    f"read as **{ui.plain(reader)}**")
        if not panels.experience_form(store, reader):
            st.stop()
        finished = panels.reading(store, study, reader)
        if finished:
            st.success(f"You have completed all {len(study.cases)} cases. Thank you. Your "
                       "results, with the reference diagnoses:")
        if finished or st.toggle("Show my results so far (the cases I have completed)",
                                 key="reader_study_own_results"):
            panels.read_out(study, resources.reader_study_results(
                study, study.id, store.answers(study, reader),
                {reader: store.experience(reader)}), key="reader_study_mine", export=False)
except (ReaderStudyError, StudyInputError) as error:
    st.error(ui.store_error_message(error) if isinstance(error, ReaderStudyError)
             else ui.error_message(error))
