"""Retraining from reviewers' corrections, end to end on the tiny models and a tiny dataset:
corrections -> approved -> challenger -> compared -> promoted or rejected -> rolled back."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import build_tiny_weights
from lesionlib import (cli, corrections, model_versions, promotion, registry, retraining,
                       retraining_job)
from lesionlib.cards import read_card
from lesionlib.feedback import FeedbackRecord, FeedbackStore
from lesionlib.integrity import verify_folder
from retraining_fixtures import build_tiny_data, image_bytes

WIDE = tuple((s, m, h, 1.0) for s, m, h, _ in retraining.GATES)  # any challenger passes
IMPOSSIBLE = tuple((s, m, h, -1.0) for s, m, h, _ in retraining.GATES)  # none can


def _record(case_id, reviewer, corrected, image=None, agree=False):
    return FeedbackRecord(case_id=case_id, source="case_review", model_id="tiny0.test",
                          model_version="1.0.0", predicted_class="nv", agree=agree,
                          corrected_class=corrected, note="", reviewer=reviewer,
                          image_sha256=hashlib.sha256(image).hexdigest() if image else None,
                          image_png=image)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny weights evaluated (and tiny0 gated) on a tiny dataset; an empty feedback store."""
    root = tmp_path_factory.mktemp("retraining")
    with pytest.MonkeyPatch.context() as patch:
        ham = build_tiny_data(root / "data")
        patch.setenv("LESIONLIB_DATA", str(ham))
        patch.setattr("lesionlib.data.CACHE_DIR", root / "cache")
        weights = build_tiny_weights(root / "weights")
        assert cli.main(["evaluate", "--weights", str(weights), "--report-dir",
                         str(root / "reports")]) == 0
        assert cli.main(["fit-gate", "--model", "tiny0.test", "--weights", str(weights),
                         "--per-class", "4"]) == 0
        store = FeedbackStore(f"sqlite:///{root / 'feedback.db'}")
        yield {"root": root, "ham": ham, "weights": weights, "store": store}


def test_one_reviewer_alone_never_enters_training():
    records = pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6], "case_id": ["a", "b", "b", "c", "c", "d"],
        "agree": [False] * 6, "corrected_class": ["mel", "bkl", "bkl", "nv", "mel", "df"],
        "reviewer": ["alice", "alice", "bob", "alice", "bob", "carol"],
        "image_sha256": [None] * 6, "has_image": [False] * 6})
    decisions = pd.DataFrame(columns=["id", "record_id", "decision", "admin"])
    accepted, excluded = corrections.select_corrections(records, decisions)
    assert list(accepted["case_id"]) == ["b"]  # two reviewers, same class
    assert "2 reviewers agree" in accepted["basis"].iloc[0]
    reasons = dict(zip(excluded["case_id"], excluded["reason"]))
    assert reasons["a"].startswith("awaiting approval") and reasons["d"].startswith("awaiting")
    assert reasons["c"].startswith("awaiting")  # two reviewers, two different classes
    approved = pd.DataFrame({"id": [1, 2], "record_id": [1, 4], "decision": ["approve"] * 2,
                             "admin": ["boss"] * 2})
    accepted, excluded = corrections.select_corrections(records, approved)
    assert sorted(accepted["case_id"]) == ["a", "b", "c"]  # c: the approved class only
    assert accepted.set_index("case_id").loc["c", "corrected_class"] == "nv"
    withdrawn = pd.concat([approved, pd.DataFrame({"id": [3], "record_id": [1],
                                                   "decision": ["reject"], "admin": ["boss"]})])
    accepted, excluded = corrections.select_corrections(records, withdrawn)
    assert "a" not in set(accepted["case_id"])  # the latest verdict counts
    fixed = corrections.FixedSets(frozenset({"b"}), frozenset())
    accepted, excluded = corrections.select_corrections(records, decisions, fixed)
    assert accepted.empty and "fixed evaluation set" in excluded.set_index("case_id").loc[
        "b", "reason"]


