"""Scoring images into a CSV: ``predict``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

import sys
from pathlib import Path

from lesionlib.commands import common


def predict(args) -> int:
    from lesionlib import registry
    from lesionlib.inference import read_image_list
    from lesionlib.predictions_csv import PredictionsFile

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    if model_id is None:
        raise common.UsageError(f"No models in the weights folder "
                                f"{args.weights or registry.default_weights_dir()}.")
    card = common.card(model_id, catalogue)
    inputs = read_image_list(Path(args.images))
    if Path(args.images).resolve() == Path(args.out).resolve():
        raise common.UsageError(f"--out {args.out} is the --images list itself; choose another "
                                "--out.")
    output = PredictionsFile(args.out, card.id, card.version)
    todo = [item for item in inputs if not output.has_row_for(item.name)]
    if len(todo) < len(inputs):
        print(f"{args.out} already has rows for {len(inputs) - len(todo)} of the "
              f"{len(inputs)} inputs (skipped); scoring the other {len(todo)}.", file=sys.stderr)
    classifier = registry.load_classifier(model_id, catalogue=catalogue) if todo else None
    with output:
        try:
            score_into(classifier, todo, output, args)
        except KeyboardInterrupt:
            print(f"Interrupted: {args.out} keeps the {output.written} rows scored so far; run "
                  "the same command again to score the rest.", file=sys.stderr)
            return 130
    print_predict_summary(args.out, card, output.written)
    return 0


def score_into(classifier, inputs, output, args) -> None:
    """Score ``inputs`` batch by batch, appending each batch's rows to ``output``."""
    from tqdm import tqdm

    from lesionlib.inference import iter_prediction_batches
    from lesionlib.quality import QualityChecker

    if not inputs:
        return
    checker = QualityChecker(classifier)
    with tqdm(total=len(inputs), desc=f"Scoring with {classifier.card.id}", unit="image",
              disable=args.quiet) as bar:
        for frame in iter_prediction_batches(classifier, inputs, args.batch_size,
                                             quality_check=checker.assess):
            output.append(frame)
            bar.update(len(frame))


def print_predict_summary(out: str, card, written: int) -> None:
    import pandas as pd

    from lesionlib.inference import WITHHELD_PREFIX

    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    withheld = frame["warning"].str.startswith(WITHHELD_PREFIX)
    print(f"Wrote {written} rows; {out} has {len(frame)} in all "
          f"({int((frame['error'] != '').sum())} unreadable, "
          f"{int(withheld.sum())} withheld by the quality gate, "
          f"{int(((frame['warning'] != '') & ~withheld).sum())} with cautions). Model: "
          f"{card.label}. {card.intended_use}")
