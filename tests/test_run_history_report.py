"""scripts/benchmarks/run_history_report.py: a run's per-epoch table, read from the run folder or
from the card of the model packaged from it (the same table)."""

import importlib.util
import json

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "run_history_report", REPO_ROOT / "scripts" / "benchmarks" / "run_history_report.py")
run_history_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_history_report)

HISTORY = [
    {"phase": "head", "epoch": 1, "loss": 1.5, "val_balanced_accuracy": 0.40,
     "val_melanoma_auc": 0.70, "bcn20000_val_balanced_accuracy": 0.30,
     "bcn20000_val_melanoma_auc": 0.60, "selection_score": 0.35, "epoch_seconds": 290.0,
     "load_average": [2.3, 2.0, 1.6]},
    {"phase": "fine_tune", "epoch": 1, "loss": 1.2, "val_balanced_accuracy": 0.70,
     "val_melanoma_auc": 0.88, "bcn20000_val_balanced_accuracy": 0.50,
     "bcn20000_val_melanoma_auc": 0.80, "selection_score": 0.60, "epoch_seconds": 570.0,
     "load_average": [1.8, 2.0, 1.6]},
]
BEST = {"phase": "fine_tune", "epoch": 1}


def test_a_model_folder_gives_the_table_of_its_run(tmp_path):
    run, model = tmp_path / "run", tmp_path / "model"
    run.mkdir(), model.mkdir()
    (run / "state.json").write_text(json.dumps(
        {"history": HISTORY, "best": BEST, "best_selection_score": 0.60,
         "best_val_balanced_accuracy": 0.70}))
    (model / "card.json").write_text(json.dumps(
        {"training": {"history": HISTORY, "best_epoch": BEST,
                      "best_val_balanced_accuracy": 0.70}}))
    from_run = run_history_report.table(run_history_report.read_state(run))
    assert from_run == run_history_report.table(run_history_report.read_state(model))
    assert "| fine_tune | 1 | 1.2000 | 0.7000 | 0.8800 | 0.5000 | 0.8000 | 0.6000 | 570 | 1.80 |" in from_run
    assert from_run.endswith("Kept: fine_tune epoch 1 (selection score 0.6000).")


def test_a_folder_without_either_file_is_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["run_history_report.py", str(tmp_path)])
    assert run_history_report.main() == 2
    assert "expected a run folder's state.json or a model folder's card.json" in (
        capsys.readouterr().err)