def test_fixed_sets_are_the_evaluated_splits_only(tmp_path):
    """HAM10000 val/test, ISIC 2017 val+test and all of PH2 are fixed; ISIC 2017 train is not."""
    def write(name, rows):
        (tmp_path / name).mkdir()
        pd.DataFrame(rows).to_csv(tmp_path / name / "labels.csv", index=False)

    write("ham10000", [{"image_id": f"H_{split}", "file": f"images/H_{split}.png", "label": 5,
                        "split_lesion_grouped": split, "sha256": f"h{split}"}
                       for split in ("train", "val", "test")])
    write("isic2017", [{"image_id": f"I_{split}", "file": f"images/I_{split}.png",
                        "label_ham": 4, "split": split, "sha256": f"i{split}"}
                       for split in ("train", "val", "test")])
    write("ph2", [{"image_id": "P_1", "file": "images/P_1.png", "label_ham": 4, "sha256": "p1"}])
    fixed = corrections.fixed_sets(tmp_path / "ham10000", {name: tmp_path / name
                                                           for name in ("isic2017", "ph2")})
    assert fixed.image_ids == {"H_val", "H_test", "I_val", "I_test", "P_1"}
    assert fixed.contains("upload", "itest") and not fixed.contains("upload", "itrain")


def test_nobody_approves_their_own_correction(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    own = store.add(_record("x", "boss", "mel"))
    agreeing = store.add(_record("y", "alice", None, agree=True))
    with pytest.raises(ValueError, match="own correction"):
        store.decide_correction(own, "approve", "boss")
    with pytest.raises(ValueError, match="not a correction"):
        store.decide_correction(agreeing, "approve", "boss")
    with pytest.raises(KeyError):
        store.decide_correction(999, "approve", "boss")
    store.decide_correction(own, "reject", "boss")  # rejecting one's own is allowed
    assert list(store.correction_decisions()["decision"]) == ["reject"]
    assert store.audit_log()["event"].iloc[0] == "reject-correction"


def test_compare_flags_each_figure_beyond_tolerance():
    live = {"ham10000_test": {"balanced_accuracy": 0.70, "ece": 0.03, "melanoma_auc": 0.85}}
    slightly_worse = {"ham10000_test": {"balanced_accuracy": 0.695, "ece": 0.035,
                                        "melanoma_auc": 0.86}}
    passed, table = retraining.compare(live, slightly_worse)
    assert passed and set(table["verdict"]) == {"ok", "not measured"}
    worse = {"ham10000_test": {"balanced_accuracy": 0.70, "ece": 0.05, "melanoma_auc": 0.85}}
    passed, table = retraining.compare(live, worse)
    assert not passed and "ece 0.0300 -> 0.0500" in retraining.rejection_reason(table)
    passed, table = retraining.compare(live, {"ham10000_test": {"balanced_accuracy": 0.8}})
    assert not passed and "not measured for the challenger" in retraining.rejection_reason(table)


def _options(world, gates, ensemble_gates=None):
    return retraining.Options(model_id="tiny0.test", weights_dir=world["weights"],
                              ham10000=world["ham"], epochs=1, learning_rate=1e-3,
                              user="boss", command="python -m lesionlib retrain", gates=gates,
                              ensemble_gates=gates if ensemble_gates is None else ensemble_gates)


@pytest.mark.slow
def test_nothing_to_train_on_is_refused(world, tmp_path):
    empty = FeedbackStore(f"sqlite:///{tmp_path / 'empty.db'}")
    empty.add(_record("lonely", "alice", "mel", image_bytes(np.random.default_rng(1), 4)))
    with pytest.raises(retraining.RetrainingError, match="Nothing to train on"):
        retraining.run(_options(world, WIDE), empty)
    with pytest.raises(retraining.RetrainingError, match="ensemble"):
        retraining.run(retraining.Options(model_id="ensemble.ham10000",
                                          weights_dir=world["weights"], ham10000=world["ham"]),
                       empty)


@pytest.mark.slow
def test_full_loop_promote_then_rollback_then_reject(world):
    store, weights, ham = world["store"], world["weights"], world["ham"]
    upload = image_bytes(np.random.default_rng(7), 4)
    approved = store.add(_record("upload-1", "alice", "mel", upload))
    store.decide_correction(approved, "approve", "boss")
    for reviewer in ("alice", "bob"):  # consensus on a HAM10000 training image: relabelled
        store.add(_record("HAMX_train_nv_0.png", reviewer, "bkl"))
        store.add(_record("HAMX_test_mel_0", reviewer, "nv"))  # a test image: never trained on
    store.add(_record("upload-2", "carol", "df", image_bytes(np.random.default_rng(8), 3)))
    new_images = world["root"] / "new_images"
    (new_images / "images").mkdir(parents=True)
    (new_images / "images" / "n1.png").write_bytes(image_bytes(np.random.default_rng(9), 1))
    fixed_file = ham / "images" / "HAMX_val_bcc_0.png"  # a copy of a validation image: refused
    (new_images / "images" / "leak.png").write_bytes(fixed_file.read_bytes())
    pd.DataFrame({"image_id": ["n1", "leak"], "file": ["images/n1.png", "images/leak.png"],
                  "label": ["bcc", "1"]}).to_csv(new_images / "labels.csv", index=False)
    steps = []
    options = _options(world, WIDE)
    options.new_images = new_images
    decision = retraining.run(options, store, progress=lambda stage, **_: steps.append(stage))

    assert decision["promoted"] and decision["version"] == "1.1.0"
    assert (decision["corrections"], decision["new_images"]) == (2, 1)
    reasons = " ".join(row["reason"] for row in decision["left_out"])
    assert "fixed evaluation set" in reasons and "awaiting approval" in reasons
    assert steps[0] == "collecting" and "training" in steps and steps[-1] == "done"
    catalogue = registry.discover(weights)
    assert not catalogue.problems, catalogue.problems
    live = catalogue.cards["tiny0.test"]
    lineage = live.training["lineage"]
    assert live.version == "1.1.0" and lineage["parent_version"] == "1.0.0"
    assert live.training["retraining"]["corrections"] == 2
    assert "ham10000_test/balanced_accuracy" in lineage["metric_deltas"]
    assert (live.folder / "quality_gate.npz").is_file()  # its own gate, sealed
    assert set(live.metrics) == {"ham10000_val", "ham10000_test", "isic2017", "ph2"}
    ensemble = catalogue.cards["ensemble.ham10000"]
    assert ensemble.version == "1.1.0" and "tiny0.test v1.0.0 -> v1.1.0" in \
        ensemble.training["lineage"]["changes"]
    assert model_versions.archived_versions(weights, "tiny0.test") == ["1.0.0"]
    verify_folder(model_versions.archived_folder(weights, "tiny0.test", "1.0.0"))
    history = model_versions.history(weights, "tiny0.test")
    assert list(zip(history["version"], history["status"])) == [("1.1.0", "live"),
                                                                 ("1.0.0", "archived")]

    promotion.rollback(weights, "tiny0.test", "1.0.0", "boss", store, ham)
    catalogue = registry.discover(weights)
    assert catalogue.cards["tiny0.test"].version == "1.0.0" and not catalogue.problems
    audit = store.audit_log()
    assert list(audit.loc[audit["event"] == "rollback", "detail"]) == [
        "tiny0.test v1.1.0 -> v1.0.0"]
    with pytest.raises(KeyError, match="archived"):
        promotion.rollback(weights, "tiny0.test", "9.9.9", "boss", store)

    rejected = retraining.run(_options(world, IMPOSSIBLE), store)
    assert not rejected["promoted"] and rejected["version"] == "1.2.0"
    assert "tolerance -1.0" in rejected["reason"]
    assert registry.discover(weights).cards["tiny0.test"].version == "1.0.0"  # unchanged
    history = model_versions.history(weights, "tiny0.test")
    assert dict(zip(history["version"], history["status"])) == {
        "1.2.0": "rejected candidate", "1.1.0": "archived", "1.0.0": "live"}
    saved = json.loads(next((model_versions.retraining_root(weights) / "candidates"
                             / "tiny0.test").glob("*v1.2.0/decision.json")).read_text())
    assert saved["reason"] == rejected["reason"]
    events = list(store.audit_log()["event"])
    assert events.count("retrain") == 2 and "approve-correction" in events

    # A challenger that passes alone but would make an ensemble worse is not promoted; the
    # kept candidate can be judged again (no training) and promoted once the rule allows it.
    candidate = saved["candidate"]
    again = retraining.judge(_options(world, WIDE, IMPOSSIBLE), candidate, store)
    ensemble_version = registry.discover(weights).cards["ensemble.ham10000"].version
    assert not again["promoted"] and again["reason"].startswith(
        f"ensemble ensemble.ham10000 v{ensemble_version} with the challenger as member:")
    assert again["earlier_verdicts"][-1]["reason"] == rejected["reason"]
    assert again["ensemble_comparisons"][0]["passed"] is False
    assert registry.discover(weights).cards["tiny0.test"].version == "1.0.0"
    promoted = retraining.judge(_options(world, WIDE), candidate, store)
    assert promoted["promoted"] and "alone and in 1 ensemble(s)" in promoted["reason"]
    catalogue = registry.discover(weights)
    assert catalogue.cards["tiny0.test"].version == "1.2.0" and not catalogue.problems
    assert catalogue.cards["ensemble.ham10000"].version != ensemble_version  # refreshed
    with pytest.raises(retraining.RetrainingError, match="v1.2.0 is live now"):
        retraining.judge(_options(world, WIDE), next(
            (model_versions.retraining_root(weights) / "candidates" / "tiny0.test")
            .glob("*v1.1.0")), store)


def test_one_run_at_a_time_and_stale_locks_clear(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    token = retraining_job.acquire(weights, "tiny0.test", "boss")
    with pytest.raises(retraining_job.JobRunning, match="still going"):
        retraining_job.acquire(weights, "tiny0.test", "carol")
    retraining_job.release(weights, token)
    lock = retraining_job.job_dir(weights) / retraining_job.LOCK_FILE
    lock.write_text(json.dumps({"pid": 2 ** 22 + 12345, "token": "dead", "created": 0}))
    assert not retraining_job.status(weights).running  # its process is gone: stale
    retraining_job.release(weights, retraining_job.acquire(weights, "tiny0.test", "boss"))


@pytest.mark.slow
def test_background_start_refuses_a_second_and_reports(world):
    weights = world["weights"]
    environment = {**os.environ, "LESIONLIB_DATA": str(world["ham"]),
                   "LESIONLIB_CACHE": str(world["root"] / "cache"),
                   "LESIONLIB_FEEDBACK_URL": f"sqlite:///{world['root'] / 'job.db'}"}
    pid = retraining_job.start(weights, "no.such.model", "boss", env=environment)
    with pytest.raises(retraining_job.JobRunning):
        retraining_job.start(weights, "tiny0.test", "boss", env=environment)
    deadline = time.time() + 300
    while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.time() < deadline:
        time.sleep(0.5)
    status = retraining_job.status(weights)
    assert not status.running
    assert status.progress.get("stage") == "failed"
    assert "Unknown model 'no.such.model'" in status.log_tail


def test_command_line_errors_are_one_line(tiny_weights_dir, tmp_path, capsys):
    database = f"sqlite:///{tmp_path / 'feedback.db'}"
    assert cli.main(["retrain", "--model", "tiny0.test", "--weights", str(tiny_weights_dir),
                     "--new-images", str(tmp_path), "--feedback-url", database]) == 2
    assert "no labels.csv" in capsys.readouterr().err
    assert cli.main(["rollback", "--model", "tiny0.test", "--version", "0.9.0", "--weights",
                     str(tiny_weights_dir), "--feedback-url", database]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "No archived version '0.9.0'" in error
    assert not retraining_job.status(tiny_weights_dir).running  # the lock was released


PROMOTE_SCRIPT = """
import sys
from pathlib import Path
from lesionlib import promotion
print("START", flush=True)
promotion.promote(Path(sys.argv[1]), "tiny0.test", Path(sys.argv[2]), None, log=print)
print("DONE", flush=True)
"""


def _candidate_copy(weights: Path, target: Path, version: str) -> Path:
    """The live tiny0.test as a sealed candidate of another version (its predictions kept)."""
    import dataclasses
    import shutil

    from lesionlib.cards import read_card, write_card
    from lesionlib.integrity import seal

    folder = target / "tiny0.test"
    shutil.copytree(weights / "tiny0.test", folder)
    live = read_card(folder)
    lineage = {**live.training.get("lineage", {}), "parent_version": live.version}
    write_card(dataclasses.replace(live, version=version,
                                   training={**live.training, "lineage": lineage}), folder)
    seal(folder)
    return folder


def _state(weights: Path) -> tuple[str | None, str | None, dict]:
    catalogue = registry.discover(weights)
    member = catalogue.cards.get("tiny0.test")
    ensemble = catalogue.cards.get("ensemble.ham10000")
    return (member.version if member else None, ensemble.version if ensemble else None,
            catalogue.problems)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3, 0.6, 1.2])
def test_a_kill_during_promotion_leaves_a_whole_state_and_a_rerun_finishes_it(
        world, tmp_path, delay):
    """SIGKILL at several moments of a promotion: the old state is whole, or the ensemble is
    refused (never served with members it was not built with), and running the same promotion
    again finishes it."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    weights = tmp_path / "weights"
    shutil.copytree(world["weights"], weights)
    before = _state(weights)
    candidate = _candidate_copy(weights, tmp_path / "candidate", "7.0.0")
    command = [sys.executable, "-c", PROMOTE_SCRIPT, str(weights), str(candidate)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert process.stdout.readline().strip() == "START"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    member, ensemble, problems = _state(weights)
    catalogue = registry.discover(weights)
    if "ensemble.ham10000" in catalogue.cards:  # served: built with the live member, or old
        built = catalogue.cards["ensemble.ham10000"].training.get("member_versions")
        assert (built or {}).get("tiny0.test", member) == member
        if built is None:  # the old ensemble (records no versions): the old member with it
            assert member == before[0]
    else:
        assert "ensemble.ham10000" in problems and "Finish or repeat" in problems[
            "ensemble.ham10000"]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    member, ensemble, problems = _state(weights)
    assert member == "7.0.0" and ensemble not in (None, before[1]) and not problems
    assert promotion.pending_promotion(weights) is None


def test_a_signed_deployment_refuses_retraining_before_training(world, monkeypatch, tmp_path):
    """With LESIONLIB_TRUSTED_KEYS set the server cannot sign a candidate, so a run used to
    train for 43 minutes and then refuse its own challenger. It is refused before anything is
    trained, from the command line and from the dashboard's background job alike."""
    from lesionlib import retraining_job
    from lesionlib.integrity import TRUSTED_KEYS_ENV

    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(tmp_path / "admin.pub"))
    trained = []
    monkeypatch.setattr(retraining, "_train_candidate",
                        lambda *args, **kwargs: trained.append(1))
    with pytest.raises(retraining.RetrainingError, match="signed models.*nothing was trained"):
        retraining.run(_options(world, WIDE), world["store"])
    with pytest.raises(retraining.RetrainingError, match="signed deployment"):
        retraining_job.start(world["weights"], "tiny0.test", "boss")
    assert trained == [] and retraining_job.read_lock(world["weights"]) is None


