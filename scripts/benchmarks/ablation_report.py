"""Write reports/ablation.md from training runs' own records (runs' state.json) and cards.

Each row: the lever, the validation balanced accuracy and melanoma AUC of the run's kept epoch
(lesion-grouped HAM10000 validation split; nothing here touches the test split), and the command
that reproduces it. Rows whose run has not started yet are listed as pending.

Usage: python scripts/benchmarks/ablation_report.py [--runs runs-ablation] [--full-runs runs-v2]
       [--tta MODEL_RUN ...]   (adds a test-time-flip row for each named run's best.keras)
       [--tta-model MODEL_ID ...]   (the same for a shipped model)
       [--resolution-model MODEL_ID ... [--sizes 256 288]]   (a shipped model fed larger images)
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lesionlib.cards import sha256_of  # noqa: E402
from lesionlib.packaging import train_command  # noqa: E402

SHORT_ROWS = {  # run folder -> what the row changes, relative to "all levers"
    "all_levers": "version 2 recipe, every lever on",
    "no_colour_constancy": "without Shades of Gray colour constancy",
    "no_isic2017": "without the ISIC 2017 training images",
    "basic_augmentation": "version 1 (basic) augmentation instead of strong",
    "no_ema": "without the EMA of the weights",
    "top_of_backbone_only": "top ~70% of the backbone fine-tuned (version 1) instead of all",
    "no_class_weights": "without class weights (plain cross-entropy on the imbalanced data)",
    "logit_adjustment": "logit-adjusted loss (tau 1, Menon et al. 2021) instead of class weights",
    "mixup": "with mixup of each batch (alpha 0.2) added",
    "balanced_sampling": "class weights as sampling probabilities (with replacement) instead of "
                         "loss weights",
}
GENERATED_SECTIONS = ("Leave-one-out at a short budget", "Full budget",
                      "At test time only: flips and image size")


def kept_epoch(state: dict) -> dict | None:
    """The history entry of the epoch the run kept (best validation balanced accuracy)."""
    best = state.get("best")
    for entry in state.get("history", []):
        if best and entry["phase"] == best["phase"] and entry["epoch"] == best["epoch"]:
            return entry
    return None


def run_row(run_dir: Path, lever: str, earlier: dict | None = None) -> dict:
    """The row of one short-budget run; ``earlier``: its row in the previous report, used when
    the run folder is not in this checkout (run folders are git-ignored)."""
    state_path = run_dir / "state.json"
    if not state_path.is_file() and earlier and earlier.get("status") == "done":
        return {**earlier, "lever": lever}
    if not state_path.is_file():
        return {"lever": lever, "run": str(run_dir), "status": "pending",
                "command": f"bash scripts/benchmarks/ablation.sh  # runs row {run_dir.name}"}
    state = json.loads(state_path.read_text())
    config, entry = state["config"], kept_epoch(state)
    planned = config["head_epochs"] + config["fine_tune_epochs"]
    done = len(state.get("history", []))
    return {"lever": lever, "run": str(run_dir),
            "status": "done" if done >= planned else f"{done}/{planned} epochs",
            "val_balanced_accuracy": entry and entry["val_balanced_accuracy"],
            "val_melanoma_auc": entry and entry.get("val_melanoma_auc"),
            "kept_epoch": entry and f"{entry['phase']} {entry['epoch']}",
            "command": train_command(config, str(run_dir))}


@functools.lru_cache(maxsize=8)
def validation_set(clinic: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``clinic``'s validation images framed at ``size`` and their labels, read once per run
    (every row scores the same images with and without its change)."""
    from lesionlib import data

    frame = data.select_split(data.load_labels(data.resolve_data_dir(name=clinic)), "val")
    frame = frame[frame["label"] >= 0].reset_index(drop=True)
    return np.asarray(data.cached_images(frame, size, f"{clinic}_val")), frame["label"].to_numpy()


def validation_scores(predict, size: int, clinic: str = "ham10000") -> tuple[float, float]:
    """Balanced accuracy and melanoma AUC of ``predict`` (framed images -> probabilities) on
    ``clinic``'s validation images (``ham10000`` or ``bcn20000``) framed at ``size``."""
    from sklearn.metrics import roc_auc_score

    from lesionlib.classes import CLASS_NAMES
    from lesionlib.metrics import balanced_accuracy

    images, labels = validation_set(clinic, size)
    probabilities = predict(images)
    melanoma = (labels == CLASS_NAMES.index("mel")).astype(int)
    return (balanced_accuracy(labels, probabilities.argmax(1)),
            float(roc_auc_score(melanoma, probabilities[:, CLASS_NAMES.index("mel")])))


