"""Case review: one image through one model, with its heatmap, quality checks and feedback."""

import streamlit as st

from app import case_report_panels, feedback_panels, resources, teaching_panels, ui
from lesionlib import imaging
from lesionlib.classes import CLASS_DESCRIPTIONS

ui.require_user()
st.title("Case review")
st.caption(ui.DISCLAIMER)

ui.open_linked_case("case_review")
model_id = ui.model_picker("Model", key="case_review_model", container=st.sidebar)
case = ui.case_picker("case_review")
if model_id is None or case is None:
    st.stop()

result = ui.run_model(case, model_id)
if result is None:
    st.stop()
prediction = result.prediction
card = resources.current_catalogue().cards[model_id]

image_column, prediction_column = st.columns([2, 3])
with image_column:
    st.image(case.image, caption=f"{case.name} ({case.image.shape[1]}x{case.image.shape[0]} px)",
             width="stretch")
    metadata = ui.sample_metadata(case)
    if metadata.get("in_training_split"):
        st.warning("This image is in a training split (HAM10000, ISIC 2017 or BCN20000 train): "
                   "the models may have learned it, so their output on it is no test of them.")
    with st.expander("Case details (optional)"):
        st.caption("The models read the image only; these details are saved with your feedback.")
        known_age = metadata.get("age")
        age = st.number_input("Age", 0, 120, key=f"case_age_{case.sha256[:12]}",
                              value=int(known_age) if known_age == known_age and known_age
                              is not None else None)
        sexes = ["unknown", "female", "male"]
        sex = st.selectbox("Sex", sexes, key=f"case_sex_{case.sha256[:12]}",
                           index=sexes.index(metadata.get("sex")) if metadata.get("sex") in sexes
                           else 0)
        site = st.text_input("Body site", value=str(metadata.get("localization") or ""),
                             key=f"case_site_{case.sha256[:12]}")
    if metadata.get("dx"):
        with st.expander("Reveal the reference diagnosis (teaching)"):
            st.markdown(f"**{ui.class_label(metadata['dx'])}**, confirmed by "
                        f"{metadata.get('dx_type') or 'unknown'}.")
            st.caption(CLASS_DESCRIPTIONS.get(metadata["dx"], ""))

with prediction_column:
    st.subheader(f"Prediction of {card.name}")
    ui.model_identity(card)
    shown = ui.prediction_summary(prediction, result.report, result.members, card=card,
                                  key=f"case_review_{case.sha256[:12]}_{model_id}")
    if shown and not card.is_binary:  # a binary model has no seven-class bars
        st.plotly_chart(ui.probability_figure(prediction), key="case_review_probabilities")
if not shown:
    st.info("The heatmap and the feedback form follow the diagnosis: they appear when you ask "
            "to see the model's output.")
    st.stop()
unreliable = result.report.withheld

st.subheader("What drove the prediction")
if unreliable:
    ui.unreliable_banner()
method, class_name, opacity = ui.heatmap_controls(
    "case_review", "mel" if card.is_binary else prediction.top_class,
    context=f"{case.sha256[:12]}_{model_id}", class_names=card.class_names)
ui.show_heatmap(case, model_id, method, class_name, opacity)
if class_name in CLASS_DESCRIPTIONS:
    st.caption(f"About {class_name}: {CLASS_DESCRIPTIONS[class_name]}")

st.subheader("Feedback")
# Pre-filled details came from the dataset's record, not from the reviewer: say which is which.
known_details = {"age": metadata.get("age"), "sex": metadata.get("sex"),
                 "body_site": metadata.get("localization")}
entered, recorded = [], []
for name, value in (("age", age), ("sex", sex), ("body_site", site.strip())):
    if value in (None, "", "unknown"):
        continue
    prefilled = known_details[name]
    same = prefilled is not None and (str(value) == str(prefilled) or (
        name == "age" and isinstance(prefilled, float) and value == int(prefilled)))
    (recorded if same else entered).append(f"{name}={value}")
details = "; ".join(part for part in (
    f"entered by the reviewer: {', '.join(entered)}" if entered else "",
    f"from the dataset's record: {', '.join(recorded)}" if recorded else "") if part)
gate_note = ("Shown despite a failed quality gate: "
             + ", ".join(finding.code for finding in result.report.gate_failures)
             if unreliable else "")
feedback_panels.feedback_form(
    case.case_id, prediction, "case_review",
    key=f"case_review_feedback_{case.sha256[:12]}_{model_id}",
    image_sha256=case.sha256,
    image_png=(lambda: imaging.strip_metadata(case.image)) if case.source == "upload" else None,
    context="\n".join(part for part in (f"Case details: {details}" if details else "",
                                        gate_note) if part))

st.subheader("Download report")
case_report_panels.download_buttons(case, result, card, method, class_name, opacity,
                                    key=f"case_review_report_{case.sha256[:12]}_{model_id}")

st.subheader("Similar training cases")
teaching_panels.similar_cases_panel(case, model_id, key="case_review")
