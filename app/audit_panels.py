"""Sections of the Performance and error audit page: one case, the embedding map, label issues.

Drawing only: the numbers come from ``lesionlib.embedding_map`` and ``lesionlib.label_audit``
through the caches in ``app.resources``. Every section explains what it shows before it shows
it, and says what is missing (a map not computed, a stale map, no dataset images) in words.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app import feedback_panels, resources, ui
from lesionlib import embedding_map, imaging, inference, label_audit, views
from lesionlib.classes import CLASS_NAMES

MAP_CASE_KEY = "audit_map_case"
GALLERY_SIZE = 8


# ----------------------------------------------------------------------------- one case

def case_panel(row: pd.Series, model_id: str, set_name: str, key: str, context: str = "") -> None:
    """A stored case: the image, the quality gate, its metadata, every model's stored output,
    a heatmap of ``model_id`` and the feedback form (as in the error browser).

    ``row`` is a stored-prediction row of ``model_id`` on ``set_name`` (``image_id``,
    ``set_folder``, ``file``, ``true_class``, ``prediction``, the class probabilities...).
    """
    card = resources.current_catalogue().cards[model_id]
    image_id = str(row["image_id"])
    path = resources.dataset_image_path(row["set_folder"], row["file"])
    case, result = None, None
    if path is None:
        st.info(f"The image is not available here (needs the `{row['set_folder']}` dataset "
                "folder in `../shared/data/` or `LESIONLIB_DATA`), so the quality gate could "
                "not be run on it.")
    else:
        try:
            case = resources.case_from_file(path, "dataset", case_id=image_id)
        except imaging.ImageLoadError as error:
            st.error(ui.error_message(error))
        else:
            result = ui.run_model(case, model_id)
            st.page_link("pages/case_review.py", label=f"Open {image_id} in Case review",
                         icon=":material/search:",
                         query_params={"case": image_id, "model": model_id})
    report = result.report if result is not None else None
    if not ui.output_allowed(report, key=f"{key}_{model_id}_{image_id}"):
        st.image(case.image, caption=f"{image_id} (reference: {row['true_class']})",
                 width="stretch")
        st.info("The stored prediction, every model's output, the heatmap and the feedback "
                "form appear when you ask to see the model's output.")
        return
    if report is not None and report.withheld:
        ui.unreliable_banner()
    if report is not None:
        ui.quality_warnings(report, failures=False)
    details = {name: row[name] for name in ("true_class", "prediction", "confidence", "age",
                                            "sex", "localization", "dx_type", "dataset",
                                            "lesion_id") if name in row.index}
    info_column, image_column = st.columns([2, 3])
    with info_column:
        st.markdown("\n".join(f"- **{label}**: {ui.plain(value)}"
                               for label, value in views.case_detail_lines(details)))
        st.markdown("**Every model's stored output on this image**")
        frames = {other: resources.stored_predictions(other, set_name)
                  for other in resources.current_catalogue().cards}
        st.dataframe(views.case_outputs({name: frame for name, frame in frames.items()
                                         if frame is not None}, image_id), hide_index=True)
    with image_column:
        if case is not None:
            method, class_name, opacity = ui.heatmap_controls(
                f"{key}_heatmap", "mel" if card.is_binary else row["prediction"],
                context=f"{model_id}_{image_id}", class_names=card.class_names)
            ui.show_heatmap(case, model_id, method, class_name, opacity)
    stored = inference.to_predictions(card, row[list(card.class_names)].to_numpy(float)[None])[0]
    gate_note = ("; shown despite a failed quality gate: " + ", ".join(
        finding.code for finding in report.gate_failures)
        if report is not None and report.withheld else "")
    feedback_panels.feedback_form(
        image_id, stored, "error_browser", key=f"{key}_feedback_{model_id}_{image_id}",
        image_sha256=case.sha256 if case is not None else None,
        default_verdict=None,  # a known error or suspect: no one-click "Agree"
        context=f"Set: {set_name}; reference: {row['true_class']}{context}" + gate_note)


def stored_row(model_id: str, set_name: str, image_id: str) -> pd.Series | None:
    """``model_id``'s stored prediction row for one image (``None`` if it has none)."""
    frame = resources.stored_predictions(model_id, set_name)
    if frame is None:
        return None
    match = frame[frame["image_id"] == image_id]
    return None if match.empty else match.iloc[0]


# ----------------------------------------------------------------------------- embedding map

