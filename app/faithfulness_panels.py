"""Drawing the heatmap-faithfulness figures: is the model looking at the lesion?

The figures come from ``reports/heatmap_faithfulness.json`` (``lesionlib.faithfulness``,
written by ``scripts/benchmarks/heatmap_faithfulness.py``); the per-case edge check runs on the heatmap
shown. Used beside every heatmap (``app.ui.show_heatmap``), on the Models and audit pages.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from lesionlib import faithfulness

SOURCE = ("PH2: 200 dermoscopic images from another clinic, with lesion masks drawn by "
          "dermatologists")


def _report() -> tuple[dict | None, str]:
    """The stored report and, when it cannot be used, why."""
    try:
        return faithfulness.load_report(), ""
    except ValueError as error:
        return None, str(error)


def _percent(value) -> str:
    return "—" if value is None or value != value else f"{100 * value:.0f}%"


# ----------------------------------------------------------------------------- beside a heatmap

def heatmap_warnings(heatmap, model_id: str, method: str, cards: dict) -> None:
    """Said before the heatmap is read: the per-case edge check (no mask needed) and, when
    its PH2 figures say so, that this model's maps mostly lie off the lesion."""
    report, problem = _report()
    threshold = faithfulness.edge_threshold(report)
    if threshold is None:
        st.caption("Heatmap edge check unavailable: "
                   + (problem or f"no heatmap report (run `{faithfulness.REPORT_COMMAND}`)."))
    else:
        check = faithfulness.edge_check(heatmap, threshold)
        if check.fires:
            st.warning(f"**Read this heatmap with care — {check.message}**", icon="⚠️")
        else:
            st.caption(f"Heatmap edge check: {_percent(check.energy_share)} of the map's weight "
                       f"lies in the outer band of the image ({_percent(check.area_share)} of "
                       f"its area); the warning fires from {_percent(threshold)}.")
    card = cards.get(model_id)
    if report is None or card is None:
        return
    entry, note = faithfulness.model_entry(report, card, cards)
    if entry is not None and not note and faithfulness.looks_off_lesion(entry, method):
        summary = entry["methods"][method]
        st.warning(f"On {SOURCE}, {_percent(summary['off_lesion_share'])} of this model's "
                   f"{method} maps put less weight on the lesion than a uniform map would "
                   f"(on average {_percent(summary['mask_energy_mean'])} of the weight on a "
                   f"lesion covering {_percent(summary['mask_area_mean'])} of the image): "
                   "its heatmaps mostly look off the lesion.", icon="⚠️")


# ----------------------------------------------------------------------------- model figures

