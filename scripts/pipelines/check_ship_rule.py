"""Check issue 18's ship rule: a new version of a model must beat the version before it on HAM10000
and BCN20000 validation balanced accuracy, and must not be worse on ISIC 2017, PH2 or the
BCN20000 test split (balanced accuracy and melanoma AUC).

Compares two `reports/evaluation.json` files, the one of the release before (a git revision) and
the one now (the working tree, or a file): one row per model whose version changed, each figure
before -> after, and the verdict. Test figures are read only after the choice was made on
validation; this script says whether the rule holds, it does not choose.

Usage:
  python scripts/pipelines/check_ship_rule.py --before eff6b50          # version 2 -> now
  python scripts/pipelines/check_ship_rule.py --before HEAD --after runs-v3g/not_shipped/evaluation.json
Exit status 1 when a changed model breaks the rule, 2 on a bad argument.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
REPORT = "reports/evaluation.json"

# The rule as gates of lesionlib.retraining.compare, the check a retrained model passes before it
# is promoted: (split, metric, higher is better, tolerance). A tolerance is how much worse a figure
# may be; a negative one is the least rise required (RISE: any rise at all).
RISE = -1e-9
SHIP_GATES = (
    ("ham10000_val", "balanced_accuracy", True, RISE),
    ("bcn20000_val", "balanced_accuracy", True, RISE),
    ("isic2017", "melanoma_auc", True, 0.0),
    ("ph2", "melanoma_auc", True, 0.0),
    ("bcn20000_test", "balanced_accuracy", True, 0.0),
    ("bcn20000_test", "melanoma_auc", True, 0.0),
)
LABELS = ("HAM10000 val BA", "BCN20000 val BA", "ISIC 2017 mel. AUC", "PH2 mel. AUC",
          "BCN20000 test BA", "BCN20000 test mel. AUC")


def load_before(revision: str) -> dict:
    """The models of ``reports/evaluation.json`` at git ``revision``."""
    result = subprocess.run(["git", "show", f"{revision}:{REPORT}"], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"--before {revision!r}: git has no {REPORT} there "
                         f"({result.stderr.strip()}); expected a revision such as HEAD or eff6b50")
    return json.loads(result.stdout)["models"]


def load_after(path: Path) -> dict:
    """The models of an evaluation report file."""
    try:
        return json.loads(path.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--after {path}: not an evaluation report with a 'models' entry "
                         f"({error}); expected a file written by `python -m lesionlib evaluate`")


def check(before: dict, after: dict) -> list[dict]:
    """One row per model present in both reports whose version changed: each figure's pair and
    whether it obeys the rule (``None``: not measured on one side, which does not fail it)."""
    from lesionlib.retraining import compare

    rows = []
    for model_id in sorted(set(before) & set(after)):
        old, new = before[model_id], after[model_id]
        if old["version"] == new["version"]:
            continue
        _, comparison = compare(old["metrics"], new["metrics"], SHIP_GATES)
        figures = [{"label": label, "was": gate.live, "now": gate.challenger,
                    "holds": {"ok": True, "worse": False}.get(gate.verdict)}
                   for label, gate in zip(LABELS, comparison.itertuples())]
        rows.append({"model": model_id, "was": old["version"], "now": new["version"],
                     "figures": figures,
                     "holds": all(figure["holds"] is not False for figure in figures)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a table: each figure before -> after, a failing one in bold."""
    def cell(figure):
        if figure["holds"] is None:
            return "not measured"
        text = f"{figure['was']:.4f} → {figure['now']:.4f}"
        return text if figure["holds"] else f"**{text}**"
    header = ["model", "version", *LABELS, "rule"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row["model"], f"{row['was']} → {row['now']}",
                                        *(cell(figure) for figure in row["figures"]),
                                        "holds" if row["holds"] else "**broken**"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True,
                        help="git revision whose reports/evaluation.json is the release before")
    parser.add_argument("--after", type=Path, default=REPO_ROOT / REPORT,
                        help="the evaluation report now (default: the working tree's)")
    args = parser.parse_args(argv)
    try:
        rows = check(load_before(args.before), load_after(args.after))
    except ValueError as error:
        print(f"check_ship_rule.py: {error}", file=sys.stderr)
        return 2
    if not rows:
        print("No model changed version between the two reports.")
        return 0
    print(markdown(rows))
    print("\nRule: higher on both validation balanced accuracies; not lower on ISIC 2017, PH2 "
          "or BCN20000 test (figures in bold break it).")
    return 0 if all(row["holds"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
