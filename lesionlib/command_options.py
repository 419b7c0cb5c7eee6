"""The options of each ``python -m lesionlib`` command that take exactly one value, as data.

``cards.normalise_command`` needs them to join the words of a value recorded unquoted
(``--name EfficientNet-Lite0 (fast)``) back into one argument. They are kept here, not read from
the argument parser, so that the model cards never import the command line (which imports almost
everything); ``tests/test_cards.py`` checks that this table matches the parser.
"""

SINGLE_VALUED_OPTIONS: dict[str, frozenset[str]] = {
    "architectures": frozenset({

    }),
    "describe": frozenset({"--description", "--model", "--weights"}),
    "embedding-map": frozenset({
        "--data", "--method", "--model", "--seed", "--weights",
    }),
    "ensemble": frozenset({
        "--changes", "--description", "--id", "--name", "--version", "--weights",
    }),
    "evaluate": frozenset({
        "--model", "--report-dir", "--weights",
    }),
    "export": frozenset({
        "--data", "--format", "--id", "--latency-runs", "--model", "--per-class", "--report",
        "--weights",
    }),
    "fit-gate": frozenset({
        "--data", "--max-flag-rate", "--min-error-ratio", "--model", "--per-class", "--weights",
    }),
    "import-model": frozenset({
        "--classes", "--data", "--description", "--id", "--job-token", "--licence",
        "--melanoma-output", "--name", "--scaling", "--training-data", "--weights",
    }),
    "interpolate-weights": frozenset({"--data", "--out-dir", "--run-dir", "--start"}),
    "make-signing-key": frozenset({
        "--private", "--public",
    }),
    "package": frozenset({
        "--changes", "--description", "--id", "--name", "--run-dir", "--version", "--weights",
    }),
    "port-lite": frozenset({

    }),
    "predict": frozenset({
        "--batch-size", "--images", "--model", "--out", "--weights",
    }),
    "quiz-reveals": frozenset({
        "--data", "--k", "--model", "--weights",
    }),
    "retrain": frozenset({
        "--data", "--epochs", "--feedback-url", "--job-token", "--judge", "--learning-rate",
        "--model", "--new-images", "--user", "--weights",
    }),
    "rollback": frozenset({
        "--data", "--feedback-url", "--job-token", "--model", "--user", "--version",
        "--weights",
    }),
    "seal": frozenset({
        "--model", "--weights",
    }),
    "sign": frozenset({
        "--key", "--model", "--weights",
    }),
    "similar": frozenset({
        "--data", "--dimensions", "--images", "--k", "--model", "--out", "--weights",
    }),
    "stress-test": frozenset({
        "--data", "--limit", "--model", "--report-dir", "--weights",
    }),
    "train": frozenset({
        "--arch", "--augmentation", "--batch-size", "--class-weight-power", "--data", "--ema",
        "--fine-tune-epochs", "--fine-tune-from", "--fine-tune-lr", "--head-epochs",
        "--init-from", "--label-smoothing", "--logit-adjustment", "--low-resolution", "--mixup",
        "--run-dir", "--seed", "--size", "--verbose", "--warmup-epochs", "--weight-decay", "--worker-index", "--workers",
    }),
    "verify": frozenset({
        "--weights",
    }),
}
