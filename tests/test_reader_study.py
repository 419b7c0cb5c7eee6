"""lesionlib.reader_study: plans, storage, and read-outs equal to figures computed by hand."""

from __future__ import annotations

import dataclasses
import io

import pandas as pd
import pytest

from lesionlib import reader_results, reader_study
from lesionlib.reader_study import ReaderStudyStore, StudyCase, StudyInputError

REFERENCES = ["mel", "nv", "mel", "bkl"]
AI_ANSWERS = ["mel", "nv", "nv", "bkl"]  # wrong on case 2 only
AI_FLAGS = [True, False, False, False]
#                 first                     final                  first / final management
READERS = {"ana": (["nv", "nv", "mel", "bkl"], ["mel", "nv", "nv", "bkl"],
                   ["reassure", None, "excise", None], ["excise", None, "reassure", None]),
           "ben": (["mel", "mel", "nv", "nv"], ["mel", "nv", "nv", "bkl"],
                   ["excise", None, "reassure", None], ["excise", None, "reassure", None])}


@dataclasses.dataclass
class Card:
    id: str = "tiny.test"
    version: str = "1.0.0"
    name: str = "Tiny"
    intended_use: str = "decision support for review and teaching, not a diagnosis"
    melanoma_threshold: float = 0.3


def make_study(forms=("probabilities",), assignment="per_case", count=4, name="Pilot"):
    cases = [StudyCase(index=index, file=f"/nowhere/{index}.jpg",
                       reference=REFERENCES[index % 4], source="samples",
                       ai_probabilities={"mel": 0.9 if AI_FLAGS[index % 4] else 0.1},
                       ai_answer=AI_ANSWERS[index % 4], ai_melanoma_probability=0.5,
                       ai_melanoma_flag=AI_FLAGS[index % 4]) for index in range(count)]
    return reader_study.new_study(name, Card(), "samples", forms, assignment, 7, True, True,
                                  cases, "boss")


@pytest.fixture()
def store(tmp_path):
    store = ReaderStudyStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    yield store
    store.close()


def scripted_answers(store, study):
    for reader, (first, final, first_management, final_management) in READERS.items():
        for index in range(4):
            store.record_first(study, reader, index, index, "probabilities", first[index],
                               first_management[index], 3, 10.0)
            store.record_final(study, reader, index, final[index], final_management[index],
                               4, 5.0)
    return store.answers(study)