def both_clinics(predict, size: int) -> dict:
    """``validation_scores`` on HAM10000 (``ham``) and, where its folder is here, BCN20000."""
    from lesionlib import data

    scores = {"ham": validation_scores(predict, size)}
    if data.resolve_data_dir(name="bcn20000") is not None:
        scores["bcn"] = validation_scores(predict, size, "bcn20000")
    return scores


def tta_row(keras_model, size: int, name: str, command: str) -> dict:
    """Validation scores of a model without and with test-time flips."""
    from lesionlib.tta import predict_with_flips

    baseline = both_clinics(lambda x: predict_with_flips(keras_model, x, flips=False), size)
    flips = both_clinics(lambda x: predict_with_flips(keras_model, x, flips=True), size)
    return {"lever": f"test-time flips (4 views) on {name}", "run": name, "status": "done",
            "val_balanced_accuracy": flips["ham"][0], "val_melanoma_auc": flips["ham"][1],
            "kept_epoch": "same model", "baseline": baseline["ham"], "command": command,
            **bcn_fields(baseline, flips)}


def bcn_fields(baseline: dict, variant: dict) -> dict:
    """A row's BCN20000 validation figures (without, with), when both were measured."""
    if "bcn" not in baseline or "bcn" not in variant:
        return {}
    return {"bcn_baseline": baseline["bcn"], "bcn_val_balanced_accuracy": variant["bcn"][0],
            "bcn_val_melanoma_auc": variant["bcn"][1]}


def resolution_rows(model_id: str, weights: str, sizes: list[int]) -> list[dict]:
    """Validation scores of a shipped model fed larger (or smaller) images than it was trained
    on, one row per size: the same weights in the same graph built at each size (the backbone
    is convolutional and pooled, so only the input side changes). The model is loaded and
    scored at its own size once."""
    from lesionlib import registry
    from lesionlib.architectures import build_classifier

    card = registry.get_card(model_id, registry.discover(weights))
    trained = registry.load_single(card).keras_model
    colour_constancy = any(layer.name == "colour_constancy" for layer in trained.layers)
    baseline = both_clinics(lambda x: trained.predict(x, batch_size=32, verbose=0),
                            card.input_size)
    name = f"{model_id} v{card.version}"
    rows = []
    for size in sizes:
        resized = build_classifier(card.architecture, size, imagenet=False,
                                   colour_constancy=colour_constancy)
        resized.set_weights(trained.get_weights())
        variant = both_clinics(lambda x: resized.predict(x, batch_size=32, verbose=0), size)
        rows.append({"lever": f"test at {size} px (trained at {card.input_size} px) on {name}",
                     "run": f"{name} at {size} px", "status": "done",
                     "val_balanced_accuracy": variant["ham"][0],
                     "val_melanoma_auc": variant["ham"][1], **bcn_fields(baseline, variant),
                     "kept_epoch": "same model", "baseline": baseline["ham"],
                     "command": f"python scripts/benchmarks/ablation_report.py --resolution-model "
                                f"{model_id} --sizes {size}"})
    return rows


def run_tta_row(run_dir: Path) -> dict:
    import keras

    state = json.loads((run_dir / "state.json").read_text())
    model = keras.models.load_model(run_dir / "best.keras", safe_mode=True)
    return tta_row(model, state["config"]["image_size"], run_dir.name,
                   f"python scripts/benchmarks/ablation_report.py --tta {shlex.quote(str(run_dir))}")


def model_tta_row(model_id: str, weights: str) -> dict:
    from lesionlib import registry

    card = registry.get_card(model_id, registry.discover(weights))
    model = registry.load_single(card)
    return tta_row(model.keras_model, card.input_size, f"{model_id} v{card.version}",
                   f"python scripts/benchmarks/ablation_report.py --tta-model {model_id}")


