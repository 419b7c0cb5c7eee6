"""Performance and error audit of one model on one evaluation set, from its stored predictions."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import audit_panels, faithfulness_panels, resources, ui
from lesionlib import evaluation, subgroups, views
from lesionlib.classes import CLASS_NAMES

ui.require_user()
st.title("Performance and error audit")
st.caption("Computed from the predictions stored with each model on data it never trained or was "
           "calibrated on; no model is run except for heatmaps in the error browser.")

# The pickers sit above the tabs, not in the narrow sidebar (at 1024 px it cut the model's name).
picker_column, set_column = st.columns([3, 2])
model_id = ui.model_picker("Model", key="audit_model", container=picker_column)
if model_id is None:
    st.stop()
card = resources.current_catalogue().cards[model_id]
sets = evaluation.available_prediction_sets(card)
if not sets:
    st.warning(f"`{model_id}` ships no stored predictions (`predictions/<set>.csv` in its "
               "folder), so there is nothing to audit. Run `python -m lesionlib evaluate` with "
               "the datasets in `../shared/data/` to create them.")
    st.stop()
set_name = set_column.selectbox("Evaluation set", sets, key="audit_set",
                                index=sets.index("ham10000_test") if "ham10000_test" in sets else 0,
                                format_func=lambda name: views.SET_TITLES.get(name, name))
frame = resources.stored_predictions(model_id, set_name)
if card.is_binary:  # melanoma vs the rest: audited on that question alone
    st.markdown(f"**{card.label}** on **{views.SET_TITLES.get(set_name, set_name)}**: "
                f"{len(frame):,} images. Melanoma threshold {card.melanoma_threshold:.3f} "
                f"({card.threshold_method}).")
    audit_panels.binary_audit(card, frame, set_name)
    st.stop()
labelled = views.labelled(frame)
st.markdown(f"**{card.label}** on **{views.SET_TITLES.get(set_name, set_name)}**: "
            f"{len(frame):,} images, {len(labelled):,} with one of the seven classes as "
            f"reference. Melanoma threshold {card.melanoma_threshold:.3f} "
            f"({card.threshold_method}).")

ui.wrap_tabs()  # ten tabs: on a 1024 px screen they wrap onto a second line, none hidden
tabs = st.tabs(["Confusion matrix", "Per class", "ROC curves", "Calibration", "Subgroups",
                "Error browser", "Heatmaps on the lesion", "Embedding map", "Label issues",
                "Robustness"])

with tabs[6]:  # heatmap faithfulness on PH2
    faithfulness_panels.audit_section(card, resources.current_catalogue().cards,
                                      key=f"audit_faithfulness_{model_id}")

with tabs[0]:
    counts = views.confusion_counts(frame)
    normalised = st.toggle("Row-normalised (each row sums to 100%: recall per true class)",
                           value=True, key="audit_normalised")
    values = views.normalise_rows(counts) if normalised else counts
    figure = px.imshow(values, x=list(CLASS_NAMES), y=list(CLASS_NAMES),
                       text_auto=".0%" if normalised else "d", color_continuous_scale="Blues",
                       labels={"x": "predicted", "y": "true", "color": "share" if normalised
                               else "images"})
    st.plotly_chart(figure, key="audit_confusion")

with tabs[1]:
    table = views.per_class_table(frame)
    st.dataframe(table, hide_index=True, column_config={
        name: st.column_config.NumberColumn(format="%.3f") for name in ("precision", "recall",
                                                                        "f1")})
    st.caption("Recall is sensitivity for that class; support is the number of true cases.")

with tabs[2]:
    has_all_classes = set_name.startswith(evaluation.SEVEN_CLASS_PREFIXES)
    roc = views.roc_table(frame, CLASS_NAMES if has_all_classes else ("mel",))
    if roc.empty:
        st.info("This set has a single outcome, so no ROC curve can be drawn.")
    else:
        figure = px.line(roc, x="false_positive_rate", y="true_positive_rate", color="curve",
                         hover_data=["threshold"], title="One-vs-rest ROC" if has_all_classes
                         else "Melanoma vs the rest")
        figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                    line=dict(dash="dot", color="grey")))
        point = views.operating_point(frame, card.melanoma_threshold)
        if point is not None:
            figure.add_trace(go.Scatter(
                x=[point["false_positive_rate"]], y=[point["true_positive_rate"]],
                mode="markers", name=f"melanoma operating point (≥ {point['threshold']:.3f})",
                marker=dict(symbol="x", size=14, color="black", line=dict(width=2)),
                hovertemplate="threshold %{customdata:.3f}<br>sensitivity %{y:.3f}<br>"
                              "1 − specificity %{x:.3f}<extra></extra>",
                customdata=[point["threshold"]]))
        st.plotly_chart(figure, key="audit_roc")
        if point is not None:
            st.caption(f"The black cross marks the melanoma operating threshold "
                       f"{point['threshold']:.3f} that the dashboard uses, chosen on the "
                       f"HAM10000 validation split ({card.threshold_method}): on this set it "
                       f"gives sensitivity {point['true_positive_rate']:.2f} and specificity "
                       f"{1 - point['false_positive_rate']:.2f}.")

with tabs[3]:
    curve = views.reliability_table(frame)
    if curve.empty:
        st.info("No labelled predictions to draw a reliability diagram.")
    else:
        figure = go.Figure([
            go.Bar(x=curve["confidence"], y=curve["accuracy"], width=0.08, name="accuracy",
                   customdata=curve["count"], hovertemplate="confidence %{x:.2f}<br>accuracy "
                   "%{y:.2f}<br>%{customdata} images"),
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                       line=dict(dash="dot", color="grey"))])
        figure.update_layout(xaxis_title="mean confidence (top class)", yaxis_title="accuracy",
                             xaxis_range=[0, 1], yaxis_range=[0, 1])
        st.plotly_chart(figure, key="audit_reliability")
        report = card.metrics.get(set_name, {})
        if report.get("ece") is not None:
            st.caption(f"Expected calibration error {report['ece']:.3f} after temperature "
                       f"scaling (T = {card.temperature:.2f}).")

with tabs[4]:
    subgroup_frame = resources.subgroup_frame(model_id, set_name)
    columns = subgroups.available(subgroup_frame)
    if not columns:
        st.info("No patient metadata (age, sex, body site) is available for this set here. "
                "HAM10000's travels with the stored predictions; ISIC 2017's age and sex are "
                "read from `../shared/data/isic2017` when present; PH2 has none.")
    else:
        column = st.selectbox("Subgroup", columns, key="audit_subgroup",
                              format_func=lambda name: views.SUBGROUP_TITLES.get(name, name))
        table = resources.subgroup_table(model_id, set_name, column,
                                         card.melanoma_threshold)
        st.dataframe(subgroups.readable_table(table), hide_index=True)
        metric = st.selectbox("Chart", list(subgroups.METRICS), key="audit_subgroup_metric",
                              format_func=subgroups.METRICS.get)
        scored = table.dropna(subset=[metric])
        if not scored.empty:
            figure = px.bar(scored, x="group", y=metric, text="n", range_y=[0, 1.05],
                            error_y=scored[f"{metric}_high"] - scored[metric],
                            error_y_minus=scored[metric] - scored[f"{metric}_low"],
                            category_orders={"group": list(scored["group"])},
                            labels={"group": views.SUBGROUP_TITLES.get(column, column),
                                    metric: subgroups.METRICS[metric]},
                            title=f"{subgroups.METRICS[metric]} per group, with 95% intervals "
                                  "(n on the bars)")
            figure.update_traces(textposition="inside", insidetextanchor="start")
            st.plotly_chart(figure, key="audit_subgroup_chart")
        st.caption(f"In brackets: 95% bootstrap confidence intervals "
                   f"({subgroups.DEFAULT_RESAMPLES:,} resamples of each group's images, seed "
                   f"{subgroups.DEFAULT_SEED}). Melanoma "
                   f"sensitivity and specificity are at the threshold "
                   f"{card.melanoma_threshold:.3f}. Groups with fewer than "
                   f"{subgroups.MIN_GROUP_SIZE} images are listed but not scored, and melanoma "
                   f"sensitivity and AUC need {subgroups.MIN_MELANOMAS} melanomas in the group; "
                   "wide intervals mean too few images to compare groups.")
        if set_name == "isic2017":
            st.caption("ISIC 2017 records age and sex for its validation images only: its 600 "
                       "test images fall in `unknown`.")

with tabs[5]:
    left, middle, right = st.columns(3)
    true_classes = left.multiselect("True class", CLASS_NAMES, key="audit_true")
    predicted_classes = middle.multiselect("Predicted class", CLASS_NAMES, key="audit_predicted")
    sort_by = right.selectbox("Sort by", ["confidence", "true_class_probability"],
                              key="audit_sort", format_func=lambda name: {
                                  "confidence": "confidence in the wrong answer",
                                  "true_class_probability": "probability of the true class"}[name])
    errors = views.error_list(labelled, true_classes, predicted_classes, sort_by,
                              descending=sort_by == "confidence")
    export = views.error_export(errors, card.id, card.version, set_name)
    st.markdown(f"**{len(errors):,} misclassified images** match. Click a row to open the "
                "case.")
    # keyed by the filters, so a new list starts with no row selected
    selection = st.dataframe(
        export, hide_index=True, height=260, on_select="rerun", selection_mode="single-row",
        key=ui.error_table_key(model_id, set_name, true_classes, predicted_classes, sort_by))
    st.download_button("Export the error list (CSV)", export.to_csv(index=False).encode(),
                       f"errors_{model_id}_{set_name}.csv", "text/csv", key="audit_export")
    chosen = [index for index in selection.selection.rows if 0 <= index < len(errors)]
    if not errors.empty and not chosen:
        st.info("Select a row of the table (the box at its left) to open that case: its "
                "image, heatmap, every model's output and the feedback form.")
    if chosen:
        row = errors.iloc[chosen[0]]
        st.subheader(f"Case {row['image_id']}")
        audit_panels.case_panel(row, model_id, set_name, key="audit")

with tabs[7]:
    audit_panels.embedding_map_section(model_id)

with tabs[8]:
    audit_panels.label_issues_section(model_id)

with tabs[9]:
    audit_panels.robustness_section(card)
