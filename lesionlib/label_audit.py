"""Label-issue audit: is it the model or the label?

Likely label errors are found by confident learning (Northcutt, Jiang & Chuang, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021; the ``cleanlab`` package) from a
model's out-of-sample probabilities: the predictions each model stores on the HAM10000
validation and test splits (``weights/<id>/predictions/``), which it never trained on. The two
splits are audited together, so the per-class thresholds are estimated from about 3,000 images.

A suspect is an image whose given label the model finds unlikely by the standard of its own
per-class confidence. It is a candidate for a second look, not a proven error: with a model of
0.7 balanced accuracy many suspects are the model's mistakes. How the reference diagnosis was
confirmed (``dx_type``: histopathology, follow-up, expert consensus, confocal microscopy) helps
tell them apart: a histopathology-confirmed label is the strongest reference there is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES

AUDIT_SETS = ("ham10000_val", "ham10000_test")
DX_TYPE_ORDER = ("histo", "follow_up", "consensus", "confocal")
DX_TYPE_TITLES = {"histo": "histopathology", "follow_up": "follow-up examination",
                  "consensus": "expert consensus", "confocal": "confocal microscopy"}
SUSPECT_COLUMNS = ("rank", "set", "image_id", "given_label", "suggested_label",
                   "given_label_probability", "suggested_label_probability", "dx_type",
                   "dataset", "lesion_id", "set_folder", "file")


@dataclasses.dataclass(frozen=True)
class LabelAudit:
    """One model's label-issue audit on its stored HAM10000 predictions."""

    model_id: str
    model_version: str
    sets: tuple[str, ...]
    images: pd.DataFrame  # the audited rows (labelled), with a ``set`` column
    suspects: pd.DataFrame  # SUSPECT_COLUMNS, most suspicious first

    @property
    def by_dx_type(self) -> pd.DataFrame:
        return dx_type_table(self.images, self.suspects)

    @property
    def by_class(self) -> pd.DataFrame:
        return class_dx_type_table(self.images, self.suspects)


def find_suspects(frame: pd.DataFrame) -> pd.DataFrame:
    """Likely label errors among labelled stored predictions, most suspicious first.

    Args:
        frame: stored predictions (``evaluation.prediction_frame`` columns): ``label``, the seven
            class probabilities, and metadata (image_id, dx_type, dataset...).

    Returns:
        ``SUSPECT_COLUMNS``: the given label, the suggested one (the most probable class) and
        the model's probability of each, ranked by the given label's probability (lowest first,
        cleanlab's ``self_confidence``).

    Raises:
        ValueError: no labelled rows, or fewer than two classes among them.
    """
    from cleanlab.filter import find_label_issues

    labelled = frame[frame["label"].between(0, len(CLASS_NAMES) - 1)].reset_index(drop=True)
    labels = labelled["label"].to_numpy(int)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"The label audit needs images of at least two classes; received "
                         f"{len(labels)} labelled images of {len(np.unique(labels))} class(es).")
    probabilities = labelled[list(CLASS_NAMES)].to_numpy("float64")
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    # One process: cleanlab's default forks one worker per core, and inside the dashboard's
    # server those workers never exited (the page hung and the server ignored a normal stop).
    # Single-process it takes well under a second on the ~3,000 stored predictions.
    ranked = find_label_issues(labels, probabilities, n_jobs=1,
                               return_indices_ranked_by="self_confidence")
    suspects = labelled.iloc[ranked].reset_index(drop=True)
    suggested = probabilities[ranked].argmax(axis=1)
    suspects["rank"] = np.arange(1, len(suspects) + 1)
    suspects["given_label"] = [CLASS_NAMES[label] for label in labels[ranked]]
    suspects["suggested_label"] = [CLASS_NAMES[label] for label in suggested]
    suspects["given_label_probability"] = probabilities[ranked, labels[ranked]]
    suspects["suggested_label_probability"] = probabilities[ranked, suggested]
    for column in SUSPECT_COLUMNS:
        if column not in suspects.columns:
            suspects[column] = "unknown" if column in ("dx_type", "dataset") else ""
    suspects[["dx_type", "dataset"]] = suspects[["dx_type", "dataset"]].fillna("unknown")
    return suspects[list(SUSPECT_COLUMNS)]


