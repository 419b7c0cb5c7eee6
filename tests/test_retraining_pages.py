"""Retraining in the dashboard: approving corrections (Reviewer feedback), starting a run,
its progress and the version history (Models). Administrators act; reviewers only see."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lesionlib import model_versions, retraining_job
from lesionlib.feedback import FeedbackRecord, FeedbackStore
from test_pages import app_env, assert_ok, no_dataset, open_page, page_weights, texts  # noqa: F401

pytestmark = pytest.mark.slow


def _correction(reviewer: str, case_id: str = "upload-1") -> FeedbackRecord:
    return FeedbackRecord(case_id=case_id, source="case_review", model_id="tiny0.test",
                          model_version="1.0.0", predicted_class="nv", agree=False,
                          corrected_class="mel", note="", reviewer=reviewer)


@pytest.fixture
def reviewer(monkeypatch):
    from app import auth

    user = auth.User(username="bob", display_name="Bob", role="reviewer")
    monkeypatch.setattr(auth, "gate", lambda store=None: user)
    return user


def test_admin_approves_a_correction(no_dataset):
    store = FeedbackStore()
    record_id = store.add(_correction("alice"))
    app = open_page("feedback")
    assert_ok(app)
    assert "0 cases would enter retraining" in texts(app)
    app.selectbox(key="correction_record").set_value(record_id)
    app.radio(key="correction_decision").set_value("approve")
    app.button(key="FormSubmitter:correction_decision_form-Record verdict").click().run()
    assert_ok(app)
    assert f"Record {record_id}: approve recorded" in texts(app)
    assert list(store.correction_decisions()["admin"]) == ["local"]
    assert "1 case would enter retraining" in texts(open_page("feedback"))  # not "1 cases"


def test_admin_cannot_approve_own_correction(no_dataset):
    FeedbackStore().add(_correction("local"))
    app = open_page("feedback")
    app.button(key="FormSubmitter:correction_decision_form-Record verdict").click().run()
    assert_ok(app)
    assert any("own correction" in error.value for error in app.error)


def test_reviewer_sees_corrections_but_cannot_act(no_dataset, reviewer):
    FeedbackStore().add(_correction("bob"))
    app = open_page("feedback")
    assert_ok(app)
    assert "Only administrators approve corrections" in texts(app)
    assert not [form for form in app.get("form") if "correction" in str(form.proto)]
    models = open_page("models")
    assert_ok(models)
    assert "Only administrators" in texts(models)
    assert "retrain_model" not in [box.key for box in models.selectbox]


def test_admin_starts_a_run_in_the_background(no_dataset, monkeypatch):
    started = []
    monkeypatch.setattr(retraining_job, "start", lambda *args, **kwargs: started.append(
        (args, kwargs)) or 4242)
    app = open_page("models")
    assert_ok(app)
    assert "Version history" in texts(app)
    app.selectbox(key="retrain_model").set_value("tiny1.test")
    app.button(key="FormSubmitter:retrain_form-Start retraining").click().run()
    assert_ok(app)
    (weights, model_id, user, options), keywords = started[0]
    assert (model_id, user, keywords["command"]) == ("tiny1.test", "local", "retrain")
    assert "process 4242" in texts(app)


def test_a_running_job_shows_progress_and_refuses_a_second(no_dataset):
    weights = os.environ["LESIONLIB_WEIGHTS"]
    folder = retraining_job.job_dir(weights)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / retraining_job.LOCK_FILE).write_text(json.dumps(
        {"pid": os.getpid(), "user": "alice", "model_id": "tiny0.test", "token": "t"}))
    (folder / retraining_job.PROGRESS_FILE).write_text(json.dumps(
        {"stage": "training", "epoch": 1, "epochs": 4, "eta_s": 125}))
    (folder / retraining_job.LOG_FILE).write_text("[fine_tune] epoch 1: loss 0.9\n")
    try:
        app = open_page("models")
        assert_ok(app)
        shown = texts(app)
        assert "epoch 1 of 4" in shown and "2 min 5 s left" in shown
        assert "A second run cannot start" in shown
        assert "retrain_model" not in [box.key for box in app.selectbox]
        assert "epoch 1: loss 0.9" in app.code[0].value
    finally:
        shutil.rmtree(folder)
    assert model_versions.history(weights, "tiny0.test")["status"].tolist() == ["live"]


def test_a_reviewer_never_sees_another_reviewers_cases_or_names(no_dataset, reviewer):
    """Upload names are case references and can carry patient identifiers: Bob sees his own
    correction and nothing of Carol's, neither in the accepted cases nor in the excluded ones."""
    store = FeedbackStore()
    store.add(_correction("bob", "bob-case.jpg"))
    carol = store.add(_correction("carol", "Patient-John-Smith-1970-03-02.jpg"))
    store.add(_correction("carol", "shared.jpg"))
    store.add(_correction("bob", "shared.jpg"))  # two reviewers agree: accepted
    app = open_page("feedback")
    assert_ok(app)
    shown = texts(app) + "\n".join(str(frame.value) for frame in app.dataframe)
    assert "John-Smith" not in shown and "carol" not in shown
    assert "bob-case.jpg" in shown and "shared.jpg" in shown
    assert str(carol) not in " ".join(str(frame.value["record_ids"].tolist())
                                      for frame in app.dataframe if "record_ids" in frame.value)


def test_a_reviewer_sees_no_server_folder(no_dataset, reviewer, page_weights):
    """"8 models in /srv/.../weights" told a signed-in reviewer where the server keeps its
    files; only administrators see the folders."""
    for page in ("models", "explorer", "teaching"):
        app = open_page(page)
        assert_ok(app)
        assert str(page_weights) not in texts(app), page
    import lesionlib.data

    assert str(lesionlib.data.SHARED_DATA) not in texts(open_page("explorer"))


def test_counts_read_as_plain_english(no_dataset, reviewer):
    FeedbackStore().add(_correction("bob"))
    content = texts(open_page("feedback"))
    assert "1 record" in content and "1 records" not in content
    assert "1 disagreement" in content and "1 disagreements" not in content
