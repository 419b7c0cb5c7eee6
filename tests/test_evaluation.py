"""Evaluation: calibration is fitted on validation only; predictions and metrics are stored."""

import shutil

import numpy as np
import pandas as pd
import pytest

from lesionlib import evaluation, registry
from lesionlib.cards import read_card
from lesionlib.classes import CLASS_NAMES


def _frame(seed, count=300):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, count)
    logits = rng.normal(0, 1, (count, 7))
    logits[np.arange(count), labels] += 2.5
    probabilities = np.exp(logits * 2) / np.exp(logits * 2).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"image_id": [f"img{i}" for i in range(count)],
                          "label": labels, "melanoma": (labels == 4).astype(int),
                          "sex": rng.choice(["male", "female"], count),
                          "age_band": rng.choice(["<30", "45-59"], count)})
    return evaluation.prediction_frame(frame, probabilities, "ham10000")


@pytest.fixture
def card(tiny_weights_dir, tmp_path):
    shutil.copytree(tiny_weights_dir, tmp_path / "weights")
    return read_card(tmp_path / "weights" / "tiny0.test")


def test_calibration_ignores_test_labels(card):
    val, test = _frame(0), _frame(1)
    first, _ = evaluation.finish_evaluation(card, {"ham10000_val": val, "ham10000_test": test},
                                            "cmd")
    shuffled = test.copy()
    shuffled["label"] = np.random.default_rng(2).permutation(shuffled["label"])
    second, _ = evaluation.finish_evaluation(card, {"ham10000_val": val,
                                                    "ham10000_test": shuffled}, "cmd")
    assert first.temperature == pytest.approx(second.temperature)
    assert first.melanoma_threshold == pytest.approx(second.melanoma_threshold)


def test_stored_predictions_and_card_metrics(card):
    updated, metrics = evaluation.finish_evaluation(
        card, {"ham10000_val": _frame(0), "ham10000_test": _frame(1)}, "python -m x")
    stored = evaluation.load_predictions(updated, "ham10000_test")
    np.testing.assert_allclose(stored[list(CLASS_NAMES)].sum(axis=1), 1.0, atol=1e-5)
    assert read_card(card.folder).metrics["ham10000_test"]["balanced_accuracy"] == \
        pytest.approx(metrics["ham10000_test"]["balanced_accuracy"])
    test = metrics["ham10000_test"]
    assert test["ece"] < test["ece_before_temperature"]
    assert {row["group"] for row in test["subgroups"]["sex"]} == {"male", "female"}
    assert updated.reproduce["evaluate"] == "python -m x"


def test_ensemble_is_the_mean_of_member_predictions(tiny_weights_dir, tmp_path):
    shutil.copytree(tiny_weights_dir, tmp_path / "weights")
    catalogue = registry.discover(tmp_path / "weights")
    members = [catalogue.cards["tiny0.test"], catalogue.cards["tiny1.test"]]
    for seed, member in enumerate(members):
        evaluation.finish_evaluation(member, {"ham10000_val": _frame(seed),
                                              "ham10000_test": _frame(seed + 5)}, "cmd")
    members = [read_card(member.folder) for member in members]
    frames = evaluation.ensemble_uncalibrated(members)
    expected = np.mean([evaluation.probabilities_of(evaluation.load_predictions(m, "ham10000_test"))
                        for m in members], axis=0)
    np.testing.assert_allclose(evaluation.probabilities_of(frames["ham10000_test"]), expected)


def test_summary_lists_every_model(card):
    updated, _ = evaluation.finish_evaluation(
        card, {"ham10000_val": _frame(0), "ham10000_test": _frame(1)}, "cmd")
    text = evaluation.summary_markdown([updated], "python -m lesionlib evaluate")
    assert "tiny0.test" in text and "balanced acc." in text
