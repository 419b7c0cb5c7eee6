"""lesionlib.views: plot-ready tables from stored predictions (no model, no Streamlit)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlib import evaluation, views
from lesionlib.classes import CLASS_NAMES
from lesionlib.inference import to_predictions

REPO_ROOT = Path(__file__).resolve().parent.parent


def _frame(labels, predicted, confidence=0.8) -> pd.DataFrame:
    probabilities = np.full((len(labels), len(CLASS_NAMES)), (1 - confidence) / 6)
    probabilities[np.arange(len(labels)), predicted] = confidence
    frame = pd.DataFrame({"image_id": [f"img{i}" for i in range(len(labels))],
                          "file": [f"images/img{i}.jpg" for i in range(len(labels))],
                          "label": labels,
                          "melanoma": (np.asarray(labels) == 4).astype(int),
                          "age_band": ["<30", "30-44"] * (len(labels) // 2) + ["<30"] * (
                              len(labels) % 2)})
    return evaluation.prediction_frame(frame, probabilities, "ham10000")


@pytest.fixture
def frame() -> pd.DataFrame:
    labels = [0, 1, 4, 4, 5, 5, 5, 6, -1]
    predicted = [0, 5, 4, 5, 5, 5, 4, 6, 5]
    return _frame(labels, predicted)


def test_confusion_counts_ignore_unlabelled_rows(frame):
    counts = views.confusion_counts(frame)
    assert counts.shape == (7, 7)
    assert counts.sum() == 8
    assert counts[4, 4] == 1 and counts[4, 5] == 1 and counts[5, 4] == 1


def test_normalise_rows_keeps_empty_rows_zero():
    normalised = views.normalise_rows([[2, 2], [0, 0]])
    np.testing.assert_allclose(normalised, [[0.5, 0.5], [0.0, 0.0]])


def test_per_class_table_matches_counts(frame):
    table = views.per_class_table(frame).set_index("class")
    assert table.loc["mel", "recall"] == pytest.approx(0.5)
    assert table.loc["nv", "support"] == 3
    assert "df" not in table.index  # neither true nor predicted


def test_roc_points_and_single_outcome(frame):
    curve, auc = views.roc_points(frame, "mel")
    assert auc is not None and 0 <= auc <= 1
    assert curve["true_positive_rate"].iloc[-1] == 1.0
    curve, auc = views.roc_points(frame[frame["label"] == 5], "nv")
    assert auc is None and curve.empty
    assert set(views.roc_table(frame)["class"]) <= set(CLASS_NAMES)


def test_reliability_table_counts_labelled_images(frame):
    table = views.reliability_table(frame)
    assert table["count"].sum() == 8


def test_error_list_filters_and_sorts(frame):
    errors = views.error_list(frame)
    assert set(errors["image_id"]) == {"img1", "img3", "img6"}
    assert list(views.error_list(frame, true_classes=["mel"])["image_id"]) == ["img3"]
    assert list(views.error_list(frame, predicted_classes=["mel"])["image_id"]) == ["img6"]
    assert errors["confidence"].is_monotonic_decreasing
    assert (errors["true_class_probability"] < errors["confidence"]).all()
    with pytest.raises(ValueError, match="Cannot sort"):
        views.error_list(frame, sort_by="nonsense")
    export = views.error_export(errors, "model.x", "1.0.0", "ham10000_test")
    assert {"set", "model_id", "model_version", "image_id", "mel"} <= set(export.columns)


def test_disagreement_between_models(frame):
    other = frame.copy()
    other.loc[other["image_id"] == "img1", "prediction"] = "bcc"
    frames = {"a": frame, "b": other}
    matrix = views.disagreement_matrix(frames)
    assert matrix.loc["a", "b"] == pytest.approx(1 / len(frame))
    assert matrix.loc["a", "a"] == 0
    cases = views.disagreeing_cases(frames)
    assert list(cases["image_id"]) == ["img1"]
    assert cases["models right"].iloc[0] == 1
    outputs = views.case_outputs(frames, "img1")
    assert list(outputs["prediction"]) == ["nv", "bcc"]


def test_agreement_of_predictions():
    card = type("Card", (), {"id": "m", "version": "1", "name": "M", "intended_use": "x",
                             "melanoma_threshold": 0.3})()
    first, second = to_predictions(card, np.eye(7)[[4, 5]])
    agree, chosen = views.agreement([first, first])
    assert agree and list(chosen) == ["mel"]
    agree, chosen = views.agreement([first, second])
    assert not agree and set(chosen) == {"mel", "nv"}


def test_probability_table_has_percent_labels():
    table = views.probability_table(dict(zip(CLASS_NAMES, [0.0, 0.0, 0.0, 0.0, 0.25, 0.75, 0.0])))
    assert list(table["class"]) == list(CLASS_NAMES)
    assert table.set_index("class").loc["nv", "percent"] == "75.0%"


def test_subgroup_table_scores_only_large_groups(frame):
    table = views.subgroup_table(frame, "age_band", 0.3, min_size=3)
    assert set(table["group"]) == {"<30", "30-44"}
    assert table["n"].sum() == 8


def test_metadata_filters_and_distribution():
    metadata = pd.read_csv(REPO_ROOT / "lesionlib" / "resources" / "HAM10000_metadata.csv")
    assert len(metadata) == 10015
    melanoma_on_back = views.filter_metadata(metadata, ["mel"], ["back"], (30, 60),
                                             include_unknown_age=False)
    assert (melanoma_on_back["dx"] == "mel").all()
    assert melanoma_on_back["age"].between(30, 60).all()
    counts = views.distribution(metadata, "dx")
    assert counts["images"].sum() == 10015 and counts.iloc[0]["dx"] == "nv"
    by_class = views.distribution(metadata, "sex", by_class=True)
    assert by_class["images"].sum() == 10015


def test_views_never_import_streamlit():
    tree = ast.parse((REPO_ROOT / "lesionlib" / "views.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "streamlit" not in imported


def test_only_app_resources_caches():
    files = [REPO_ROOT / "dashboard.py",
             *sorted(path for path in (REPO_ROOT / "app").glob("*.py")
                     if path.name != "resources.py"),
             *sorted((REPO_ROOT / "pages").glob("*.py"))]
    offenders = [path.name for path in files
                 if "cache_resource" in path.read_text() or "cache_data" in path.read_text()]
    assert offenders == []


def test_operating_point_lies_on_the_melanoma_roc_curve(frame):
    labelled = views.labelled(frame)
    # mel probabilities: 0.8 where mel is predicted, 0.2 / 6 elsewhere
    point = views.operating_point(labelled, 0.5)
    melanomas = labelled["melanoma"] == 1
    flagged = labelled["mel"] >= 0.5
    assert point["true_positive_rate"] == pytest.approx((flagged & melanomas).sum()
                                                        / melanomas.sum())
    assert point["false_positive_rate"] == pytest.approx((flagged & ~melanomas).sum()
                                                         / (~melanomas).sum())
    curve, _ = views.roc_points(labelled, "mel")
    on_curve = curve[(curve["threshold"] >= 0.5)].iloc[-1]
    assert (on_curve["false_positive_rate"], on_curve["true_positive_rate"]) == pytest.approx(
        (point["false_positive_rate"], point["true_positive_rate"]))
    assert views.operating_point(labelled[~melanomas], 0.5) is None


def test_case_details_read_as_words_not_raw_json():
    import numpy as np

    from lesionlib.views import case_detail_lines

    lines = dict(case_detail_lines({"true_class": "mel", "confidence": np.float64(0.873),
                                    "age": 45.0, "sex": None, "dx_type": "histo",
                                    "localization": float("nan")}))
    assert lines == {"Reference diagnosis": "mel", "Model's confidence": "87.3%", "Age": "45",
                     "Sex": "unknown", "Body site": "unknown",
                     "Diagnosis confirmed by": "histopathology"}
