"""Retraining from reviewers' corrections: challenger, comparison, promotion or rejection.

One run (``python -m lesionlib retrain --model ID``):

1. Corrections that may enter training (``lesionlib.corrections``: approved by an administrator
   other than their author, or two reviewers agreeing), plus optionally a folder of newly
   labelled images (``labels.csv`` with ``file`` and ``label``). Cases of the fixed evaluation
   sets are left out.
2. The challenger is fine-tuned from the live model (``lesionlib.training.train`` with the
   model's own recipe, a low learning rate, no head phase) on the HAM10000 lesion-grouped train
   split (+ the recipe's extra sets) with corrected labels and the added images. Validation,
   test and the external sets stay exactly as they are.
3. It is packaged into a candidate folder outside ``weights/`` (card, manifest), evaluated like
   every model (``evaluation.finish_evaluation``: temperature and melanoma threshold on
   validation) and, when the live model has one, gets its own quality gate.
4. ``compare`` checks each figure of ``GATES`` against the live model's card. The challenger is
   promoted (the live version is archived, the candidate becomes live, ensembles that contain it
   get a new version re-evaluated from stored predictions) only if no figure is worse than its
   tolerance (``lesionlib.promotion``, one atomic step); otherwise it stays a rejected candidate,
   with the reason in its ``decision.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlib import corrections, data, evaluation, model_versions, promotion, registry
from lesionlib.cards import read_card
from lesionlib.classes import CLASS_NAMES
from lesionlib.imaging import ImageLoadError, frame_square, load_image

# (set, metric, higher is better, tolerance): the challenger may be worse than the live model by
# at most the tolerance on each. Test-split differences under about 0.01 are within noise for
# 1,509 images; melanoma sensitivity rests on ~170 test melanomas (one case = 0.006), and on
# fewer in the external sets, hence the wider margins.
GATES = (
    ("ham10000_val", "balanced_accuracy", True, 0.01),
    ("ham10000_val", "melanoma_auc", True, 0.01),
    ("ham10000_test", "balanced_accuracy", True, 0.01),
    ("ham10000_test", "melanoma_auc", True, 0.01),
    ("ham10000_test", "melanoma_sensitivity", True, 0.03),
    ("ham10000_test", "ece", False, 0.01),
    ("isic2017", "melanoma_auc", True, 0.02),
    ("isic2017", "melanoma_sensitivity", True, 0.05),
    ("ph2", "melanoma_auc", True, 0.02),
    ("ph2", "melanoma_sensitivity", True, 0.05),
)
DEFAULT_EPOCHS = 2
DEFAULT_LEARNING_RATE = 2e-5


class RetrainingError(ValueError):
    """A retraining run cannot start or go on; the message says why and what to do."""


def check_can_promote() -> None:
    """Refuse, before any training, a retraining that could never be promoted here.

    Design: the private signing key stays off the server (docs/deploying.md). With
    ``$LESIONLIB_TRUSTED_KEYS`` set every model folder must carry an administrator's signature,
    and a candidate (with the refreshed ensembles it brings) is new, unsigned content that this
    server cannot sign, so it could never be made live. Rather than train for the whole run and
    then refuse its own challenger, this says so at once and what to do instead.

    Raises:
        RetrainingError: signatures are required here.
    """
    from lesionlib.integrity import TRUSTED_KEYS_ENV

    if os.environ.get(TRUSTED_KEYS_ENV, "").strip():
        raise RetrainingError(
            f"This deployment requires signed models ({TRUSTED_KEYS_ENV} is set) and the "
            "signing key is kept off the server, so a retrained model could never be made live "
            "here: nothing was trained. Retrain on a staging copy without "
            f"{TRUSTED_KEYS_ENV} (python -m lesionlib retrain --weights <copy>), sign the "
            "promoted folders there with the offline key (python -m lesionlib sign), and "
            "deploy them (docs/deploying.md, \"Retraining in a signed deployment\").")


@dataclasses.dataclass
class Additions:
    """What a run adds to the training split."""

    images: np.ndarray  # (n, size, size, 3) uint8, appended to the training split
    labels: np.ndarray
    relabelled: dict[str, int]  # HAM10000 training image_id -> corrected class index
    corrections: int
    new_images: int
    excluded: pd.DataFrame  # case/file and reason, for the log and the decision

    @property
    def total(self) -> int:
        return self.corrections + self.new_images


def correction_additions(store, size: int, ham10000: Path,
                         fixed: corrections.FixedSets) -> Additions:
    """Accepted corrections as training images (stored uploads) or relabelled HAM10000 training
    images; the rest are listed in ``excluded`` with the reason."""
    accepted, excluded = corrections.select_corrections(store.records(),
                                                        store.correction_decisions(), fixed)
    train_ids = set(data.select_split(data.load_labels(ham10000), "train")["image_id"].astype(str))
    images, labels, relabelled, skipped = [], [], {}, []
    for row in accepted.itertuples():
        label = CLASS_NAMES.index(row.corrected_class)
        stem = Path(row.case_id).stem
        if stem in train_ids:
            relabelled[stem] = label
            continue
        if row.image_record_id < 0:
            skipped.append((row.case_key, row.case_id, row.record_ids, "no image stored and not "
                            "a HAM10000 training image: nothing to train on"))
            continue
        try:
            image = load_image(store.image(int(row.image_record_id)), name=row.case_id)
        except ImageLoadError as error:
            skipped.append((row.case_key, row.case_id, row.record_ids, str(error)))
            continue
        images.append(frame_square(image, size))
        labels.append(label)
    excluded = pd.concat([excluded, pd.DataFrame(skipped, columns=excluded.columns)],
                         ignore_index=True)
    return Additions(_stack(images, size), np.asarray(labels, dtype="int32"), relabelled,
                     len(labels) + len(relabelled), 0, excluded)


def new_image_additions(folder: Path, size: int, fixed: corrections.FixedSets) -> Additions:
    """Newly labelled images from ``folder/labels.csv`` (columns ``file`` and ``label``, a class
    index or name); files of the fixed evaluation sets (same image id or sha256) are left out.

    Raises:
        RetrainingError: no ``labels.csv``, or a label that is not one of the seven classes.
    """
    try:
        frame = pd.read_csv(Path(folder) / "labels.csv", dtype={"label": str})
    except (OSError, ValueError) as error:
        raise RetrainingError(f"--new-images {folder}: cannot read labels.csv ({error}); "
                              "expected columns image_id, file, label.") from None
    missing = {"file", "label"} - set(frame.columns)
    if missing:
        raise RetrainingError(f"--new-images {folder}/labels.csv lacks {sorted(missing)}; "
                              f"columns are {list(frame.columns)}.")
    labels = [_class_index(value, folder) for value in frame["label"]]
    keep, skipped = [], []
    for index, file in enumerate(frame["file"]):
        path = Path(folder) / str(file)
        image_id = str(frame["image_id"].iloc[index]) if "image_id" in frame else path.stem
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if digest is None:
            skipped.append((str(file), str(file), [], "file not found"))
        elif fixed.contains(image_id, digest):
            skipped.append((digest, str(file), [], "belongs to a fixed evaluation set: never "
                            "trained on"))
        else:
            keep.append(index)
    images = data.load_images([str(Path(folder) / str(frame["file"].iloc[index]))
                               for index in keep], size) if keep else _stack([], size)
    return Additions(images, np.asarray([labels[index] for index in keep], dtype="int32"), {}, 0,
                     len(keep), pd.DataFrame(skipped, columns=list(corrections.EXCLUDED_COLUMNS)))


def _class_index(value, folder) -> int:
    text = str(value).strip()
    if text in CLASS_NAMES:
        return CLASS_NAMES.index(text)
    if text.isdigit() and int(text) < len(CLASS_NAMES):
        return int(text)
    raise RetrainingError(f"--new-images {folder}/labels.csv: label {text!r} is not a class; "
                          f"expected an index 0-6 or one of {list(CLASS_NAMES)}.")


def _stack(images: list, size: int) -> np.ndarray:
    return np.stack(images) if images else np.zeros((0, size, size, 3), dtype="uint8")


def merge(first: Additions, second: Additions) -> Additions:
    return Additions(np.concatenate([first.images, second.images]),
                     np.concatenate([first.labels, second.labels]),
                     {**first.relabelled, **second.relabelled},
                     first.corrections + second.corrections, first.new_images + second.new_images,
                     pd.concat([first.excluded, second.excluded], ignore_index=True))


def training_split(ham10000: Path, size: int, extra_sets: tuple[str, ...],
                   additions: Additions, log=print) -> dict:
    """The recipe's training arrays with corrected labels and the added images; validation
    untouched."""
    arrays = data.training_arrays(ham10000, size, extra_sets, log=log)
    images, labels = arrays["train"]
    labels = labels.copy()
    ham_ids = data.select_split(data.load_labels(ham10000), "train")["image_id"].astype(str)
    for position, image_id in enumerate(ham_ids):  # HAM10000 rows come first
        if image_id in additions.relabelled:
            labels[position] = additions.relabelled[image_id]
    arrays["train"] = (np.concatenate([np.asarray(images), additions.images]),
                       np.concatenate([labels, additions.labels]).astype("int32"))
    # added images weigh like HAM10000's (the pooled group of grouped class weights)
    arrays["train_groups"] = np.concatenate([arrays["train_groups"],
                                             np.full(len(additions.labels), "ham10000")])
    return arrays


def challenger_config(card, epochs: int, learning_rate: float):
    """The live model's recipe, fine-tuning only: no head phase, ``epochs`` at ``learning_rate``.

    A card without a recipe (a model not trained by ``train``) gets the defaults for its
    architecture.
    """
    from lesionlib.training import TrainConfig

    recipe = card.training.get("recipe")
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in recipe.items() if key in known} \
        if isinstance(recipe, dict) else {}
    values.setdefault("architecture", card.architecture)
    values.setdefault("image_size", card.input_size)
    values.setdefault("imagenet", card.architecture != "small_cnn")
    values["extra_training_sets"] = card.extra_training_sets
    values["class_weight_groups"] = tuple(values.get("class_weight_groups") or ())
    values.update(head_epochs=0, fine_tune_epochs=int(epochs), warmup_epochs=0.0,
                  head_learning_rate=float(learning_rate),
                  fine_tune_learning_rate=float(learning_rate))
    return TrainConfig(**values)


def compare(current: dict, challenger: dict, gates=GATES) -> tuple[bool, pd.DataFrame]:
    """Each gated figure of the live model's and the challenger's metrics, and whether the
    challenger is within tolerance on all of them (a figure the live model has and the
    challenger lacks fails; one neither has is listed as not measured)."""
    rows = []
    for set_name, metric, higher, tolerance in gates:
        old = (current.get(set_name) or {}).get(metric)
        new = (challenger.get(set_name) or {}).get(metric)
        if old is None:
            verdict = "not measured" if new is None else "no live figure"
            delta = None
        elif new is None:
            verdict, delta = "missing", None
        else:
            delta = float(new) - float(old)
            worse = -delta if higher else delta
            verdict = "worse" if worse > tolerance + 1e-12 else "ok"
        rows.append({"set": set_name, "metric": metric, "live": old, "challenger": new,
                     "delta": delta, "tolerance": tolerance,
                     "better": "higher" if higher else "lower", "verdict": verdict})
    frame = pd.DataFrame(rows)
    return bool(not frame["verdict"].isin(["worse", "missing"]).any()), frame


def rejection_reason(comparison: pd.DataFrame) -> str:
    failed = comparison[comparison["verdict"].isin(["worse", "missing"])]
    return "; ".join(
        f"{row.set} {row.metric} " + ("not measured for the challenger" if row.verdict == "missing"
                                      else f"{row.live:.4f} -> {row.challenger:.4f} "
                                      f"(tolerance {row.tolerance})")
        for row in failed.itertuples())


@dataclasses.dataclass
class Options:
    """One retraining run's settings (the ``retrain`` command's options)."""

    model_id: str
    weights_dir: Path
    ham10000: Path
    new_images: Path | None = None
    epochs: int = DEFAULT_EPOCHS
    learning_rate: float = DEFAULT_LEARNING_RATE
    user: str = "local"
    command: str = ""
    gates: tuple = GATES  # the challenger against the live model
    ensemble_gates: tuple = GATES  # each ensemble containing it, with the challenger as member


def run(options: Options, store, log=print, progress=None) -> dict:
    """Build, evaluate and judge a challenger for ``options.model_id``; promote it if it passes.

    Args:
        options: what to retrain and from where.
        store: the ``FeedbackStore`` holding corrections and verdicts (and the audit log).
        log: called with each line of progress text.
        progress: called as ``progress(stage, **details)`` (``lesionlib.retraining_job``).

    Returns:
        The decision (also written to the candidate's ``decision.json``).

    Raises:
        RetrainingError: not a single model, not evaluated yet, or nothing to train on.
    """
    progress = progress or (lambda stage, **details: None)
    check_can_promote()  # before anything is trained
    weights_dir = Path(options.weights_dir)
    if promotion.finish_promotion(weights_dir, log):  # a kill interrupted the last one: finish it
        log("finished the promotion a kill had interrupted")
    catalogue = registry.discover(weights_dir)
    try:
        card = registry.get_card(options.model_id, catalogue)
    except KeyError as error:
        raise RetrainingError(error.args[0]) from None
    if card.kind != "single":
        raise RetrainingError(f"{card.id!r} is a {card.kind} model; retrain its members (an "
                              "ensemble gets a new version when a member is promoted).")
    if "ham10000_val" not in card.metrics:
        raise RetrainingError(f"{card.id!r} has no metrics to compare against: run `python -m "
                              f"lesionlib evaluate --model {card.id}` first.")
    progress("collecting")
    fixed = corrections.fixed_sets(options.ham10000, _external_folders(options.ham10000))
    additions = correction_additions(store, card.input_size, options.ham10000, fixed)
    if options.new_images:
        additions = merge(additions, new_image_additions(options.new_images, card.input_size,
                                                         fixed))
    for row in additions.excluded.itertuples():
        log(f"left out {row.case_id}: {row.reason}")
    if additions.total == 0:
        raise RetrainingError(f"Nothing to train on: no approved or agreed corrections and no new "
                              f"images ({len(additions.excluded)} cases left out).")
    log(f"{additions.corrections} corrections and {additions.new_images} new images enter "
        f"training ({len(additions.relabelled)} of them relabel HAM10000 training images).")
    started = _now()
    version = model_versions.next_version(weights_dir, card.id, card.version)
    candidate = (model_versions.retraining_root(weights_dir) / "candidates" / card.id
                 / f"{started.replace(':', '')}-v{version}")
    folder = _train_candidate(card, options, additions, candidate, version, log, progress)
    progress("evaluating")
    challenger = _evaluate_candidate(folder, options, log)
    if (card.folder / promotion.gate_file()).is_file():
        progress("fitting the quality gate")
        promotion.fit_gate(candidate, card.id, options.ham10000)
    decision = {
        "model_id": card.id, "version": version, "parent_version": card.version,
        "started_at": started, "user": options.user,
        "corrections": additions.corrections, "new_images": additions.new_images,
        "left_out": additions.excluded.astype(str).to_dict("records"),
        "challenger": _headline(challenger.metrics), "candidate": str(candidate)}
    return decide(card, folder, decision, options, store, log, progress)


def decide(card, folder: Path, decision: dict, options: Options, store, log=print,
           progress=None) -> dict:
    """Judge an evaluated challenger (``folder``) against the live model ``card`` and against
    every ensemble containing it; promote it if all pass, otherwise keep it as rejected.

    ``decision`` carries what the run knows already (version, corrections, left-out cases...);
    the verdict, the comparisons and the reason are added, and the whole is written to the
    candidate's ``decision.json``. Also used to judge a kept candidate again (``judge``).
    """
    progress = progress or (lambda stage, **details: None)
    weights_dir = Path(options.weights_dir)
    challenger = read_card(folder)
    passed, comparison = compare(card.metrics, challenger.metrics, options.gates)
    ensembles = ensemble_checks(weights_dir, card.id, folder, options.ensemble_gates)
    reasons = [] if passed else [rejection_reason(comparison)]
    reasons += [f"ensemble {check['ensemble']} v{check['version']} with the challenger as "
                f"member: {rejection_reason(check['comparison'])}"
                for check in ensembles if not check["passed"]]
    passed = not reasons
    decision = {**decision, "finished_at": _now(), "comparison": comparison.to_dict("records"),
                "ensemble_comparisons": [{**check, "comparison": check["comparison"].to_dict(
                    "records")} for check in ensembles],
                "passed": passed, "promoted": False,
                "reason": "within tolerance on every figure, alone and in "
                          f"{len(ensembles)} ensemble(s)" if passed else "; ".join(reasons)}
    version = decision["version"]
    if passed:
        progress("promoting")
        decision["ensembles"] = promotion.promote(weights_dir, card.id, folder, options.ham10000,
                                                  log)
        decision["promoted"] = True
    (folder.parent / model_versions.DECISION_FILE).write_text(json.dumps(decision, indent=2,
                                                                         default=str))
    verdict = "promoted" if passed else "rejected"
    store.audit("retrain", options.user, f"{card.id} v{version} {verdict}: "
                f"{decision['reason']}"[:2000])
    log(f"{card.id} v{version} {verdict}: {decision['reason']}")
    progress("done", verdict=verdict, version=version)
    return decision


def judge(options: Options, candidate: Path, store, log=print) -> dict:
    """Judge a kept (rejected or never judged) candidate again under ``options``' rules, e.g.
    after the promotion rule changed; promotes it if it now passes.

    Raises:
        RetrainingError: ``candidate`` is not a candidate folder of ``options.model_id``, or the
            live model has moved on since the candidate was trained from it.
    """
    candidate = Path(candidate).resolve()
    folder = candidate / options.model_id
    if not (folder / "card.json").is_file():
        raise RetrainingError(f"{candidate}: no {options.model_id}/card.json inside; expected "
                              "a folder under weights.retraining/candidates/<id>/.")
    interrupted = promotion.pending_promotion(options.weights_dir)
    if interrupted is not None:
        ensembles = promotion.finish_promotion(options.weights_dir, log)
        if Path(interrupted["candidate"]).resolve() == folder.resolve():
            return _record_finished_promotion(options, candidate, interrupted, ensembles, store,
                                              log)
    card = registry.get_card(options.model_id, registry.discover(options.weights_dir))
    previous_file = candidate / model_versions.DECISION_FILE
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
    challenger = read_card(folder)
    parent = previous.get("parent_version") or challenger.training.get(
        "lineage", {}).get("parent_version")
    if parent and parent != card.version:
        raise RetrainingError(f"{candidate} was trained from v{parent}, but v{card.version} is "
                              "live now: retrain from the live version instead.")
    keep = ("model_id", "version", "parent_version", "started_at", "user", "corrections",
            "new_images", "left_out", "challenger", "candidate")
    decision = {key: previous[key] for key in keep if key in previous}
    earlier = list(previous.get("earlier_verdicts", []))
    if "reason" in previous:
        earlier.append({"at": previous.get("finished_at"), "promoted": previous.get("promoted"),
                        "reason": previous["reason"]})
    # Recomputed, never trusted: the card's metrics are only what was written into a folder
    # that anyone with access to it could have edited and re-sealed.
    log(f"re-evaluating {challenger.id} v{challenger.version} from its weights ...")
    challenger = _evaluate_candidate(folder, options, log)
    decision.update(model_id=card.id, version=challenger.version,
                    parent_version=card.version, candidate=str(candidate),
                    judged_again={"at": _now(), "by": options.user},
                    earlier_verdicts=earlier, challenger=_headline(challenger.metrics))
    return decide(card, folder, decision, options, store, log)


def _record_finished_promotion(options: Options, candidate: Path, journal: dict,
                               ensembles: list[str], store, log) -> dict:
    """The decision of a promotion finished from its journal, written and audited."""
    path = candidate / model_versions.DECISION_FILE
    decision = json.loads(path.read_text()) if path.is_file() else {
        "model_id": journal["model_id"], "version": journal["version"],
        "candidate": str(candidate), "passed": True}
    decision.update(promoted=True, ensembles=ensembles, finished_at=_now(),
                    reason=decision.get("reason") or "promotion interrupted, then finished",
                    finished_after_interruption={"at": _now(), "by": options.user})
    path.write_text(json.dumps(decision, indent=2, default=str))
    store.audit("retrain", options.user, f"{journal['model_id']} v{journal['version']} promoted "
                "(an interrupted promotion was finished)")
    log(f"{journal['model_id']} v{journal['version']} promoted: the interrupted promotion was "
        f"finished ({', '.join(ensembles) or 'no ensemble'})")
    return decision


def ensemble_checks(weights_dir: Path, model_id: str, challenger_folder: Path,
                    gates=GATES) -> list[dict]:
    """Each ensemble containing ``model_id``, re-scored from stored predictions with the
    challenger in place of the live member (calibrated on validation, like a refresh would),
    and compared with the live ensemble: ``{"ensemble", "version", "passed", "comparison"}``.

    A member can pass its own gates and still make the default ensemble worse (its errors may
    no longer cancel the other members'), so promotion looks at both.
    """
    catalogue = registry.discover(weights_dir)
    challenger = read_card(challenger_folder)
    checks = []
    for card in sorted(catalogue.cards.values(), key=lambda each: each.id):
        if card.kind != "ensemble" or model_id not in card.members:
            continue
        members = [challenger if member == model_id else registry.get_card(member, catalogue)
                   for member in card.members]
        frames = evaluation.ensemble_uncalibrated(members)
        metrics = (evaluation.calibrate_and_score(frames).metrics
                   if "ham10000_val" in frames else {})
        passed, comparison = compare(card.metrics, metrics, gates)
        checks.append({"ensemble": card.id, "version": card.version, "passed": passed,
                       "comparison": comparison})
    return checks


def _train_candidate(card, options: Options, additions: Additions, candidate: Path,
                     version: str, log, progress) -> Path:
    """Fine-tune the live model into ``candidate/run`` and package it as ``candidate/<id>``."""
    import keras

    from lesionlib import colour  # noqa: F401 - registers the colour-constancy layer
    from lesionlib.architectures import get_architecture
    from lesionlib.cards import verify_weights
    from lesionlib.packaging import install_model, lineage_for, single_card_data
    from lesionlib.training import train

    config = challenger_config(card, options.epochs, options.learning_rate)
    arrays = training_split(options.ham10000, config.image_size, config.extra_training_sets,
                            additions, log=log)
    run_dir = candidate / "run"
    model = keras.models.load_model(verify_weights(card), compile=False, safe_mode=True)
    started = time.time()
    epochs = config.head_epochs + config.fine_tune_epochs

    def epoch_log(message: str) -> None:
        log(message)
        state = run_dir / "state.json"
        done = len(json.loads(state.read_text()).get("history", [])) if state.is_file() else 0
        if done:
            elapsed = time.time() - started
            progress("training", epoch=done, epochs=epochs,
                     eta_s=elapsed / done * (epochs - done))

    progress("training", epoch=0, epochs=epochs, eta_s=None)
    train(config, *arrays["train"], *arrays["val"], run_dir, log=epoch_log, verbose=0,
          initial_model=model, train_groups=arrays["train_groups"])
    state = json.loads((run_dir / "state.json").read_text())
    changes = (f"retrained from v{card.version} with {additions.corrections} reviewer "
               f"corrections and {additions.new_images} new images")
    training = {"recipe": config.to_dict(), "best_epoch": state.get("best"),
                "best_val_balanced_accuracy": state.get("best_val_balanced_accuracy"),
                "fine_tune_from": state.get("fine_tune_from"),
                "class_weights": state.get("class_weights"), "history": state.get("history"),
                "initialisation": f"{card.id} v{card.version} (fine-tuned)",
                "lineage": lineage_for(card.folder, changes),
                "retraining": {"corrections": additions.corrections,
                               "relabelled_training_images": len(additions.relabelled),
                               "new_images": additions.new_images,
                               "left_out": len(additions.excluded), "user": options.user,
                               "finished_at": _now()}}
    architecture = get_architecture(config.architecture)
    card_data = single_card_data(card.id, card.name, card.architecture, card.input_size,
                                 architecture.scaling, card.cam_layer or architecture.cam_layer,
                                 "", training, reproduce={"retrain": options.command},
                                 version=version, description=card.description)
    install_model(run_dir / "best.keras", candidate / card.id, card_data)
    return candidate / card.id


def _evaluate_candidate(folder: Path, options: Options, log):
    """Predict every available fixed set, calibrate on validation, store metrics (sealed)."""
    card = read_card(folder)
    model = registry.load_single(card)
    frames = {}
    for set_name in evaluation.EVALUATION_SETS:
        try:
            frames[set_name] = evaluation.predict_set(model, set_name,
                                                      data_root=options.ham10000.parent)
        except (FileNotFoundError, ValueError) as error:
            log(f"  skipping {set_name}: {error}")
    if "ham10000_val" not in frames:
        raise RetrainingError(f"No HAM10000 validation split under {options.ham10000}.")
    card, _ = evaluation.finish_evaluation(card, frames, f"retrain: {options.command}")
    return card


def _external_folders(ham10000: Path) -> dict[str, Path | None]:
    return {name: (ham10000.parent / name if (ham10000.parent / name / "labels.csv").is_file()
                   else None) for name in data.EXTERNAL_SETS}


def _headline(metrics: dict) -> dict:
    from lesionlib.lineage import headline

    return headline(metrics)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["GATES", "Options", "RetrainingError", "run", "compare", "correction_additions",
           "new_image_additions", "challenger_config"]
