"""A training run's per-epoch history as a Markdown table (from its state.json).

    python scripts/benchmarks/run_history_report.py runs-v3/efficientnet_lite0
    python scripts/benchmarks/run_history_report.py weights/efficientnet_lite1.ham10000
    python scripts/benchmarks/run_history_report.py --summary RUN_DIR [RUN_DIR ...]

With ``--summary``: one row per run (its kept epoch's validation figures on every clinic it
scored, the epoch with the best HAM10000 validation balanced accuracy, epochs done, and the
command that reproduces it), for ``reports/ablation.md``.

A model folder (its card.json) stands for the run it was packaged from: the card keeps the
run's history and kept epoch. Prints each epoch's loss, HAM10000 validation balanced accuracy and melanoma AUC, the other
clinics' validation figures where the run scored them (``--extra-val``), the selection score,
the epoch time and the load average, and which epoch was kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def table(state: dict) -> str:
    history = state.get("history", [])
    extra = sorted({key.removesuffix("_val_balanced_accuracy") for entry in history
                    for key in entry if key.endswith("_val_balanced_accuracy")
                    and key != "val_balanced_accuracy"})
    header = ["phase", "epoch", "loss", "HAM10000 val BA", "HAM10000 val mel. AUC",
              *[f"{name} val BA" for name in extra], *[f"{name} val mel. AUC" for name in extra],
              "selection", "epoch s", "load (1 min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(value, digits=4):
        return "—" if value is None else f"{value:.{digits}f}"

    for entry in history:
        cells = [entry.get("phase", ""), str(entry.get("epoch", "")), fmt(entry.get("loss")),
                 fmt(entry.get("val_balanced_accuracy")), fmt(entry.get("val_melanoma_auc")),
                 *[fmt(entry.get(f"{name}_val_balanced_accuracy")) for name in extra],
                 *[fmt(entry.get(f"{name}_val_melanoma_auc")) for name in extra],
                 fmt(entry.get("selection_score", entry.get("val_balanced_accuracy"))),
                 fmt(entry.get("epoch_seconds"), 0),
                 fmt((entry.get("load_average") or [None])[0], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    best = state.get("best") or {}
    lines += ["", f"Kept: {best.get('phase')} epoch {best.get('epoch')} (selection score "
              f"{fmt(state.get('best_selection_score', state.get('best_val_balanced_accuracy')))})."]
    return "\n".join(lines)


def summary(run_dirs: list[Path]) -> str:
    """One row per run: kept epoch's figures per clinic, best HAM10000 epoch, the command."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from lesionlib.packaging import train_command

    def fmt(value):
        return "—" if value is None else f"{value:.3f}"

    lines = ["| run | epochs done | kept epoch | HAM10000 val BA | HAM10000 val mel. AUC | "
             "BCN20000 val BA | BCN20000 val mel. AUC | best HAM10000 val BA (epoch) | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run_dir in run_dirs:
        try:
            state = json.loads((run_dir / "state.json").read_text())
        except (OSError, ValueError):
            lines.append(f"| {run_dir} | not started here | — | — | — | — | — | — | — |")
            continue
        config, history = state["config"], state.get("history", [])
        best = state.get("best") or {}
        kept = next((entry for entry in history if entry.get("phase") == best.get("phase")
                     and entry.get("epoch") == best.get("epoch")), {})
        top = max(history, key=lambda entry: entry.get("val_balanced_accuracy") or 0,
                  default={})
        planned = config["head_epochs"] + config["fine_tune_epochs"]
        lines.append(
            f"| {run_dir} | {len(history)} of {planned} | {kept.get('epoch', '—')} | "
            f"{fmt(kept.get('val_balanced_accuracy'))} | {fmt(kept.get('val_melanoma_auc'))} | "
            f"{fmt(kept.get('bcn20000_val_balanced_accuracy'))} | "
            f"{fmt(kept.get('bcn20000_val_melanoma_auc'))} | "
            f"{fmt(top.get('val_balanced_accuracy'))} ({top.get('epoch', '—')}) | "
            f"`{train_command(config, str(run_dir))}` |")
    return "\n".join(lines)


def read_state(folder: Path) -> dict:
    """A run folder's state.json, or what a model folder's card keeps of its training run."""
    if (folder / "state.json").is_file() or not (folder / "card.json").is_file():
        return json.loads((folder / "state.json").read_text())
    training = json.loads((folder / "card.json").read_text())["training"]
    best = training["best_epoch"]
    kept = next((entry for entry in training["history"] if entry.get("phase") == best["phase"]
                 and entry.get("epoch") == best["epoch"]), {})
    return {"history": training["history"], "best": best,
            "best_val_balanced_accuracy": training.get("best_val_balanced_accuracy"),
            "best_selection_score": kept.get("selection_score",
                                             training.get("best_val_balanced_accuracy"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="+")
    parser.add_argument("--summary", action="store_true", help="one row per run")
    arguments = parser.parse_args()
    if arguments.summary:
        print(summary([Path(run_dir) for run_dir in arguments.run_dir]))
        return 0
    run_dir = Path(arguments.run_dir[0])
    try:
        state = read_state(run_dir)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {run_dir}: expected a run folder's state.json or a model folder's "
              f"card.json with its training history ({error}).", file=sys.stderr)
        return 2
    print(table(state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
