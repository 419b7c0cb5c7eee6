"""scripts/benchmarks/ablation_report.py: how a full-budget run is labelled beside the shipped cards."""

from __future__ import annotations

import importlib.util
import json

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "benchmarks" / "ablation_report.py"
spec = importlib.util.spec_from_file_location("ablation_report", SCRIPT)
ablation_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation_report)

RECIPE = {"architecture": "efficientnet_lite2", "image_size": 224, "imagenet": True,
          "head_epochs": 1, "fine_tune_epochs": 2, "batch_size": 32}


def write_run(folder, epochs: int, score: float = 0.7):
    history = [{"phase": "head" if epoch == 0 else "fine_tune", "epoch": max(epoch, 1),
                "val_balanced_accuracy": score, "val_melanoma_auc": 0.9}
               for epoch in range(epochs)]
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps(
        {"config": RECIPE, "history": history,
         "best": {"phase": history[-1]["phase"], "epoch": history[-1]["epoch"]}}))
    return folder


def test_runs_are_labelled_unfinished_unshipped_or_left_to_their_card(tmp_path):
    run = write_run(tmp_path / "runs-v2" / "efficientnet_lite2", epochs=3)
    row = ablation_report.full_run_row(run, shipped=[])
    assert row["lever"].endswith("(version 2 recipe, full budget, finished, not shipped)")
    assert row["val_balanced_accuracy"] == 0.7 and row["status"] == "done"
    shipped = [{**row, "lever": "efficientnet_lite2.ham10000 v2.0.0 (shipped)"}]
    assert ablation_report.full_run_row(run, shipped) is None  # its card's row stands for it
    partial = write_run(tmp_path / "other" / "efficientnet_lite2", epochs=2, score=0.6)
    row = ablation_report.full_run_row(partial, shipped)
    assert row["lever"].endswith("in training)") and row["status"] == "2/3 epochs"


def test_a_card_that_records_its_checkpoint_is_matched_exactly(tmp_path):
    run = write_run(tmp_path / "runs-v2" / "efficientnet_lite2", epochs=3)
    (run / "best.keras").write_bytes(b"the kept checkpoint")
    row = ablation_report.full_run_row(run, shipped=[])
    digest = ablation_report.sha256_of(run / "best.keras")
    # same recipe and score as the run, but the card records another checkpoint: not its run
    other = {**row, "lever": "efficientnet_lite2.ham10000 v3.0.0 (shipped)",
             "checkpoint_sha256": "0" * 64}
    assert ablation_report.full_run_row(run, [other])["lever"].endswith("not shipped)")
    assert ablation_report.full_run_row(run, [{**other, "checkpoint_sha256": digest}]) is None


def test_rows_measured_earlier_survive_when_their_run_folder_is_not_here(tmp_path):
    earlier = {"lever": "old words", "run": "runs-ablation/no_ema", "status": "done",
               "val_balanced_accuracy": 0.698, "val_melanoma_auc": 0.892, "kept_epoch": "x",
               "command": "python -m lesionlib train ..."}
    row = ablation_report.run_row(tmp_path / "no_ema", "without the EMA", earlier)
    assert row["val_balanced_accuracy"] == 0.698 and row["lever"] == "without the EMA"
    pending = ablation_report.run_row(tmp_path / "mixup", "with mixup", None)
    assert pending["status"] == "pending"
    fresh = write_run(tmp_path / "no_ema_here", epochs=4, score=0.71)
    assert ablation_report.run_row(fresh, "x", earlier)["val_balanced_accuracy"] == 0.71


def test_replaced_versions_stay_as_history_and_hand_written_sections_are_kept(tmp_path):
    rows = [{"lever": "efficientnet_lite0.ham10000 v3.0.0 (shipped)"},
            {"lever": "efficientnet_lite0.ham10000 v2.0.0 (shipped before)"}]
    earlier = [{"lever": "efficientnet_lite0.ham10000 v2.0.0 (shipped)"},
               {"lever": "efficientnet_lite0.ham10000 v1.0.0 (version 1 recipe, shipped before)"},
               {"lever": "small_cnn.ham10000 v1.0.0 (shipped)"}]
    merged = [row["lever"] for row in ablation_report.with_earlier_rows(rows, earlier)]
    assert merged == [rows[0]["lever"], rows[1]["lever"],
                      "efficientnet_lite0.ham10000 v1.0.0 (version 1 recipe, shipped before)",
                      "small_cnn.ham10000 v1.0.0 (shipped before)"]
    report = tmp_path / "ablation.md"
    report.write_text("# Title\n\n## Full budget\n\ntable\n\n## A second clinic\n\nby hand\n\n"
                      "## At test time only: flips and image size\n\nrows\n")
    assert ablation_report.kept_sections(report) == ["## A second clinic\n\nby hand"]
    text = ablation_report.markdown([], [], [], ablation_report.kept_sections(report))
    assert "## A second clinic\n\nby hand" in text