def test_scripted_study_read_out_equals_hand_computed_figures(store):
    study = store.create(make_study())
    read_out = reader_results.results(study, scripted_answers(store, study),
                                    {"ana": "student", "ben": "dermatologist"}, samples=200)
    overall = read_out["overall"].set_index("metric")
    # by hand: before, per class mel 2/4, nv 1/2, bkl 1/2; after mel 2/4, nv 2/2, bkl 2/2
    assert overall.loc["balanced accuracy", "before"] == pytest.approx(0.5)
    assert overall.loc["balanced accuracy", "after"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert overall.loc["balanced accuracy", "ai"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert overall.loc["melanoma sensitivity", ["before", "after", "ai"]].tolist() == \
        pytest.approx([0.5, 0.5, 0.5])
    assert overall.loc["melanoma specificity", ["before", "after", "ai"]].tolist() == \
        pytest.approx([0.75, 1.0, 1.0])
    assert overall.loc["balanced accuracy", "answers"] == 8
    assert overall.loc["balanced accuracy", "readers"] == 2
    low, high = overall.loc["balanced accuracy", ["before_low", "before_high"]]
    assert low <= 0.5 <= high and low < high
    by_ai = read_out["by_ai"].set_index(["group", "metric"])
    assert by_ai.loc[("AI wrong", "balanced accuracy"), "before"] == pytest.approx(0.5)
    assert by_ai.loc[("AI wrong", "balanced accuracy"), "after"] == pytest.approx(0.0)
    moves = read_out["switches"].set_index("support_form").loc["probabilities"]
    assert moves[["answers", "changed", "helped", "misled", "ai_wrong", "followed_wrong_ai",
                  "switched_to_wrong_ai"]].tolist() == [8, 4, 3, 1, 2, 2, 1]
    assert read_out["management"] == {"melanomas": 4, "reassured_before": 2,
                                      "reassured_after": 2}
    experience = read_out["by_experience"].set_index(["group", "metric"])
    # ana alone: before mel 1/2, nv 1/1, bkl 1/1
    assert experience.loc[("student", "balanced accuracy"), "before"] == \
        pytest.approx((0.5 + 1 + 1) / 3)
    assert "turned 3 wrong answers right and 1 right answer wrong" in read_out["summary"]
    assert "its answer was shown, readers ended on it in 2 of 2 readings (100%)" in \
        read_out["summary"]


def test_export_uses_pseudonyms(store):
    study = store.create(make_study())
    table = reader_results.answer_table(study, scripted_answers(store, study), {})
    text = reader_results.export_csv(study, table).decode()
    frame = pd.read_csv(io.StringIO(text))
    fields = set(frame.astype(str).to_numpy().ravel())
    assert not fields & {"ana", "ben"}
    assert sorted(frame["reader"].unique()) == sorted({study.pseudonym("ana"),
                                                       study.pseudonym("ben")})
    assert frame["case"].min() == 1 and len(frame) == 8


def test_a_committed_answer_is_never_changed(store):
    study = store.create(make_study())
    store.record_first(study, "ana", 0, 0, "probabilities", "nv", None, None, 3.0)
    store.record_first(study, "ana", 0, 0, "probabilities", "mel", None, None, 1.0)  # 2nd tab
    store.record_final(study, "ana", 0, "bcc", None, None, 2.0)
    store.record_final(study, "ana", 0, "df", None, None, 2.0)
    answers = store.answers(study, "ana")
    assert answers[["first_answer", "final_answer"]].values.tolist() == [["nv", "bcc"]]
    assert store.answers(study, "ben").empty  # a reader's own answers only


def test_without_support_the_first_answer_is_final(store):
    study = store.create(make_study(forms=("none",)))
    store.record_first(study, "ana", 2, 0, "none", "nv", None, None, 3.0)  # the AI says nv
    row = store.answers(study).iloc[0]
    assert row["final_answer"] == "nv" and row["final_seconds"] == 0
    read_out = reader_results.results(study, store.answers(study), {}, samples=20)
    moves = read_out["switches"].iloc[0]
    assert moves["ai_wrong"] == 1 and pd.isna(moves["followed_wrong_ai"])  # never shown
    assert "automation bias" not in read_out["summary"]


def test_progress_follows_the_readers_own_order(store):
    study = store.create(make_study())
    plan = study.plan("ana")
    assert sorted(index for index, _ in plan) == [0, 1, 2, 3]
    assert study.plan("ana") == plan  # deterministic
    state = reader_study.progress(study, store.answers(study), "ana")
    assert state["done"] == 0 and state["next"][1] == plan[0][0]
    store.record_first(study, "ana", plan[0][0], 0, plan[0][1], "nv", None, None, 1.0)
    state = reader_study.progress(study, store.answers(study), "ana")
    assert state["awaiting_final"] and state["next"][1] == plan[0][0]
    store.record_final(study, "ana", plan[0][0], "nv", None, None, 1.0)
    assert reader_study.progress(study, store.answers(study), "ana")["next"][1] == plan[1][0]


def test_assignments():
    forms = ("none", "probabilities", "heatmap")
    per_case = make_study(forms, "per_case", count=12)
    assert dict(per_case.plan("ana")) == dict(per_case.plan("ben"))  # same form per case
    balanced = make_study(forms, "balanced", count=12)
    counts = pd.Series([form for _, form in balanced.plan("ana")]).value_counts()
    assert counts.to_dict() == {"none": 4, "probabilities": 4, "heatmap": 4}
    assert [index for index, _ in balanced.plan("ana")] != \
        [index for index, _ in balanced.plan("ben")]
    randomised = make_study(forms, "randomised", count=12)
    assert set(form for _, form in randomised.plan("ana")) <= set(forms)


def test_bad_studies_are_refused_with_what_was_expected(store):
    with pytest.raises(StudyInputError, match="expected one or more of"):
        make_study(forms=("telepathy",))
    with pytest.raises(StudyInputError, match="name of 1 to 120"):
        make_study(name="   ")
    store.create(make_study(name="Pilot"))
    with pytest.raises(StudyInputError, match="exists already"):
        store.create(make_study(name=" pilot "))
    assert store.find("PILOT").name == "Pilot"
    with pytest.raises(StudyInputError, match="Diagnosis: expected one of"):
        store.record_first(store.find("Pilot"), "ana", 0, 0, "none", "cat", None, None, 1.0)


def test_experience_is_recorded_once(store):
    store.set_experience("ana", "student")
    store.set_experience("ana", "dermatologist")
    assert store.experience("ana") == "student" and store.experience("ben") is None
    with pytest.raises(StudyInputError):
        store.set_experience("ben", "wizard")


def test_case_lists_are_balanced_over_classes_and_seeded(tmp_path):
    from conftest import REPO_ROOT

    folders = {"samples": REPO_ROOT / "sample_images"}
    first = reader_study.case_list("samples", folders, 14, seed=3)
    assert first.equals(reader_study.case_list("samples", folders, 14, seed=3))
    assert first["reference"].value_counts().max() == 2  # 7 classes x 2
    with pytest.raises(StudyInputError, match="no labels.csv"):
        reader_study.case_list("ph2", {"ph2": None}, 5, seed=1)
    (tmp_path / "labels.csv").write_text("file,diagnosis\na.jpg,mel\n")
    with pytest.raises(StudyInputError, match="no diagnosis column"):
        reader_study.case_list("folder", {}, 5, seed=1, folder=tmp_path)