def selected_image_id(event) -> str | None:
    """The image id of the first point selected on the map (``customdata[0]``), else ``None``."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or ():
        custom = point.get("customdata") if isinstance(point, dict) else None
        if custom:
            return str(custom[0] if isinstance(custom, (list, tuple)) else custom)
    return None


def map_figure(frame: pd.DataFrame, colour_by: str):
    """The map as a plotly scatter, one colour per value of ``colour_by``."""
    order = {"true_class": list(CLASS_NAMES), "prediction": list(CLASS_NAMES),
             "correctness": ["correct", "wrong", "no prediction"],
             "dx_type": list(label_audit.DX_TYPE_ORDER)}
    figure = px.scatter(
        frame, x="x", y="y", color=colour_by, custom_data=["image_id"],
        category_orders={colour_by: order.get(colour_by, sorted(frame[colour_by].unique()))},
        hover_data={"image_id": True, "true_class": True, "prediction": True, "dx_type": True,
                    "dataset": True, "x": False, "y": False},
        labels={colour_by: embedding_map.COLOUR_OPTIONS[colour_by]}, height=560,
        render_mode="svg")  # SVG points: a click selects one reliably (1,509 points draw fast)
    figure.update_traces(marker=dict(size=6, opacity=0.8))
    figure.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False),
                         margin=dict(l=0, r=0, t=10, b=0),
                         # "zoom", not "select": with the select drag mode a click selects
                         # nothing in Streamlit, so clicking a point opened no case
                         dragmode="zoom")
    return figure


def embedding_map_section(model_id: str) -> None:
    """The test split laid out by the model's features; a selected point opens its case."""
    st.caption("Each point is a HAM10000 test-split image, placed by t-SNE so that images the "
               "model represents alike lie close together. Only neighbourhoods carry meaning: "
               "distances between groups and the size of a group do not. Click a point (or "
               "pick an image below) to open the case.")
    try:
        result, embedder = resources.embedding_map(model_id)
    except (embedding_map.MapMissingError, embedding_map.StaleMapError) as error:
        st.warning(ui.error_message(error))
        return
    except ui.MODEL_ERRORS + (ValueError,) as error:
        st.error(f"The embedding map cannot be used: {ui.error_message(error)}")
        return
    scores = result.metrics
    st.markdown(
        f"Features of **{embedder.id}** v{embedder.version} (`{result.feature_layer}`), "
        f"{len(result):,} images; colours from **{model_id}**'s stored test predictions. "
        f"Trustworthiness {scores.get('trustworthiness', float('nan')):.3f} (k="
        f"{scores.get('k')}; 1 = every neighbour on the map is a neighbour in feature space); "
        f"same-class share of the {scores.get('k')} nearest: "
        f"{scores.get('class_precision_at_k_features', float('nan')):.2f} in feature space, "
        f"{scores.get('class_precision_at_k_map', float('nan')):.2f} on the map.")
    frame = embedding_map.with_predictions(
        result.frame(), resources.stored_predictions(model_id, result.set_name))
    colour_by = st.selectbox("Colour by", list(embedding_map.COLOUR_OPTIONS), key="audit_map_colour",
                             format_func=lambda name: embedding_map.COLOUR_OPTIONS[name])
    event = st.plotly_chart(map_figure(frame, colour_by), key="audit_map", on_select="rerun",
                            selection_mode="points")
    picked = selected_image_id(event)
    if picked is not None and picked != st.session_state.get("audit_map_last_point"):
        st.session_state["audit_map_last_point"] = picked  # a new click wins over the list
        st.session_state[MAP_CASE_KEY] = picked
    image_ids = list(frame["image_id"])
    if st.session_state.get(MAP_CASE_KEY) not in image_ids:
        st.session_state.pop(MAP_CASE_KEY, None)
    image_id = st.selectbox("Open a case", [None, *image_ids], key=MAP_CASE_KEY,
                            format_func=lambda value: "(click a point, or choose)"
                            if value is None else value)
    if image_id is None:
        return
    row = stored_row(model_id, result.set_name, image_id)
    if row is None:
        st.info(f"`{model_id}` stores no prediction for `{image_id}` on {result.set_name}.")
        return
    case_panel(row, model_id, result.set_name, key="audit_map",
               context="; opened from the embedding map")


# ----------------------------------------------------------------------------- label issues

def percent_columns(table: pd.DataFrame, names) -> dict:
    return {name: st.column_config.NumberColumn(format="percent") for name in names
            if name in table.columns}


