"""Models: every model card, written out for a reader."""

import json

import streamlit as st

from app import (faithfulness_panels, import_panels, resources, retraining_panels,
                 teaching_panels, ui)
from lesionlib import edge, views
from lesionlib.cards import normalise_command, reproduce_steps

user = ui.require_user()
st.title("Models")
cards = resources.current_catalogue()
ui.show_catalogue_problems(cards)
if not cards.cards:
    st.error(ui.NO_MODELS.format(folder=resources.weights_dir()))
    st.stop()

default = cards.default_id()
# The server's folders are for administrators; a reviewer needs only the count.
where = f" in `{resources.weights_dir()}`" if ui.is_admin(user) else " installed"
st.caption(f"{len(cards.cards)} models{where}. The dashboard uses **{default}** by default.")
summary = views.metrics_table(list(cards.cards.values()), "ham10000_test")
if summary.shape[1] > 3:
    st.markdown("**At a glance, on the HAM10000 test split**")
    st.dataframe(summary, hide_index=True)
faithfulness_panels.overview(cards.cards)

retraining_panels.retraining_panel(cards, ui.reviewer_name(user), ui.is_admin(user))
if ui.is_admin(user):
    import_panels.import_form(ui.reviewer_name(user))

for model_id, card in sorted(cards.cards.items()):
    with st.expander(card.label, expanded=model_id == default):
        if card.description:
            st.write(card.description)
        st.info(f"**Intended use.** {card.intended_use}", icon="ℹ️")
        left, right = st.columns(2)
        with left:
            st.markdown("**Model**")
            st.markdown(f"- id `{card.id}`, version {card.version}, {card.kind}\n"
                        f"- answers: {card.task}\n"
                        f"- architecture: {card.architecture}\n"
                        + (f"- members: {', '.join(f'`{member}`' for member in card.members)}\n"
                           if card.members else f"- input: {card.input_size} px\n")
                        + f"- preprocessing: {card.preprocessing}")
        with right:
            st.markdown("**Calibration and operating point**")
            st.markdown(f"- temperature {card.temperature:.3f} — {card.temperature_method}\n"
                        f"- melanoma threshold {card.melanoma_threshold:.3f} — "
                        f"{card.threshold_method}")
        if card.kind == "edge":
            st.markdown("**Edge model**")
            st.markdown("\n".join(f"- {line}" for line in edge.summary_lines(card)))
            parity = edge.parity_frame(card)
            if not parity.empty:
                st.caption("Against the parent Keras model (reports/edge_export.md)")
                st.dataframe(parity, hide_index=True)
        if card.kind in ("single", "ensemble"):
            retraining_panels.version_history(card, ui.is_admin(user))
        st.markdown("**Training data and recipe**")
        st.json(card.training, expanded=False)
        metrics = views.card_metrics_rows(card)
        st.markdown("**Measured performance**")
        if metrics.empty:
            st.caption("The card reports no metrics yet.")
        else:
            st.dataframe(metrics, hide_index=True)
            per_class = views.card_per_class(card)
            if not per_class.empty:
                st.caption("Per class, HAM10000 test split")
                st.dataframe(per_class, hide_index=True)
        faithfulness_panels.model_section(card, cards.cards, key=model_id)
        teaching_panels.retrieval_performance(card)
        st.markdown("**Limitations**")
        st.markdown("\n".join(f"- {limitation}" for limitation in card.limitations)
                    or "None stated.")
        st.markdown(f"**Licence.** {card.licence}")
        st.markdown("**Reproduce** (from the repository root)")
        if card.reproduce:
            st.caption(f"Every step, in order. Pasted as they are, `package` and `ensemble` "
                       f"refuse to overwrite the live version {card.version}: add `--version` "
                       "with a new number to replace it, or `--weights <another folder>` to "
                       "every step to rebuild it beside the live model.")
            for step, command in reproduce_steps(card):
                st.caption(step)
                st.code(normalise_command(command) if isinstance(command, str)
                        else json.dumps(command), language="bash")
        else:
            st.caption("No reproduce commands recorded.")
