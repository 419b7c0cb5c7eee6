"""Compare models: one image through several models side by side, then their test-split record."""

import plotly.express as px
import streamlit as st

from app import resources, ui
from lesionlib import caveats, evaluation, views
from lesionlib.classes import CLASS_NAMES

ui.require_user()
st.title("Compare models")
st.caption(ui.DISCLAIMER)

cards = resources.current_catalogue()
if not cards.cards:
    st.error(ui.NO_MODELS.format(folder=resources.weights_dir()))
    ui.show_catalogue_problems(cards)
    st.stop()
ui.show_catalogue_problems(cards)
options = sorted(cards.cards)
model_ids = st.multiselect("Models to compare (two or more)", options, default=options[:4],
                           key="compare_models",
                           format_func=lambda option: cards.cards[option].label)
if len(model_ids) < 2:
    st.info("Choose at least two models.")
    st.stop()

tab_case, tab_record = st.tabs(["Same image, several models", "Record on the test split"])

with tab_case:
    case = ui.case_picker("compare")
    if case is not None:
        results = {model_id: ui.run_model(case, model_id) for model_id in model_ids}
        usable = {model_id: result for model_id, result in results.items() if result is not None}
        withheld = [model_id for model_id, result in usable.items() if result.report.withheld]
        if withheld:
            reasons = "; ".join(sorted({finding.message for model_id in withheld
                                        for finding in usable[model_id].report.gate_failures}))
            st.error(f"**Withheld for {len(withheld)} of {len(usable)} models — the image "
                     f"failed their quality gate:** {reasons}", icon="⛔")
        shown = {model_id: result for model_id, result in usable.items()
                 if model_id not in withheld}
        if withheld and st.checkbox(ui.REVEAL_LABEL, key=f"compare_reveal_{case.sha256[:12]}"):
            ui.unreliable_banner()
            shown = usable
        marker = " (includes UNRELIABLE outputs)" if withheld and len(shown) == len(usable) else ""
        seven_class = [result.prediction for model_id, result in shown.items()
                       if not cards.cards[model_id].is_binary]
        if len(seven_class) < len(shown):  # a binary model: all meet on the melanoma question
            agree, chosen = views.melanoma_agreement([result.prediction
                                                      for result in shown.values()])
            if agree:
                st.success(f"On the melanoma question all {len(shown)} models shown agree: "
                           f"**{next(iter(chosen))}**{marker} (each at its own threshold).")
            else:
                st.error("On the melanoma question the models DISAGREE" + marker + ": "
                         + "; ".join(f"**{answer}** by {', '.join(models)}"
                                     for answer, models in chosen.items()))
        agree, chosen = views.agreement(seven_class)
        which = "seven-class models" if len(seven_class) < len(shown) else "models"
        if len(seven_class) >= 2 and agree:
            agreed = ui.class_label(next(iter(chosen)))
            st.success(f"All {len(seven_class)} {which} shown agree: **{agreed}**{marker}.")
        elif len(seven_class) >= 2:
            st.error(f"The {which} DISAGREE" + marker + ": " + "; ".join(
                f"**{name}** by {', '.join(models)}" for name, models in chosen.items()))
        method, class_name, opacity = ui.heatmap_controls(
            "compare", next(iter(shown.values())).prediction.top_class if shown else "mel",
            context=case.sha256[:12])
        for column, (model_id, result) in zip(st.columns(len(usable) or 1), usable.items()):
            with column:
                prediction = result.prediction
                st.markdown(f"**{cards.cards[model_id].name}**  \n`{model_id}` "
                            f"v{prediction.model_version}")
                unreliable = model_id in withheld
                if unreliable and model_id not in shown:
                    ui.quality_warnings(result.report)
                    st.caption("Diagnosis, melanoma flag and heatmap withheld.")
                    continue
                ui.quality_warnings(result.report, failures=unreliable)
                model_card = cards.cards[model_id]
                if not model_card.calibrated:
                    ui.not_evaluated_banner(model_card)
                suffix = " (UNRELIABLE)" if unreliable else ""
                if model_card.is_binary:
                    st.metric("Melanoma question" + suffix, "melanoma"
                              if prediction.melanoma_flag else "not melanoma")
                    ui.melanoma_box(prediction, model_card, unreliable)
                    st.caption(ui.BINARY_NOTE)
                    ui.show_heatmap(case, model_id, method,
                                    class_name if class_name in model_card.class_names
                                    else "mel", opacity, side_by_side=False)
                    continue
                st.metric("Top diagnosis" + suffix, prediction.top_class)
                flag = "ABOVE" if prediction.melanoma_flag else "below"
                calibrated = "calibrated" if model_card.calibrated else "NOT calibrated"
                st.caption(f"{suffix.strip()} {100 * prediction.top_probability:.1f}% {calibrated} "
                           f"confidence · melanoma {100 * prediction.melanoma_probability:.1f}% "
                           f"({flag} its threshold {100 * prediction.melanoma_threshold:.1f}%)"
                           .strip())
                st.caption(caveats.melanoma_caveat(cards.cards[model_id],
                                                   above=prediction.melanoma_flag))
                st.plotly_chart(ui.probability_figure(prediction, height=260),
                                key=f"compare_probabilities_{model_id}")
                ui.show_heatmap(case, model_id, method, class_name, opacity,
                                side_by_side=False)