def label_issues_section(model_id: str) -> None:
    """Likely label errors from the model's out-of-sample predictions, with their dx_type."""
    st.caption("Is it the model or the label? Confident learning (cleanlab) flags images whose "
               "given label this model finds unlikely by its own per-class confidence, from its "
               "stored predictions on the HAM10000 validation and test splits (never trained "
               "on). A suspect is a candidate for a second look, not a proven error: many are "
               "the model's mistakes. A histopathology-confirmed label (histo) is the strongest "
               "reference; consensus and follow-up labels are weaker.")
    try:
        audit = resources.label_audit(model_id)
    except ValueError as error:
        st.info(ui.error_message(error))
        return
    except Exception as error:  # noqa: BLE001 - a failed audit must not take the page down
        st.warning("The label audit could not be computed for this model "
                   f"({type(error).__name__}). The other tabs are unaffected; the offline report "
                   "is `python scripts/benchmarks/label_audit_report.py`.")
        return
    suspects = audit.suspects
    st.markdown(f"**{len(suspects):,} suspects** among {len(audit.images):,} labelled images "
                f"({' + '.join(audit.sets)}) for **{model_id}** v{audit.model_version}.")
    left, right = st.columns(2)
    with left:
        st.markdown("**Suspects by confirmation type**")
        table = audit.by_dx_type
        st.dataframe(table, hide_index=True,
                     column_config=percent_columns(table, ("flagged", "share_of_suspects")))
    with right:
        st.markdown("**By given class and confirmation type** (suspects / images)")
        st.dataframe(audit.by_class, hide_index=True)
    st.caption("`flagged`: share of that type's images flagged. Nearly every follow-up image is "
               "a nevus, so compare types within a class (right). Full report: "
               "`python scripts/benchmarks/label_audit_report.py` → reports/label_audit.md.")
    first, second = st.columns(2)
    dx_types = first.multiselect("Confirmation type", sorted(suspects["dx_type"].unique()),
                                 key="audit_label_dx_type")
    given = second.multiselect("Given label", CLASS_NAMES, key="audit_label_given")
    keep = pd.Series(True, index=suspects.index)
    if dx_types:
        keep &= suspects["dx_type"].isin(dx_types)
    if given:
        keep &= suspects["given_label"].isin(given)
    shown = suspects[keep]
    st.dataframe(shown.drop(columns=["set_folder", "file"]), hide_index=True, height=260,
                 column_config={name: st.column_config.NumberColumn(format="%.3f") for name in
                                ("given_label_probability", "suggested_label_probability")})
    st.download_button("Export the suspects (CSV)",
                       shown.assign(model_id=model_id, model_version=audit.model_version)
                       .to_csv(index=False).encode(), f"label_suspects_{model_id}.csv",
                       "text/csv", key="audit_label_export")
    if shown.empty:
        return
    suspect_gallery(shown.head(GALLERY_SIZE))
    # No case opens by itself: a case runs the model and its heatmap, and tabs all render.
    image_id = st.selectbox("Inspect a suspect", list(shown["image_id"]), index=None,
                            placeholder="Choose a suspect to open its case",
                            key="audit_label_case")
    if image_id is None:
        return
    suspect = shown[shown["image_id"] == image_id].iloc[0]
    row = stored_row(model_id, suspect["set"], image_id)
    if row is not None:
        case_panel(row, model_id, suspect["set"], key="audit_label",
                   context=f"; label-issue suspect (suggested {suspect['suggested_label']})")


def suspect_gallery(suspects: pd.DataFrame) -> None:
    """The first suspects' images with given and suggested label and dx_type."""
    columns = st.columns(4)
    missing = 0
    for position, suspect in enumerate(suspects.itertuples()):
        path = resources.dataset_image_path(suspect.set_folder, suspect.file)
        image = resources.thumbnail(str(path)) if path is not None else None
        if image is None:
            missing += 1
            continue
        columns[position % 4].image(
            image, width="stretch",
            caption=f"{suspect.image_id}: given {suspect.given_label}, suggested "
                    f"{suspect.suggested_label} ({suspect.dx_type})")
    if missing:
        st.caption(f"{missing} of the first {len(suspects)} suspects' images are not available "
                   "here (they need the HAM10000 folder in `../shared/data/` or "
                   "`LESIONLIB_DATA`).")


# ----------------------------------------------------------------------------- robustness