def card_rows(weights: Path) -> list[dict]:
    """Full-budget rows from the shipped cards: each trained model's kept epoch, and the version
    it replaced (the card's lineage keeps the parent's validation scores)."""
    rows = []
    for path in sorted(weights.glob("*/card.json")):
        card = json.loads(path.read_text())
        training = card.get("training") or {}
        history, best = training.get("history") or [], training.get("best_epoch")
        if not history or card.get("edge"):  # an edge export repeats its parent's training
            continue
        entry = kept_epoch({"best": best, "history": history}) or max(
            history, key=lambda item: item["val_balanced_accuracy"])
        lineage = training.get("lineage") or {}
        parent = lineage.get("parent_metrics") or {}
        if "ham10000_val/balanced_accuracy" in parent:
            rows.append({"lever": f"{card['id']} v{lineage.get('parent_version')} "
                                  "(shipped before)", "status": "done",
                         "val_balanced_accuracy": parent["ham10000_val/balanced_accuracy"],
                         "val_melanoma_auc": parent.get("ham10000_val/melanoma_auc"),
                         "kept_epoch": "—", "command": "see its card in git history"})
        mix = training.get("interpolation") or {}
        if mix.get("validation", {}).get("ham10000"):  # shipped weights are a weight-space mix
            rows.append({"lever": f"{card['id']} v{card['version']} (shipped)", "status": "done",
                         "val_balanced_accuracy": mix["validation"]["ham10000"][
                             "balanced_accuracy"],
                         "val_melanoma_auc": mix["validation"]["ham10000"].get("melanoma_auc"),
                         "kept_epoch": f"mix alpha {mix.get('alpha')}",
                         "command": mix.get("command", "—")})
            continue
        rows.append({"lever": f"{card['id']} v{card['version']} (shipped)", "status": "done",
                     "checkpoint_sha256": (training.get("run") or {}).get("checkpoint_sha256"),
                     "val_balanced_accuracy": entry["val_balanced_accuracy"],
                     "val_melanoma_auc": entry.get("val_melanoma_auc"),
                     "kept_epoch": f"{entry['phase']} {entry['epoch']}",
                     "command": train_command(training["recipe"], run_folder(card))
                     if isinstance(training.get("recipe"), dict) else "—"})
    return rows


def run_folder(card: dict) -> str:
    """The run folder a card was packaged from (older cards: by version, as they were trained)."""
    training = card.get("training") or {}
    folder = (training.get("run") or {}).get("folder")
    if folder:
        return folder
    return ("runs-v2/" if card["version"].startswith("2.") else "runs/") + training["recipe"][
        "architecture"]


def model_version(row: dict) -> str:
    """``"<model id> v<version>"`` of a card row, e.g. ``efficientnet_lite0.ham10000 v2.0.0``."""
    return " ".join(row["lever"].split()[:2])


def with_earlier_rows(rows: list[dict], earlier: list[dict]) -> list[dict]:
    """``rows`` plus the earlier report's full-budget rows of other model versions and runs
    (kept as history: a replaced version's card and run folder are no longer here)."""
    current = {model_version(row) for row in rows}
    kept = []
    for row in earlier:
        if model_version(row) in current or row["lever"] in {other["lever"] for other in rows}:
            continue
        kept.append({**row, "lever": row["lever"].replace("(shipped)", "(shipped before)")})
    return rows + kept


def full_run_row(run_dir: Path, shipped: list[dict]) -> dict | None:
    """A full-budget run of ``runs-v2``: ``None`` when it is a shipped model's own run (its card
    row already stands for it), else labelled as in training or as finished but not shipped."""
    row = run_row(run_dir, run_dir.name)
    checkpoint = run_dir / "best.keras"
    digest = sha256_of(checkpoint) if checkpoint.is_file() else None
    for other in shipped:
        if other.get("checkpoint_sha256"):  # packaged since cards record their run: exact
            if other["checkpoint_sha256"] == digest:
                return None
        elif (row["command"] == other["command"]  # older cards: same recipe and same score
              and row["val_balanced_accuracy"] == other["val_balanced_accuracy"]):
            return None
    state = "finished, not shipped" if row["status"] == "done" else "in training"
    return {**row, "lever": f"{run_dir.name} (version 2 recipe, full budget, {state})"}


def fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def kept_sections(report: Path) -> list[str]:
    """The sections of an earlier ``report`` that this script does not write (e.g. the version 3
    runs' table from ``run_history_report.py --summary``), to carry over unchanged."""
    if not report.is_file():
        return []
    sections = report.read_text().split("\n## ")[1:]
    return ["## " + section.rstrip("\n") for section in sections
            if section.splitlines()[0].strip() not in GENERATED_SECTIONS]


def arrow(before, row: dict, metric: str) -> str:
    """``before → after`` of a row's BCN20000 figure, or ``—`` where it was not measured."""
    after = row.get(f"bcn_val_{metric}")
    return "—" if before is None or after is None else f"{fmt(before)} → {fmt(after)}"


