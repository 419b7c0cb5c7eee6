"""The read-out of a reader study (``lesionlib.reader_study``): what the model did to its readers.

Balanced accuracy and melanoma sensitivity / specificity of the reader before AI, after AI and of
the AI alone on the same readings, with 95% percentile bootstrap intervals (cases resampled, and
readers too when pooled), split by whether the AI was right, by support form and by experience;
switches (helped: wrong -> right; misled: right -> wrong); how often readers ended on the AI's
answer when it was wrong (automation bias); melanomas reassured before and after; a plain-language
summary and the CSV export under pseudonyms. Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from lesionlib.classes import CLASS_NAMES
from lesionlib.reader_study import MELANOMA, SUPPORT_FORMS, Study

BOOTSTRAP_SAMPLES = 1000



def answer_table(study: Study, answers: pd.DataFrame, experiences: dict[str, str]) -> pd.DataFrame:
    """Completed answers (both steps in) joined with each case's reference and the AI's answer."""
    done = answers.dropna(subset=["final_answer"]).copy()
    cases = pd.DataFrame([dataclasses.asdict(case) for case in study.cases])
    if done.empty:
        return done.assign(reference=pd.Series(dtype=str), ai_right=pd.Series(dtype=bool),
                           ai_melanoma_flag=pd.Series(dtype=bool),
                           experience=pd.Series(dtype=str))
    done = done.merge(cases[["index", "reference", "ai_melanoma_flag"]], left_on="case_index",
                      right_on="index", how="left").drop(columns="index")
    done["ai_right"] = done["ai_answer"] == done["reference"]
    done["experience"] = done["reader"].map(experiences).fillna("not given")
    return done


def balanced_accuracy(reference, answer, weights=None) -> float:
    """Mean recall over the reference classes present (weighted counts when ``weights``)."""
    reference, answer = np.asarray(reference), np.asarray(answer)
    weights = np.ones(len(reference)) if weights is None else np.asarray(weights, dtype=float)
    recalls = []
    for name in CLASS_NAMES:
        of_class = (reference == name) * weights
        if of_class.sum() > 0:
            recalls.append(float((of_class * (answer == name)).sum() / of_class.sum()))
    return float(np.mean(recalls)) if recalls else float("nan")


def _sensitivity(reference, called_melanoma, weights) -> float:
    melanomas = (np.asarray(reference) == MELANOMA) * weights
    return float((melanomas * called_melanoma).sum() / melanomas.sum()) if melanomas.sum() \
        else float("nan")


def _specificity(reference, called_melanoma, weights) -> float:
    others = (np.asarray(reference) != MELANOMA) * weights
    return float((others * ~np.asarray(called_melanoma, bool)).sum() / others.sum()) \
        if others.sum() else float("nan")


METRICS = {  # name -> (label, function(table, weights) for reader before / after / AI)
    "balanced_accuracy": "balanced accuracy",
    "melanoma_sensitivity": "melanoma sensitivity",
    "melanoma_specificity": "melanoma specificity",
}
WHO = ("before", "after", "ai")


def _scores(table: pd.DataFrame, weights: np.ndarray) -> dict:
    reference = table["reference"].to_numpy()
    answers = {"before": table["first_answer"].to_numpy(),
               "after": table["final_answer"].to_numpy(), "ai": table["ai_answer"].to_numpy()}
    melanoma_calls = {"before": answers["before"] == MELANOMA,
                      "after": answers["after"] == MELANOMA,
                      "ai": table["ai_melanoma_flag"].to_numpy(bool)}
    scores = {}
    for who in WHO:
        scores[("balanced_accuracy", who)] = balanced_accuracy(reference, answers[who], weights)
        scores[("melanoma_sensitivity", who)] = _sensitivity(reference, melanoma_calls[who],
                                                             weights)
        scores[("melanoma_specificity", who)] = _specificity(reference, melanoma_calls[who],
                                                             weights)
    return scores


def score_with_intervals(table: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES,
                         seed: int = 0) -> pd.DataFrame:
    """Each metric for the reader before AI, after AI and the AI alone, with a 95% percentile
    bootstrap interval: cases resampled, and readers too when there are several (each answer
    weighted by how often its reader and its case were drawn).

    Returns one row per metric: ``metric``, then ``before``, ``before_low``, ``before_high``,
    ``after``..., ``ai``..., and ``answers``, ``cases``, ``readers``.
    """
    columns = ["metric", *[f"{who}{suffix}" for who in WHO for suffix in ("", "_low", "_high")],
               "answers", "cases", "readers"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    point = _scores(table, np.ones(len(table)))
    cases = np.sort(table["case_index"].unique())
    readers = np.sort(table["reader"].unique())
    case_position = np.searchsorted(cases, table["case_index"].to_numpy())
    reader_position = np.searchsorted(readers, table["reader"].to_numpy())
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in point}
    for _ in range(samples):
        case_counts = np.bincount(rng.integers(len(cases), size=len(cases)),
                                  minlength=len(cases))
        reader_counts = (np.bincount(rng.integers(len(readers), size=len(readers)),
                                     minlength=len(readers)) if len(readers) > 1
                         else np.ones(1, dtype=int))
        weights = case_counts[case_position] * reader_counts[reader_position]
        if weights.sum() == 0:
            continue
        for key, value in _scores(table, weights).items():
            draws[key].append(value)
    rows = []
    for metric in METRICS:
        row = {"metric": METRICS[metric]}
        for who in WHO:
            values = np.array(draws[(metric, who)], dtype=float)
            values = values[~np.isnan(values)]
            row[who] = point[(metric, who)]
            row[f"{who}_low"], row[f"{who}_high"] = (
                (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
                if len(values) else (float("nan"), float("nan")))
        row.update(answers=len(table), cases=len(cases), readers=len(readers))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def switches(table: pd.DataFrame) -> pd.DataFrame:
    """Per support form: answers, changed answers, helped (wrong -> right), misled (right ->
    wrong), and with the AI wrong: how often the final answer was the AI's, and how often the
    reader switched to it."""
    rows = []
    for form, group in table.groupby("support_form", sort=True):
        first_right = group["first_answer"] == group["reference"]
        final_right = group["final_answer"] == group["reference"]
        ai_wrong = ~group["ai_right"]
        ended_on_ai = group["final_answer"] == group["ai_answer"]
        rows.append({
            "support_form": form, "answers": len(group),
            "changed": int((group["first_answer"] != group["final_answer"]).sum()),
            "helped": int((~first_right & final_right).sum()),
            "misled": int((first_right & ~final_right).sum()),
            "ai_wrong": int(ai_wrong.sum()),
            # without support the reader never saw the AI's answer: following it is undefined
            "followed_wrong_ai": None if form == "none" else int((ai_wrong & ended_on_ai).sum()),
            "switched_to_wrong_ai": None if form == "none" else int(
                (ai_wrong & ended_on_ai & (group["first_answer"] != group["ai_answer"])).sum()),
        })
    return pd.DataFrame(rows, columns=["support_form", "answers", "changed", "helped", "misled",
                                       "ai_wrong", "followed_wrong_ai", "switched_to_wrong_ai"])


def melanoma_management(table: pd.DataFrame) -> dict:
    """Among reference melanomas with a management decision: how many the readers would have
    reassured (sent home) before and after AI support."""
    melanomas = table[(table["reference"] == MELANOMA) & table["first_management"].notna()]
    return {"melanomas": len(melanomas),
            "reassured_before": int((melanomas["first_management"] == "reassure").sum()),
            "reassured_after": int((melanomas["final_management"] == "reassure").sum())}


def results(study: Study, answers: pd.DataFrame, experiences: dict[str, str],
            samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """The whole read-out of a study (or of one reader, given only their answers).

    Returns ``{"table", "overall", "by_ai", "by_form", "by_experience", "switches",
    "management", "summary"}``: the answer table, score frames (see ``score_with_intervals``;
    the split ones have a ``group`` column), the switch counts, the melanoma management counts and
    a plain-language paragraph.
    """
    table = answer_table(study, answers, experiences)

    def split(column: str, names=None) -> pd.DataFrame:
        frames = []
        for value, group in table.groupby(column, sort=True):
            frame = score_with_intervals(group, samples, seed)
            frame.insert(0, "group", names.get(value, value) if names else value)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    read_out = {
        "table": table,
        "overall": score_with_intervals(table, samples, seed),
        "by_ai": split("ai_right", {True: "AI right", False: "AI wrong"}),
        "by_form": split("support_form", SUPPORT_FORMS),
        "by_experience": split("experience"),
        "switches": switches(table),
        "management": melanoma_management(table),
    }
    read_out["summary"] = summary(study, read_out)
    return read_out


def summary(study: Study, read_out: dict) -> str:
    """A plain-language paragraph of the read-out."""
    table, overall = read_out["table"], read_out["overall"]
    if table.empty:
        return "No case has been completed yet."
    accuracy = overall.iloc[0]
    moves = read_out["switches"]

    def interval(who: str) -> str:
        return (f"{accuracy[who]:.2f} (95% interval {accuracy[f'{who}_low']:.2f}-"
                f"{accuracy[f'{who}_high']:.2f})")

    readers = table["reader"].nunique()
    text = [f"{readers} reader{'s' if readers != 1 else ''} completed {len(table)} "
            f"case reading{'s' if len(table) != 1 else ''} of {table['case_index'].nunique()} "
            f"cases with {study.model_name} v{study.model_version}. Balanced accuracy (the mean "
            f"recall over the diagnoses) was {interval('before')} on the image alone and "
            f"{interval('after')} after AI support; the AI alone scored {interval('ai')} on the "
            "same cases."]
    by_ai = read_out["by_ai"]
    for group, words in (("AI wrong", "When the AI was wrong"), ("AI right",
                                                                  "When it was right")):
        rows = by_ai[(by_ai["group"] == group) & (by_ai["metric"] == "balanced accuracy")] \
            if not by_ai.empty else by_ai
        if not rows.empty:
            row = rows.iloc[0]
            text.append(f"{words}, readers' balanced accuracy went from {row['before']:.2f} to "
                        f"{row['after']:.2f} ({_readings(int(row['answers']))}).")
    helped, misled = int(moves["helped"].sum()), int(moves["misled"].sum())
    text.append(f"AI support turned {helped} wrong answer{'s' if helped != 1 else ''} right "
                f"and {misled} right answer{'s' if misled != 1 else ''} wrong.")
    shown = moves[moves["support_form"] != "none"]  # readings where the AI's answer was seen
    wrong = int(shown["ai_wrong"].sum())
    if wrong:
        followed = int(shown["followed_wrong_ai"].sum())
        text.append(f"When the AI was wrong and its answer was shown, readers ended on it in "
                    f"{followed} of {_readings(wrong)} ({100 * followed / wrong:.0f}%), a measure "
                    "of automation bias.")
    management = read_out["management"]
    if management["melanomas"]:
        text.append(f"Of {management['melanomas']} melanoma readings with a management "
                    f"decision, {management['reassured_before']} would have been reassured "
                    f"before AI support and {management['reassured_after']} after.")
    text.append("Small studies give wide intervals: read the intervals, not only the figures.")
    return " ".join(text)


def _readings(count: int) -> str:
    return f"{count} reading{'s' if count != 1 else ''}"


def export_csv(study: Study, table: pd.DataFrame) -> bytes:
    """Every completed answer as CSV, readers under pseudonyms (``Study.pseudonym``)."""
    columns = ["study", "reader", "experience", "case", "position", "support_form", "reference",
               "ai_answer", "ai_right", "first_answer", "first_management", "first_confidence",
               "first_seconds", "final_answer", "final_management", "final_confidence",
               "final_seconds", "model_id", "model_version"]
    if table.empty:
        return pd.DataFrame(columns=columns).to_csv(index=False).encode()
    frame = table.assign(study=study.name, reader=table["reader"].map(study.pseudonym),
                         case=table["case_index"] + 1, position=table["position"] + 1)
    return frame[columns].to_csv(index=False).encode()
