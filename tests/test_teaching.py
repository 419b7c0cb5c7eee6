"""Teaching quiz logic: the case pool, rounds, answers and scores."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from lesionlib import teaching
from lesionlib.classes import CLASS_NAMES
from lesionlib.inference import Prediction


def stored(image_ids, truths, predictions) -> pd.DataFrame:
    """A stored-prediction frame as ``evaluation`` writes it (only the columns used here)."""
    return pd.DataFrame({"image_id": image_ids, "file": [f"images/{i}.jpg" for i in image_ids],
                         "dx": truths, "dx_type": "histo", "true_class": truths,
                         "label": [CLASS_NAMES.index(name) for name in truths],
                         "prediction": predictions, "confidence": 0.8})


def prediction(top: str) -> Prediction:
    probabilities = {name: 0.9 if name == top else 0.1 / 6 for name in CLASS_NAMES}
    return Prediction("m.test", "1.2.0", "M", "teaching", probabilities, top, 0.9,
                      probabilities["mel"], 0.3)


@pytest.fixture
def pool() -> pd.DataFrame:
    ids = [f"I{index}" for index in range(8)]
    truths = ["mel", "mel", "nv", "nv", "nv", "nv", "bcc", "df"]
    model = ["mel", "nv", "nv", "nv", "nv", "mel", "bcc", "nv"]
    other = ["mel", "mel", "nv", "bkl", "nv", "mel", "bcc", "nv"]
    frames = {"a": stored(ids, truths, model), "b": stored(ids, truths, other)}
    return teaching.case_pool(frames["a"], frames, available_ids=set(ids) - {"I4"})


def test_pool_marks_errors_disagreement_and_availability(pool):
    assert "I4" not in set(pool["image_id"])
    assert set(pool.loc[pool["model_wrong"], "image_id"]) == {"I1", "I5", "I7"}
    assert set(pool.loc[pool["models_disagree"], "image_id"]) == {"I1", "I3"}


def test_filters_by_class_and_difficulty(pool):
    assert set(teaching.filter_pool(pool, ["mel"], "model_wrong")["image_id"]) == {"I1"}
    assert set(teaching.filter_pool(pool, [], "models_disagree")["image_id"]) == {"I1", "I3"}
    assert set(teaching.filter_pool(pool, ["nv"], "model_right")["image_id"]) == {"I2", "I3"}
    with pytest.raises(ValueError, match="expected one of any, model_wrong"):
        teaching.filter_pool(pool, [], "hard")
    with pytest.raises(KeyError, match="Unknown class 'melanoma'"):
        teaching.filter_pool(pool, ["melanoma"])


def test_round_is_drawn_class_by_class_and_reproducible(pool):
    drawn = teaching.draw_round(pool, 3, seed=1)
    assert len(drawn) == 3 and drawn["dx"].nunique() == 3  # one of each before any repeat
    assert drawn.equals(teaching.draw_round(pool, 3, seed=1))
    assert len(teaching.draw_round(pool, 50)) == len(pool)  # never more than the pool
    with pytest.raises(ValueError, match="at least one case"):
        teaching.draw_round(pool, 0)


def test_answers_scores_confusion_and_csv():
    cases = [{"image_id": "A", "dx": "mel", "dx_type": "histo"},
             {"image_id": "B", "dx": "mel", "dx_type": "histo"},
             {"image_id": "C", "dx": "nv", "dx_type": "follow_up"},
             {"image_id": "D", "dx": "nv", "dx_type": "consensus"}]
    student = ["mel", "nv", "nv", "nv"]
    model = ["mel", "mel", "mel", "nv"]
    answers = [teaching.answer_record(index + 1, case, said, prediction(top))
               for index, (case, said, top) in enumerate(zip(cases, student, model))]
    frame = teaching.round_frame(answers)
    scores = teaching.score_round(frame)
    assert scores["student_balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["model_balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["student_accuracy"] == pytest.approx(0.75) and scores["cases"] == 4
    recall = teaching.per_class_recall(frame).set_index("class")
    assert recall.loc["mel", "student_recall"] == 0.5 and recall.loc["mel", "model_recall"] == 1
    assert recall.loc["nv", "cases"] == 2
    matrix = teaching.confusion(frame, "student")
    assert matrix.loc["mel", "nv"] == 1 and matrix.loc["nv", "nv"] == 2
    assert matrix.to_numpy().sum() == 4 and matrix.shape == (7, 7)
    written = pd.read_csv(io.BytesIO(teaching.round_csv(frame)))
    assert list(written.columns) == list(teaching.ROUND_COLUMNS)
    assert written["model_version"].astype(str).unique().tolist() == ["1.2.0"]
    assert written["dx_type"].tolist() == ["histo", "histo", "follow_up", "consensus"]


def test_bad_answers_and_empty_rounds_are_clear():
    with pytest.raises(KeyError, match="expected one of akiec"):
        teaching.answer_record(1, {"image_id": "A", "dx": "mel"}, "melanoma", prediction("mel"))
    with pytest.raises(ValueError, match="No answered case"):
        teaching.score_round(teaching.round_frame([]))


def test_scores_match_lesionlib_metrics():
    from lesionlib.metrics import balanced_accuracy

    rng = np.random.default_rng(0)
    truths = rng.choice(CLASS_NAMES, 40)
    said = rng.choice(CLASS_NAMES, 40)
    answers = [teaching.answer_record(index, {"image_id": str(index), "dx": truth}, guess,
                                      prediction(truth))
               for index, (truth, guess) in enumerate(zip(truths, said))]
    scores = teaching.score_round(teaching.round_frame(answers))
    assert scores["student_balanced_accuracy"] == pytest.approx(balanced_accuracy(truths, said))
    assert scores["model_balanced_accuracy"] == 1.0