@pytest.mark.slow
def test_judge_recomputes_the_candidates_metrics_instead_of_trusting_its_card(world, tmp_path):
    """A candidate whose card was edited (and re-sealed) to claim better figures is judged on
    figures recomputed from its weights."""
    import dataclasses
    import shutil

    from lesionlib.cards import write_card
    from lesionlib.integrity import seal

    weights = tmp_path / "weights"
    shutil.copytree(world["weights"], weights)
    candidate = tmp_path / "candidates" / "20260101T000000Z-v5.0.0"
    folder = _candidate_copy(weights, candidate, "5.0.0")
    honest = read_card(folder).metrics["ham10000_test"]["balanced_accuracy"]
    card = read_card(folder)
    forged = {name: {**values, "balanced_accuracy": 0.99} for name, values in card.metrics.items()}
    write_card(dataclasses.replace(card, metrics=forged), folder)
    seal(folder)
    options = _options(world, WIDE)
    options.weights_dir = weights
    decision = retraining.judge(options, candidate, world["store"])
    assert read_card(folder).metrics["ham10000_test"]["balanced_accuracy"] == \
        pytest.approx(honest)
    assert decision["challenger"]["ham10000_test/balanced_accuracy"] != 0.99


@pytest.mark.parametrize("name", ["efficientnet_lite1.ham10000", "small_cnn.ham10000"])
def test_challenger_keeps_the_live_models_training_sets(name):
    """A challenger learns from the sets its live model learned from (the card's recipe), and
    fine-tunes only: no head phase, the given epochs at the given learning rate."""
    card = read_card(Path(__file__).resolve().parents[1] / "weights" / name)
    config = retraining.challenger_config(card, epochs=2, learning_rate=1e-5)
    assert config.extra_training_sets == card.extra_training_sets
    assert config.architecture == card.architecture
    assert (config.head_epochs, config.fine_tune_epochs) == (0, 2)
    assert config.fine_tune_learning_rate == pytest.approx(1e-5)