def _ordered(values) -> list[str]:
    known = [value for value in DX_TYPE_ORDER if value in set(values)]
    return known + sorted(set(values) - set(known))


def dx_type_table(images: pd.DataFrame, suspects: pd.DataFrame) -> pd.DataFrame:
    """How the suspects split by confirmation type, against how the audited images split.

    Columns: dx_type, confirmation, images, suspects, flagged (share of that type's images),
    share_of_suspects; a last ``all`` row.
    """
    all_types = images["dx_type"].fillna("unknown") if "dx_type" in images.columns \
        else pd.Series("unknown", images.index)
    counts = all_types.value_counts()
    flagged = suspects["dx_type"].value_counts()
    rows = [{"dx_type": name, "confirmation": DX_TYPE_TITLES.get(name, name),
             "images": int(counts.get(name, 0)), "suspects": int(flagged.get(name, 0))}
            for name in _ordered(list(counts.index) + list(flagged.index))]
    rows.append({"dx_type": "all", "confirmation": "all", "images": int(len(all_types)),
                 "suspects": int(len(suspects))})
    table = pd.DataFrame(rows)
    table["flagged"] = table["suspects"] / table["images"].where(table["images"] > 0)
    table["share_of_suspects"] = table["suspects"] / max(len(suspects), 1)
    return table


def class_dx_type_table(images: pd.DataFrame, suspects: pd.DataFrame) -> pd.DataFrame:
    """Suspects / images for each given class and confirmation type ("" where no images).

    Confirmation type and class go together in HAM10000 (nearly every follow-up is a nevus), so
    a split by type alone mixes the two; this table separates them.
    """
    if "dx_type" not in images.columns:
        return pd.DataFrame()
    images = images.assign(dx_type=images["dx_type"].fillna("unknown"))
    totals = images.groupby(["true_class", "dx_type"]).size()
    flagged = suspects.groupby(["given_label", "dx_type"]).size()
    columns = _ordered(images["dx_type"])
    rows = []
    for name in [name for name in CLASS_NAMES if name in set(images["true_class"])]:
        row = {"class": name}
        for dx_type in columns:
            total = int(totals.get((name, dx_type), 0))
            row[dx_type] = f"{int(flagged.get((name, dx_type), 0))} / {total}" if total else ""
        rows.append(row)
    return pd.DataFrame(rows, columns=["class", *columns])


def audit_frames(card, frames: dict[str, pd.DataFrame | None]) -> LabelAudit:
    """The audit of ``card`` from its stored predictions, ``set name -> frame`` (``None``: absent).

    Raises:
        ValueError: none of ``AUDIT_SETS`` is stored (or they have no usable labels).
    """
    present = {name: frame for name, frame in frames.items()
               if name in AUDIT_SETS and frame is not None and not frame.empty}
    if not present:
        raise ValueError(f"{card.id} stores no predictions on {' or '.join(AUDIT_SETS)}; run "
                         f"`python -m lesionlib evaluate --model {card.id}` first.")
    images = pd.concat([frame.assign(set=name) for name, frame in present.items()],
                       ignore_index=True)
    images = images[images["label"].between(0, len(CLASS_NAMES) - 1)].reset_index(drop=True)
    return LabelAudit(card.id, card.version, tuple(present), images, find_suspects(images))


def audit_model(card) -> LabelAudit:
    """``audit_frames`` on the predictions stored in ``card``'s folder (read through the seal)."""
    from lesionlib.evaluation import load_predictions

    return audit_frames(card, {name: load_predictions(card, name) for name in AUDIT_SETS})


def agreement(audits: list[LabelAudit]) -> pd.DataFrame:
    """For each suspect image, which of the audited models flag it (most models first).

    Columns: image_id, given_label, dx_type, models (count), flagged_by (comma-separated ids).
    """
    rows = pd.concat([audit.suspects[["image_id", "given_label", "dx_type"]].assign(
        model=audit.model_id) for audit in audits], ignore_index=True)
    if rows.empty:
        return pd.DataFrame(columns=["image_id", "given_label", "dx_type", "models",
                                     "flagged_by"])
    grouped = rows.groupby(["image_id", "given_label", "dx_type"], as_index=False).agg(
        models=("model", "nunique"), flagged_by=("model", lambda ids: ", ".join(sorted(ids))))
    return grouped.sort_values(["models", "image_id"], ascending=[False, True],
                               ignore_index=True)
