"""Teaching quiz: choose a round of test-split cases, record answers, score student vs model.

Cases come from a model's stored predictions on the HAM10000 test split (never training
images, which the model has seen). A round can be restricted to some classes and to a
difficulty measured by the stored predictions; it is drawn class by class so rare classes are
not drowned by nevi. Scores use the same balanced accuracy as the model reports.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lesionlib import views
from lesionlib.classes import CLASS_NAMES, class_index
from lesionlib.metrics import balanced_accuracy

DIFFICULTIES = {
    "any": "any test case",
    "model_wrong": "cases the model gets wrong",
    "models_disagree": "cases the models disagree on",
    "model_right": "cases the model gets right",
}
POOL_COLUMNS = ("image_id", "file", "lesion_id", "dx", "dx_type", "age", "sex", "localization")
ROUND_COLUMNS = ("position", "image_id", "reference", "dx_type", "student", "model",
                 "model_confidence", "student_correct", "model_correct", "model_id",
                 "model_version")


def case_pool(predictions: pd.DataFrame, others: Mapping[str, pd.DataFrame] | None = None,
              available_ids=None) -> pd.DataFrame:
    """Candidate cases: one row per labelled image of a model's stored test predictions.

    Args:
        predictions: the quiz model's stored predictions (``image_id``, ``dx``, ``prediction``).
        others: every model's stored predictions on the same set, by id, to mark disagreement.
        available_ids: the image ids whose pictures are here (``None``: all).

    Returns:
        ``POOL_COLUMNS`` that exist, plus ``model_prediction``, ``model_confidence``,
        ``model_wrong`` and ``models_disagree``.
    """
    frame = views.labelled(predictions)
    frame = frame[frame["true_class"].isin(CLASS_NAMES)].copy()
    if "dx" not in frame.columns:
        frame["dx"] = frame["true_class"]
    pool = frame[[column for column in POOL_COLUMNS if column in frame.columns]].copy()
    pool["model_prediction"] = frame["prediction"].to_numpy()
    pool["model_confidence"] = frame["confidence"].to_numpy() if "confidence" in frame else np.nan
    pool["model_wrong"] = pool["model_prediction"] != pool["dx"]
    disagreeing = set(views.disagreeing_cases(dict(others))["image_id"]) if others else set()
    pool["models_disagree"] = pool["image_id"].isin(disagreeing)
    if available_ids is not None:
        pool = pool[pool["image_id"].isin(set(available_ids))]
    return pool.reset_index(drop=True)


def filter_pool(pool: pd.DataFrame, classes=None, difficulty: str = "any") -> pd.DataFrame:
    """The cases of ``classes`` (all when empty) at ``difficulty`` (a key of DIFFICULTIES).

    Raises:
        ValueError: unknown difficulty or class, naming what was received and what is expected.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"Unknown difficulty {difficulty!r}; expected one of "
                         f"{', '.join(DIFFICULTIES)}.")
    for name in classes or ():
        class_index(name)  # raises KeyError naming the classes
    selected = pool[pool["dx"].isin(list(classes))] if classes else pool
    condition = {"any": None, "model_wrong": selected["model_wrong"],
                 "model_right": ~selected["model_wrong"],
                 "models_disagree": selected["models_disagree"]}[difficulty]
    return (selected if condition is None else selected[condition]).reset_index(drop=True)


def draw_round(pool: pd.DataFrame, length: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``length`` cases drawn class by class (round robin), then shuffled.

    Raises:
        ValueError: ``length`` is not positive.
    """
    if length < 1:
        raise ValueError(f"A round needs at least one case; got length={length}.")
    rng = np.random.default_rng(seed)
    queues = {name: list(group.index[rng.permutation(len(group))])
              for name, group in pool.groupby("dx", sort=True)}
    chosen = []
    while len(chosen) < length and any(queues.values()):
        for name in sorted(queues):
            if queues[name] and len(chosen) < length:
                chosen.append(queues[name].pop(0))
    drawn = pool.loc[chosen]
    return drawn.iloc[rng.permutation(len(drawn))].reset_index(drop=True)


def answer_record(position: int, case: Mapping, student: str, prediction) -> dict:
    """One answered case: the reference, the student's and the model's answers.

    Args:
        position: the case's place in the round (1-based).
        case: a row of ``draw_round`` (``image_id``, ``dx``, ``dx_type``).
        student: the student's class.
        prediction: the model's ``inference.Prediction`` on the case.

    Raises:
        KeyError: ``student`` is not one of the seven classes.
    """
    class_index(student)
    return {"position": int(position), "image_id": str(case["image_id"]),
            "reference": str(case["dx"]), "dx_type": str(case.get("dx_type", "unknown")),
            "student": student, "model": prediction.top_class,
            "model_confidence": round(float(prediction.top_probability), 4),
            "student_correct": student == case["dx"],
            "model_correct": prediction.top_class == case["dx"],
            "model_id": prediction.model_id, "model_version": prediction.model_version}


def round_frame(answers: list[dict]) -> pd.DataFrame:
    """The answered cases as a table with ``ROUND_COLUMNS``, in the order they were answered."""
    return pd.DataFrame(list(answers), columns=list(ROUND_COLUMNS))


def confusion(frame: pd.DataFrame, answer_column: str) -> pd.DataFrame:
    """7x7 counts: rows = reference diagnosis, columns = ``answer_column``'s diagnosis."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(frame["reference"], frame[answer_column], labels=list(CLASS_NAMES))
    return pd.DataFrame(matrix, index=list(CLASS_NAMES), columns=list(CLASS_NAMES))


def per_class_recall(frame: pd.DataFrame) -> pd.DataFrame:
    """For each class in the round: cases, the student's recall and the model's recall."""
    rows = []
    for name in CLASS_NAMES:
        cases = frame[frame["reference"] == name]
        if len(cases):
            rows.append({"class": name, "cases": len(cases),
                         "student_recall": float((cases["student"] == name).mean()),
                         "model_recall": float((cases["model"] == name).mean())})
    return pd.DataFrame(rows, columns=["class", "cases", "student_recall", "model_recall"])


def score_round(frame: pd.DataFrame) -> dict:
    """Balanced accuracy and accuracy of the student and of the model on the same cases.

    Raises:
        ValueError: the round has no answered case.
    """
    if frame.empty:
        raise ValueError("No answered case in this round yet: answer at least one.")
    return {"cases": int(len(frame)),
            "student_balanced_accuracy": balanced_accuracy(frame["reference"], frame["student"]),
            "model_balanced_accuracy": balanced_accuracy(frame["reference"], frame["model"]),
            "student_accuracy": float(frame["student_correct"].mean()),
            "model_accuracy": float(frame["model_correct"].mean())}


def round_csv(frame: pd.DataFrame) -> bytes:
    """The round as CSV for a teacher: one row per case, in ``ROUND_COLUMNS`` order."""
    return frame.to_csv(index=False).encode()
