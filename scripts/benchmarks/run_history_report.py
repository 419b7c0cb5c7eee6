"""A training run's per-epoch history as a Markdown table (from its state.json).

    python scripts/benchmarks/run_history_report.py runs-v3/efficientnet_lite0

Prints each epoch's loss, HAM10000 validation balanced accuracy and melanoma AUC, the other
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    run_dir = Path(parser.parse_args().run_dir)
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError) as error:
        print(f"error: {run_dir}/state.json cannot be read ({error}).", file=sys.stderr)
        return 2
    print(table(state))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