def markdown(short: list[dict], full: list[dict], tta: list[dict],
             kept: list[str] = ()) -> str:
    lines = ["# Training ablation (validation split only)", "",
             "Every figure is on the lesion-grouped HAM10000 **validation** split (1,508 images), "
             "at the epoch each run kept (best validation balanced accuracy). The test split and "
             "the external sets are not used to choose anything. Written by "
             "`python scripts/benchmarks/ablation_report.py` from the runs' own `state.json` and, for the "
             "full budget, the shipped cards' training history.", "",
             "## Leave-one-out at a short budget", "",
             "EfficientNet-Lite0 at 160 px, 1 head + 3 fine-tune epochs (`bash scripts/benchmarks/ablation.sh`)"
             ": each row removes one lever from the version 2 recipe (\"without\", \"instead\") or "
             "adds one (\"with\"). A lever pays when removing it lowers the scores, or adding "
             "it raises them. A row with fewer epochs than planned is not comparable "
             "yet: rerunning the script resumes it.", "",
             "| lever | status | val balanced acc. | val melanoma AUC | kept epoch | command |",
             "|---|---|---|---|---|---|"]
    for row in short:
        lines.append(f"| {row['lever']} | {row['status']} | {fmt(row.get('val_balanced_accuracy'))}"
                     f" | {fmt(row.get('val_melanoma_auc'))} | {row.get('kept_epoch') or '—'} | "
                     f"`{row.get('command', '')}` |")
    lines += ["", "## Full budget", "",
              "| model | status | val balanced acc. | val melanoma AUC | kept epoch | command |",
              "|---|---|---|---|---|---|"]
    for row in full:
        lines.append(f"| {row['lever']} | {row['status']} | {fmt(row.get('val_balanced_accuracy'))}"
                     f" | {fmt(row.get('val_melanoma_auc'))} | {row.get('kept_epoch') or '—'} | "
                     f"`{row.get('command', '')}` |")
    for section in kept:
        lines += ["", section]
    if tta:
        lines += ["", "## At test time only: flips and image size", "",
                  "The same weights, scored as shipped (left of the arrow) and with the change "
                  "(right). The app uses neither: it scores each image once, at the model's own size.", "",
                  "| model | HAM10000 val balanced acc. without → with | HAM10000 val melanoma "
                  "AUC without → with | BCN20000 val balanced acc. without → with | BCN20000 val "
                  "melanoma AUC without → with | command |", "|---|---|---|---|---|---|"]
        for row in tta:
            bcn = row.get("bcn_baseline") or (None, None)
            lines.append(f"| {row['lever']} | {fmt(row['baseline'][0])} → "
                         f"{fmt(row['val_balanced_accuracy'])} | {fmt(row['baseline'][1])} → "
                         f"{fmt(row['val_melanoma_auc'])} | {arrow(bcn[0], row, 'balanced_accuracy')}"
                         f" | {arrow(bcn[1], row, 'melanoma_auc')} | `{row['command']}` |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs-ablation")
    parser.add_argument("--full-runs", default="runs-v2")
    parser.add_argument("--tta", nargs="*", default=[], help="run folders to score with flips")
    parser.add_argument("--tta-model", nargs="*", default=[],
                        help="shipped model ids to score with flips")
    parser.add_argument("--resolution-model", nargs="*", default=[],
                        help="shipped model ids to score at the --sizes below")
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 288],
                        help="test image sides for --resolution-model (default 256 288)")
    parser.add_argument("--weights", default=str(REPO / "weights"))
    parser.add_argument("--out", default=str(REPO / "reports" / "ablation.md"))
    args = parser.parse_args()
    previous = Path(args.out).with_suffix(".json")
    earlier = ({Path(row["run"]).name: row for row in
                json.loads(previous.read_text()).get("short_budget", [])}
               if previous.is_file() else {})
    short = [run_row(Path(args.runs) / name, lever, earlier.get(name))
             for name, lever in SHORT_ROWS.items()]
    full_dir = Path(args.full_runs)
    shipped = card_rows(Path(args.weights))
    full = [full_run_row(run, shipped) for run in sorted(full_dir.iterdir())
            if (run / "state.json").is_file()] if full_dir.is_dir() else []
    full = with_earlier_rows(shipped + [row for row in full if row is not None], json.loads(
        previous.read_text()).get("full_budget", []) if previous.is_file() else [])
    tta = [run_tta_row(Path(run)) for run in args.tta] + [
        model_tta_row(model_id, args.weights) for model_id in args.tta_model] + [
        row for model_id in args.resolution_model
        for row in resolution_rows(model_id, args.weights, args.sizes)]
    if previous.is_file():  # keep the flip rows measured earlier (they cost a model run each)
        measured = {row["run"] for row in tta}
        tta = [row for row in json.loads(previous.read_text()).get("test_time_augmentation", [])
               if row["run"] not in measured] + tta
    Path(args.out).write_text(markdown(short, full, tta, kept_sections(Path(args.out))))
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(
        {"short_budget": short, "full_budget": full, "test_time_augmentation": tta}, indent=2))
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
