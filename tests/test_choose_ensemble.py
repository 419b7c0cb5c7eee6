"""scripts/pipelines/choose_ensemble.py: members chosen on validation by balanced accuracy and melanoma
AUC together, and the ensemble compared with its best member."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from lesionlib.classes import CLASS_NAMES, MELANOMA_INDEX

spec = importlib.util.spec_from_file_location(
    "choose_ensemble", REPO_ROOT / "scripts" / "pipelines" / "choose_ensemble.py")
choose_ensemble = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_ensemble)

LABELS = np.repeat(np.arange(len(CLASS_NAMES)), 4)


def frame(correct: np.ndarray, melanoma_score: np.ndarray) -> pd.DataFrame:
    """Predictions right where ``correct`` is true (else the next class), with the melanoma
    probability ``melanoma_score`` spread over the rest."""
    predicted = np.where(correct, LABELS, (LABELS + 1) % len(CLASS_NAMES))
    probabilities = np.full((len(LABELS), len(CLASS_NAMES)), 0.02)
    probabilities[np.arange(len(LABELS)), predicted] = 0.5
    probabilities[:, MELANOMA_INDEX] = np.maximum(probabilities[:, MELANOMA_INDEX],
                                                  melanoma_score)
    return pd.DataFrame(probabilities, columns=list(CLASS_NAMES)).assign(label=LABELS)


def predictions(split: str = "ham10000_val") -> dict:
    rng = np.random.default_rng(0)
    is_melanoma = LABELS == MELANOMA_INDEX
    return {
        "accurate": frame(rng.random(len(LABELS)) < 0.9, rng.random(len(LABELS)) * 0.3),
        "ranks_melanoma": frame(rng.random(len(LABELS)) < 0.6,
                                np.where(is_melanoma, 0.45, 0.05)),
        "weak": frame(rng.random(len(LABELS)) < 0.3, rng.random(len(LABELS)) * 0.3),
    }


def test_combinations_are_ranked_by_the_mean_of_both_figures():
    rows = choose_ensemble.score_combinations(predictions())
    assert len(rows) == 7 and rows == sorted(rows, key=lambda row: -row["score"])
    for row in rows:
        assert row["score"] == pytest.approx((row["balanced_accuracy"] + row["melanoma_auc"]) / 2)
    ensemble, single = choose_ensemble.choose(rows)
    assert len(ensemble["members"]) > 1 and single["members"] == ("accurate",)
    assert ensemble["members"] == ("accurate", "ranks_melanoma")


def test_an_ensemble_needs_two_models_with_validation_predictions():
    rows = choose_ensemble.score_combinations({"only": frame(LABELS >= 0, LABELS * 0.0)})
    with pytest.raises(ValueError, match=r"two or more single models.*received 1"):
        choose_ensemble.choose(rows)


def test_the_script_warns_when_a_single_model_beats_every_ensemble(monkeypatch, capsys):
    monkeypatch.setattr(choose_ensemble, "validation_predictions", predictions)
    assert choose_ensemble.main(["--members"]) == 0
    assert capsys.readouterr().out == "accurate ranks_melanoma\n"
    assert choose_ensemble.main([]) == 0
    out = capsys.readouterr().out
    assert "Chosen ensemble: accurate + ranks_melanoma" in out
    assert "Warning: the best single model, accurate (score 0.92" in out


def test_another_split_prints_the_table_for_information_only(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(choose_ensemble, "validation_predictions",
                        lambda split: asked.append(split) or predictions())
    assert choose_ensemble.main(["--split", "bcn20000_val"]) == 0
    assert asked == ["bcn20000_val"]
    out = capsys.readouterr().out
    assert "on bcn20000_val, for information" in out
    assert "Chosen ensemble" not in out and "(information, not the choice)" in out
    with pytest.raises(SystemExit) as refused:
        choose_ensemble.main(["--split", "bcn20000_val", "--members"])
    assert refused.value.code == 2
    assert "--members and --name give the choice made on ham10000_val" in capsys.readouterr().err