def overview(cards: dict) -> None:
    """One row per model: its Grad-CAM energy in the lesion on PH2 against the lesion's area."""
    report, problem = _report()
    if report is None:
        st.caption("Heatmaps on the lesion: " + (problem or "no heatmap report yet (run "
                                                  f"`{faithfulness.REPORT_COMMAND}`)."))
        return
    rows = []
    for model_id, card in sorted(cards.items()):
        entry, note = faithfulness.model_entry(report, card, cards)
        summary = (entry or {}).get("methods", {}).get("Grad-CAM")
        if summary is None:
            continue
        deletion = summary.get("deletion") or {}
        aucs = (faithfulness.format_value(deletion.get("heatmap_auc"), False),
                faithfulness.format_value(deletion.get("random_auc"), False))
        rows.append({"model": model_id,
                     "Grad-CAM energy in lesion": _percent(summary.get("mask_energy_mean")),
                     "lesion area": _percent(summary.get("mask_area_mean")),
                     "maps off the lesion": _percent(summary.get("off_lesion_share")),
                     "deletion AUC map / random": " / ".join(aucs),
                     "figures": "stale: rerun the report" if note else "current"})
    if rows:
        st.markdown("**Is the heatmap on the lesion?** (Grad-CAM, PH2, each model's top class)")
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def model_section(card, cards: dict, key: str) -> None:
    """A model's PH2 figures: energy in the lesion per method, deletion curves vs random."""
    st.markdown("**Is the heatmap on the lesion?**")
    report, problem = _report()
    entry, note = faithfulness.model_entry(report, card, cards) if not problem else (None,
                                                                                     problem)
    if note:
        (st.warning if entry is not None else st.caption)(note)
    if entry is None:
        return
    if faithfulness.looks_off_lesion(entry):
        summary = entry["methods"]["Grad-CAM"]
        st.warning(f"This model's Grad-CAM maps mostly look off the lesion: on PH2, "
                   f"{_percent(summary['off_lesion_share'])} of them put less weight on the "
                   "lesion than a uniform map would.", icon="⚠️")
    st.caption(f"Measured on {SOURCE}, for the model's top class; the mask is framed like the "
               "image. A map that ignores the lesion puts about the lesion's area share of its "
               "weight on it. Deletion: the probability of the class as the map's top-ranked "
               "pixels are replaced by the image's mean colour; a faithful map makes it fall "
               "faster (lower AUC) than random maps of the same smoothness.")
    if faithfulness.deletion_not_faster(entry):
        st.info(faithfulness.DELETION_CAVEAT, icon="ℹ️")
    table = pd.DataFrame(faithfulness.method_rows(entry))
    for column in table.columns[1:]:
        percent = not column.startswith(("deletion", "energy / area"))
        table[column] = [faithfulness.format_value(value, percent) for value in table[column]]
    st.dataframe(table, hide_index=True)
    curves = pd.DataFrame(faithfulness.deletion_rows(entry))
    if not curves.empty:
        figure = px.line(curves, x="deleted fraction", y="confidence", color="order",
                         markers=True, range_y=[0, 1],
                         title="Deletion curves on PH2 (mean probability of the explained class)")
        figure.update_layout(height=300, margin=dict(l=0, r=0, t=40, b=0))
        st.plotly_chart(figure, key=f"faithfulness_deletion_{key}")


def audit_section(card, cards: dict, key: str) -> None:
    """``model_section`` plus each PH2 image's energy in the lesion against its area, and how
    the per-case edge check did against the masks."""
    model_section(card, cards, key)
    report, _ = _report()
    entry, _ = faithfulness.model_entry(report, card, cards) if report else (None, "")
    if entry is None:
        return
    method = st.selectbox("Heatmap method", list(entry["methods"]), key=f"{key}_method")
    images = entry["ph2_images"]
    frame = pd.DataFrame({"image": report["data"]["image_ids"],
                          "lesion area": images["mask_area"],
                          "energy in lesion": images["methods"][method]["mask_energy"],
                          "energy in edge band": images["methods"][method]["border_energy"],
                          "class explained": images["class"]})
    threshold = faithfulness.edge_threshold(report)
    frame["edge warning"] = frame["energy in edge band"] >= threshold
    figure = px.scatter(frame, x="lesion area", y="energy in lesion", color="edge warning",
                        hover_data=["image", "class explained", "energy in edge band"],
                        range_x=[0, 1], range_y=[0, 1],
                        title=f"{method} per PH2 image: below the diagonal = off the lesion")
    figure.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(dash="dot", color="grey"))
    st.plotly_chart(figure, key=f"faithfulness_scatter_{key}")
    rates = entry["methods"][method].get("edge_check_on_check_half", {})
    st.caption(f"Edge warning (fires from {_percent(threshold)} of the weight in the outer band; "
               f"threshold chosen on {report['edge_check']['chosen_on']}). On the other half of "
               f"PH2 for this model and method it flagged {_percent(rates.get('sensitivity'))} "
               f"of the maps that are off the lesion by the mask, with false alarms on "
               f"{_percent(rates.get('false_alarm_rate'))} of the others.")
    worst = frame.assign(ratio=frame["energy in lesion"] / frame["lesion area"]).nsmallest(
        10, "ratio")
    st.markdown("**PH2 images whose map is least on the lesion**")
    st.dataframe(worst.drop(columns="ratio"), hide_index=True)