def robustness_section(card) -> None:
    """The stress test of ``card``'s model (``reports/robustness.json``), if it was run."""
    from lesionlib import robustness

    st.caption("The HAM10000 test split scored unchanged and under everyday image changes "
               "(framing, rotation, zoom, focus, JPEG, exposure, white balance, resolution). A "
               f"drop above {robustness.TARGET_DROP:.2f} balanced accuracy means the model's "
               "answers depend on how the image was taken, not only on the lesion.")
    entry = robustness.load_report(resources.REPO_ROOT / "reports").get(card.id)
    if entry is None:
        st.info(f"{card.name} has not been stress-tested. An administrator can run "
                f"`python -m lesionlib stress-test --model {card.id}` (needs the dataset).")
        return
    if entry.get("version") != card.version:
        st.warning(f"These figures are of version {entry.get('version')}, not the live "
                   f"version {card.version}: run the stress test again.")
    table = pd.DataFrame(entry["rows"]).rename(columns={
        "condition": "image change", "balanced_accuracy": "balanced accuracy",
        "ba_drop": "drop", "melanoma_auc": "melanoma AUC", "auc_drop": "AUC drop",
        "melanoma_sensitivity": "melanoma sensitivity", "within_target": "within target"})
    st.dataframe(table, hide_index=True, column_config={
        column: st.column_config.NumberColumn(format="%.3f")
        for column in ("balanced accuracy", "drop", "melanoma AUC", "AUC drop",
                       "melanoma sensitivity")})
    failing = table.loc[~table["within target"], "image change"].tolist()
    if failing:
        st.warning("Beyond the target: " + ", ".join(failing) + ".")
    st.caption(f"{entry.get('set', '')}; reproduce with `{entry.get('command', '')}`.")


# ----------------------------------------------------------------------------- binary models

MISTAKES = {"missed": "missed melanomas (below the threshold)",
            "false_alarm": "false alarms (other lesions at or above the threshold)"}


def binary_audit(card, frame: pd.DataFrame, set_name: str) -> None:
    """The audit of a binary melanoma model on one set: AUC, sensitivity and specificity at its
    threshold with the ROC curve, then its missed melanomas and false alarms, each openable."""
    import plotly.graph_objects as go

    from lesionlib.metrics import melanoma_report

    report = melanoma_report(frame["melanoma"].to_numpy(int), frame["mel"].to_numpy(float),
                             card.melanoma_threshold)
    st.caption(f"{card.name} is a binary model: it answers melanoma vs the rest only, so it is "
               "audited on that question (no confusion matrix or per-class figures).")
    def shown(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for column, (title, value) in zip(st.columns(4), (
            ("Melanoma AUC", shown(report["melanoma_auc"])),
            ("Sensitivity at its threshold", shown(report["melanoma_sensitivity"])),
            ("Specificity at its threshold", shown(report["melanoma_specificity"])),
            ("Melanomas / images", f"{report['n_melanoma']:,} / {len(frame):,}"))):
        column.metric(title, value)
    tab_roc, tab_mistakes = st.tabs(["ROC curve", "Missed melanomas and false alarms"])
    with tab_roc:
        roc = views.roc_table(frame, ("mel",))
        if roc.empty:
            st.info("This set has a single outcome, so no ROC curve can be drawn.")
        else:
            figure = px.line(roc, x="false_positive_rate", y="true_positive_rate", color="curve",
                             hover_data=["threshold"], title="Melanoma vs the rest")
            point = views.operating_point(frame, card.melanoma_threshold)
            if point is not None:
                figure.add_trace(go.Scatter(
                    x=[point["false_positive_rate"]], y=[point["true_positive_rate"]],
                    mode="markers", name=f"operating point (≥ {point['threshold']:.3f})",
                    marker=dict(symbol="x", size=14, color="black")))
            st.plotly_chart(figure, key="audit_binary_roc")
            st.caption(f"Threshold {card.melanoma_threshold:.3f} ({card.threshold_method}).")
    with tab_mistakes:
        kind = st.radio("Show", list(MISTAKES), format_func=MISTAKES.get, horizontal=True,
                        key="audit_binary_kind")
        flagged = frame["mel"].to_numpy(float) >= card.melanoma_threshold
        melanoma = frame["melanoma"].to_numpy(int) == 1
        chosen = (melanoma & ~flagged) if kind == "missed" else (~melanoma & flagged)
        mistakes = frame[chosen].sort_values("mel", ascending=kind == "missed")
        mistakes = mistakes.reset_index(drop=True)
        st.markdown(f"**{len(mistakes):,} {MISTAKES[kind]}**. Click a row to open the case.")
        table = mistakes[[column for column in ("image_id", "true_class", "mel", "dataset")
                          if column in mistakes.columns]].rename(
            columns={"mel": "melanoma probability"})
        selection = st.dataframe(table, hide_index=True, height=260, on_select="rerun",
                                 selection_mode="single-row",
                                 key=f"audit_binary_{card.id}_{set_name}_{kind}")
        st.download_button("Export this list (CSV)", table.to_csv(index=False).encode(),
                           f"{kind}_{card.id}_{set_name}.csv", "text/csv",
                           key="audit_binary_export")
        rows = [index for index in selection.selection.rows if 0 <= index < len(mistakes)]
        if rows:
            row = mistakes.iloc[rows[0]]
            st.subheader(f"Case {row['image_id']}")
            case_panel(row, card.id, set_name, key="audit_binary")