with tab_record:
    set_name = st.selectbox("Evaluation set", list(evaluation.EVALUATION_SETS),
                            index=list(evaluation.EVALUATION_SETS).index("ham10000_test"),
                            format_func=lambda name: views.SET_TITLES.get(name, name),
                            key="compare_set")
    chosen_cards = [cards.cards[model_id] for model_id in model_ids]
    table = views.metrics_table(chosen_cards, set_name)
    if table.shape[1] <= 3:
        st.info("The model cards report no metrics on this set yet (run `python -m lesionlib "
                "evaluate`).")
    else:
        st.dataframe(table, hide_index=True)
    recall = views.per_class_recall(chosen_cards, set_name)
    if not recall.empty:
        st.plotly_chart(px.bar(recall, x="class", y="recall", color="model", barmode="group",
                               category_orders={"class": list(CLASS_NAMES)},
                               title="Per-class recall (sensitivity)", range_y=[0, 1]),
                        key="compare_recall")
    frames = {model_id: resources.stored_predictions(model_id, set_name)
              for model_id in model_ids}
    missing = [model_id for model_id, frame in frames.items() if frame is None]
    frames = {model_id: frame for model_id, frame in frames.items() if frame is not None}
    if missing:
        st.caption(f"No stored predictions on this set for: {', '.join(missing)}.")
    melanoma_question = any(cards.cards[model_id].is_binary for model_id in frames)
    if melanoma_question:  # a binary model answers melanoma or not: compare all on that
        frames = {model_id: views.melanoma_calls(frame, cards.cards[model_id].melanoma_threshold)
                  for model_id, frame in frames.items()}
        st.caption("A binary melanoma model is among them, so the models are compared on the "
                   "melanoma question: each answers \"mel\" at or above its own threshold and "
                   "\"other\" below it.")
    if len(frames) >= 2:
        st.markdown("**How often each pair of models gives a different "
                    + ("answer to the melanoma question**" if melanoma_question
                       else "top diagnosis**"))
        matrix = views.disagreement_matrix(frames)
        st.plotly_chart(px.imshow(matrix, text_auto=".1%", color_continuous_scale="Reds",
                                  zmin=0, zmax=max(0.01, float(matrix.to_numpy().max()))),
                        key="compare_disagreement")
        cases = views.disagreeing_cases(frames)
        st.markdown(f"**{len(cases)} images on which the models disagree** (of "
                    f"{len(views.side_by_side(frames))} they all scored)")
        st.dataframe(cases, hide_index=True)
        st.download_button("Download the disagreeing cases (CSV)",
                           cases.to_csv(index=False).encode(), f"disagreements_{set_name}.csv",
                           "text/csv", key="compare_download")
