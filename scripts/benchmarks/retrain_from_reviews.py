"""Run the learning loop end to end on a shipped model with real reviewer corrections.

What a clinic would do, step by step, through the same library calls the dashboard makes:

1. Reviewers upload dermoscopic images from another clinic: ISIC 2017 *training* images (not an
   evaluation set; the v1 models never saw them). The live model is wrong on some of them.
2. A reviewer corrects each wrong answer with the image's biopsy- or follow-up-confirmed
   diagnosis from the ISIC 2017 ground truth (melanoma, seborrhoeic keratosis -> bkl, nevus).
   Most corrections are approved by an administrator other than their author; some are made by
   two reviewers who agree (no approval needed). To show the safeguards on the same run, one
   correction stays unapproved (one reviewer alone) and one is made on an ISIC 2017 *test* image
   (a fixed evaluation set): both must be left out.
3. ``python -m lesionlib retrain`` fine-tunes a challenger, evaluates it on the fixed sets and
   promotes or rejects it (``lesionlib.retraining``).
4. ``reports/retraining.md`` is written from the run's ``decision.json``.

The reviewers' clicks are simulated (their names say so); the images, the model's answers and
the corrected labels are real. Usage::

    python scripts/benchmarks/retrain_from_reviews.py --model efficientnet_lite2.ham10000 --corrections 12
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lesionlib import cli, data, registry  # noqa: E402
from lesionlib.classes import CLASS_NAMES  # noqa: E402
from lesionlib.feedback import FeedbackRecord, FeedbackStore  # noqa: E402
from lesionlib.imaging import load_image, strip_metadata  # noqa: E402
from lesionlib.metrics import apply_temperature  # noqa: E402

REVIEWERS = ("simulated_reviewer_a", "simulated_reviewer_b")
ADMIN = "simulated_admin"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite2.ham10000")
    parser.add_argument("--corrections", type=int, default=12,
                        help="corrections that should enter training (a handful)")
    parser.add_argument("--pool", type=int, default=600,
                        help="ISIC 2017 training images the reviewers look at")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--work", default=str(ROOT / "runs-retrain"))
    parser.add_argument("--report", default=str(ROOT / "reports" / "retraining.md"))
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--judge", metavar="CANDIDATE",
                        help="train nothing: judge this kept candidate folder again (same "
                             "corrections, today's promotion rule; `retrain --judge`)")
    args = parser.parse_args()

    ham = data.resolve_data_dir()
    isic = data.resolve_data_dir(name="isic2017")
    if ham is None or isic is None:
        print("Needs HAM10000 and ISIC 2017 beside the repository (../shared/data).")
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    database = work / "feedback.db"
    database.unlink(missing_ok=True)
    url = f"sqlite:///{database}"

    classifier = registry.load_classifier(args.model)
    card = classifier.card
    labels = data.select_split(data.load_labels(isic), "train")
    labels = labels[labels["label"] >= 0].reset_index(drop=True)
    rng = np.random.default_rng(args.seed)
    chosen_rows = np.sort(rng.choice(len(labels), size=min(args.pool, len(labels)),
                                     replace=False))
    pool = labels.iloc[chosen_rows].reset_index(drop=True)
    print(f"{card.id} v{card.version} looks at {len(pool)} ISIC 2017 training images ...")
    # the same framed arrays (and cache) as training: data.training_arrays' "isic2017_train"
    images = np.asarray(data.cached_images(labels, card.input_size, "isic2017_train"))[chosen_rows]
    probabilities = apply_temperature(classifier.predict_framed(images.astype("float32"))[0],
                                      card.temperature)
    pool["prediction"] = [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)]
    pool["truth"] = [CLASS_NAMES[i] for i in pool["label"]]
    wrong = pool[pool["prediction"] != pool["truth"]]
    print(f"wrong on {len(wrong)} of {len(pool)} ({len(wrong) / len(pool):.0%}): "
          + ", ".join(f"{truth} {count}" for truth, count in wrong["truth"].value_counts().items()))
    # a handful, spread over the true classes (melanomas first: the costly misses)
    chosen = (wrong.sample(frac=1.0, random_state=args.seed)
              .sort_values("truth", key=lambda s: s.map({"mel": 0, "bkl": 1}).fillna(2),
                           kind="stable")
              .groupby("truth", sort=False).head(-(-args.corrections // 3)))
    chosen = chosen.head(args.corrections + 1)  # the last one stays unapproved

    store = FeedbackStore(url)
    approved = consensus = 0
    for position, row in enumerate(chosen.itertuples()):
        content = Path(row.path).read_bytes()
        record = FeedbackRecord(
            case_id=Path(row.file).name, source="case_review", model_id=card.id,
            model_version=card.version, predicted_class=row.prediction, agree=False,
            corrected_class=row.truth, note=f"ISIC 2017 ground truth: {row.diagnosis_isic2017}",
            reviewer=REVIEWERS[0], image_sha256=hashlib.sha256(content).hexdigest(),
            image_png=strip_metadata(load_image(content, name=row.file)))
        record_id = store.add(record)
        if position == len(chosen) - 1:
            continue  # one reviewer alone, never approved: must stay out
        if position % 3 == 2:  # a second reviewer agrees: enters without an approval
            store.add(FeedbackRecord(**{**record.__dict__, "reviewer": REVIEWERS[1]}))
            consensus += 1
        else:
            store.decide_correction(record_id, "approve", ADMIN, "matches the ISIC ground truth")
            approved += 1
    test_image = data.select_split(data.load_labels(isic), "test").iloc[0]
    content = Path(test_image["path"]).read_bytes()
    leak = store.add(FeedbackRecord(
        case_id=Path(test_image["file"]).name, source="case_review", model_id=card.id,
        model_version=card.version, predicted_class="nv", agree=False, corrected_class="mel",
        note="an evaluation image: must never be trained on", reviewer=REVIEWERS[0],
        image_sha256=hashlib.sha256(content).hexdigest(),
        image_png=strip_metadata(load_image(content, name=test_image["file"]))))
    store.decide_correction(leak, "approve", ADMIN)
    store.close()
    print(f"corrections: {approved} approved by an administrator, {consensus} agreed by two "
          f"reviewers, 1 unapproved, 1 on an ISIC 2017 test image")

    started = time.perf_counter()
    command = ["retrain", "--model", card.id, "--feedback-url", url, "--user", ADMIN]
    command += ["--judge", args.judge] if args.judge else ["--epochs", str(args.epochs)]
    print("python -m lesionlib " + " ".join(command), flush=True)
    code = cli.main(command)
    minutes = (time.perf_counter() - started) / 60
    if code != 0:
        print(f"retrain failed with exit code {code}")
        return code
    decision = (json.loads((Path(args.judge) / "decision.json").read_text()) if args.judge
                else _latest_decision(card.id))
    Path(args.report).write_text(_report(decision, chosen.iloc[:-1], minutes, args, card))
    print(f"wrote {args.report}")
    return 0


def _latest_decision(model_id: str) -> dict:
    from lesionlib import model_versions

    folder = model_versions.retraining_root(registry.default_weights_dir()) / "candidates"
    decisions = sorted((folder / model_id).glob("*/decision.json"))
    return json.loads(decisions[-1].read_text())


def _report(decision: dict, used: pd.DataFrame, minutes: float, args, card) -> str:
    verdict = "promoted" if decision["promoted"] else "rejected"
    again = decision.get("judged_again")
    if again:
        first = (decision.get("earlier_verdicts") or [{}])[0].get("at")
        if first and decision.get("started_at"):
            minutes = (pd.Timestamp(first) - pd.Timestamp(decision["started_at"])).seconds / 60
            training_text = (f" The training run took {minutes:.0f} min (fine-tuning, "
                             "evaluating the four fixed sets, fitting the gate).")
        else:
            training_text = ""
        minutes_text = training_text[1:] + " " + (f"Judged again on {again['at']} (no training; `--judge "
                        f"{_shown(decision['candidate'])}`). Earlier verdicts: "
                        + "; ".join(f"{each['at']}: "
                                    + ("promoted" if each["promoted"] else "rejected")
                                    + f" ({each['reason']})"
                                    for each in decision.get("earlier_verdicts", [])) + ".")
    else:
        minutes_text = (f"Wall time {minutes:.0f} min (fine-tuning {args.epochs} epochs, "
                        "evaluating the four fixed sets, fitting the gate"
                        + (", refreshing the ensembles" if decision["promoted"] else "") + ").")
    lines = [
        "# Retraining from reviewers' corrections, on a shipped model",
        "",
        f"Reproduce: `python scripts/benchmarks/retrain_from_reviews.py --model {args.model} "
        f"--corrections {args.corrections} --epochs {args.epochs}` "
        + ("then the same with `--judge CANDIDATE_FOLDER` " if again else "")
        + "(needs `../shared/data`; 2 CPU cores).",
        "",
        f"**{card.id} v{decision['parent_version']} → candidate v{decision['version']}: "
        f"{verdict}** — {decision['reason']}.",
        "",
        minutes_text,
        "",
        "The images are real ISIC 2017 *training* images (another archive than HAM10000; not "
        "an evaluation set, never seen by this model); the corrected labels are their ISIC 2017 "
        "ground truth (melanoma, seborrhoeic keratosis → bkl, nevus). The reviewers' and the "
        "administrator's clicks are simulated by the script through the feedback store's own "
        "calls (`FeedbackStore.add`, `decide_correction`).",
        "",
        f"## Corrections that entered training ({decision['corrections']})",
        "",
        "| image | model said | corrected to | ISIC 2017 diagnosis |",
        "|---|---|---|---|",
    ]
    for row in used.itertuples():
        lines.append(f"| {Path(row.file).name} | {row.prediction} | {row.truth} | "
                     f"{row.diagnosis_isic2017} |")
    lines += ["", "## Left out, and why", "", "| case | reason |", "|---|---|"]
    lines += [f"| {row['case_id']} | {row['reason']} |" for row in decision["left_out"]]
    tables = [("Challenger against the live model", decision["comparison"])]
    tables += [(f"Ensemble `{check['ensemble']}` v{check['version']} against the same ensemble "
                "with the challenger as member (re-scored from stored predictions)",
                check["comparison"]) for check in decision.get("ensemble_comparisons", [])]
    for title, comparison in tables:
        lines += _comparison_table(title, comparison)
    lines += ["", f"Candidate folder (git-ignored): `{_shown(decision['candidate'])}` holds the challenger, its "
              "training run and `decision.json`.", ""]
    return "\n".join(lines)


def _shown(path: str) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _comparison_table(title: str, comparison: list[dict]) -> list[str]:
    lines = ["", f"## {title} (fixed sets; tolerance from `lesionlib.retraining.GATES`)", "",
             "| set | metric | live | challenger | change | tolerance | verdict |",
             "|---|---|---|---|---|---|---|"]
    for row in comparison:
        values = [row.get(key) for key in ("live", "challenger", "delta")]
        shown = ["—" if value is None or value != value else f"{value:+.3f}"[index < 2:]
                 for index, value in enumerate(values)]
        verdict = row["verdict"] if row["verdict"] == "ok" else f"**{row['verdict']}**"
        lines.append(f"| {row['set']} | {row['metric']} ({row['better']} is better) | {shown[0]} "
                     f"| {shown[1]} | {shown[2]} | {row['tolerance']} | {verdict} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
