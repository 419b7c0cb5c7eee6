"""Fitting a model's quality gate (``python -m lesionlib fit-gate``), Streamlit- and CLI-free.

A single model's gate is fitted on its own features of a class-balanced sample of every set it
was trained on (HAM10000 train, plus its recipe's ``extra_training_sets``); its distance
threshold on the validation images of every clinic it learned from; its image checks on every
clinic's validation images at hand (they judge image quality, not the model's familiarity). An
ensemble's gate combines its members'. The "review carefully" thresholds come from the stored
validation predictions (``lesionlib.selective``). Used by the command line and by retraining.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from lesionlib import data, evaluation, registry, selective
from lesionlib.integrity import seal
from lesionlib.quality import (GATE_FILE, extract_features, feature_extractor, fit_ensemble_gate,
                               fit_gate, image_thresholds, load_gate)


class GateFitError(ValueError):
    """The gate cannot be fitted as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class GateFit:
    """What ``fit_model_gate`` wrote: the gate and its "review carefully" thresholds."""

    path: Path
    gate: object
    thresholds: selective.UncertaintyThresholds
    has_disagreement: bool


def fit_model_gate(model_id: str, weights: str | Path | None, ham10000: Path,
                   per_class: int = 500, thresholds_only: bool = False,
                   max_flag_rate: float = selective.MAX_FLAG_RATE,
                   min_error_ratio: float = selective.MIN_ERROR_RATIO) -> GateFit:
    """Fit and write ``model_id``'s gate into its folder (sealed again).

    Args:
        model_id: an installed model (single or ensemble) in ``weights``.
        weights: the weights folder (``None``: the default).
        ham10000: the HAM10000 folder; the other sets are looked for beside it.
        per_class: training images per class sampled for the feature subspace.
        thresholds_only: keep the fitted feature model and distance threshold; refit only the
            image checks and the "review carefully" thresholds (no model run).

    Raises:
        GateFitError: unknown model, members without gates, no stored validation predictions,
            a bad ``per_class``, or a training set of the model missing.
    """
    catalogue = registry.discover(weights)
    try:
        card = registry.get_card(model_id, catalogue)
    except KeyError as error:
        raise GateFitError(error.args[0]) from None
    member_cards = [registry.get_card(member, catalogue) for member in card.members]
    unfitted = [member.id for member in member_cards if load_gate(member) is None]
    if unfitted:
        raise GateFitError(f"Ensemble {card.id!r} combines its members' gates; fit them first: "
                           + "; ".join(f"python -m lesionlib fit-gate --model {member}"
                                       for member in unfitted))
    if thresholds_only and load_gate(card) is None:
        raise GateFitError(f"--thresholds-only keeps {card.id!r}'s feature model, but it has no "
                           f"{GATE_FILE} yet; run fit-gate without it.")
    if per_class < 1:
        raise GateFitError(f"--per-class must be at least 1; received {per_class}.")
    train, val = gate_samples(ham10000, per_class)
    stored = [evaluation.load_predictions(each, "ham10000_val") for each in (card, *member_cards)]
    if any(frame is None for frame in stored):
        raise GateFitError(f"{card.id!r} (or a member) has no stored validation predictions; "
                           "run `python -m lesionlib evaluate` first.")
    clinic_val = clinic_val_samples(ham10000)
    quality_images = quality_reference_images(val, clinic_val)

    def val_features(member_card, learned: set[str], extractor=None):
        extractor = extractor or feature_extractor(registry.load_single(member_card).keras_model)
        return np.concatenate([extract_features(extractor, data.cached_images(
            frame, member_card.input_size, tag))
            for frame, tag in distance_val_samples(val, clinic_val, learned)])

    if thresholds_only:
        gate = dataclasses.replace(load_gate(card), **image_thresholds(quality_images))
    elif card.kind == "ensemble":
        learned = learned_clinics(member_cards)
        gate = fit_ensemble_gate(card.members, [load_gate(member) for member in member_cards],
                                 [val_features(member, learned) for member in member_cards],
                                 quality_images)
    else:
        extractor = feature_extractor(registry.load_single(card).keras_model)  # loaded once
        train_features = np.concatenate([extract_features(extractor, data.cached_images(
            frame, card.input_size, tag))
            for frame, tag in training_samples(card, train, ham10000, per_class)])
        gate = fit_gate(train_features, val_features(card, learned_clinics([card]), extractor),
                        quality_images)
    entropy, disagreement, correct = selective.stored_scores(stored[0], stored[1:] or None)
    thresholds = selective.select_thresholds(entropy, disagreement, correct, max_flag_rate,
                                             min_error_ratio)
    path = gate.with_uncertainty(thresholds).save(card.folder / GATE_FILE)
    seal(card.folder)  # integrity: the new gate is part of the model folder's manifest
    return GateFit(path, gate, thresholds, disagreement is not None)


def gate_samples(folder: Path, per_class: int):
    """HAM10000 rows the gate is fitted on: a class-balanced train sample, and validation."""
    try:
        labels = data.load_labels(folder)
        train, val = data.select_split(labels, "train"), data.select_split(labels, "val")
    except ValueError as error:
        raise GateFitError(f"{folder}: {error}") from None
    # Class-balanced sample: rare classes (vasc, df) shape the feature subspace as much as nv.
    return data.balanced_sample(train, per_class), val


def training_samples(card, train, ham10000: Path, per_class: int) -> list:
    """``[(frame, tag)]`` whose features span a single model's gate subspace: the HAM10000
    sample of ``gate_samples`` and a class-balanced sample of every other set ``card`` learned
    from (``extra_gate_samples``)."""
    return [(train, "gate_train_balanced"), *extra_gate_samples(card, ham10000, per_class)]


def distance_val_samples(val, clinic_val: list, learned: set[str]) -> list:
    """``[(frame, tag)]`` that set the distance threshold: HAM10000 validation (first) and the
    validation split of every other clinic in ``learned`` (an ensemble's: of any member, so
    that every member scores the same images)."""
    return [(val, "ham10000_val"), *[(frame, tag) for frame, tag in clinic_val
                                     if tag.removesuffix("_val") in learned]]


def quality_reference_images(val, clinic_val: list) -> list:
    """The images the image checks are fitted on: every clinic's validation images at hand.
    They judge image quality, not the model's familiarity (BCN20000's dark vignette corners
    are ordinary dermoscopy; with HAM10000's alone 30% of them read "much darker")."""
    return [data.load_image(path) for path in val["path"]] + [
        data.load_image(path) for frame, _ in clinic_val for path in frame["path"]]


def clinic_val_samples(ham10000: Path) -> list:
    """``[(frame, tag)]``: the validation split of each other clinic's seven-class set present
    beside the HAM10000 folder in use (BCN20000), for the gate's thresholds."""
    samples = []
    for name in data.CLINIC_SETS:
        beside = Path(ham10000).parent / name
        if (beside / "labels.csv").is_file():
            frame = data.select_split(data.load_labels(beside), "val")
            samples.append((frame[frame["label"] >= 0].reset_index(drop=True), f"{name}_val"))
    return samples


def extra_gate_samples(card, ham10000: Path, per_class: int) -> list:
    """Class-balanced samples of the other training sets the model learned from (its recipe's
    ``extra_training_sets``, e.g. ISIC 2017 train), so that its gate knows their images too."""
    samples = []
    for name in card.extra_training_sets:
        beside = Path(ham10000).parent / name  # next to the HAM10000 folder in use
        folder = beside if (beside / "labels.csv").is_file() else data.resolve_data_dir(name=name)
        if folder is None:
            raise GateFitError(f"{card.id!r} was also trained on {name!r}, whose folder was not "
                               f"found beside {ham10000}; its gate needs it.")
        frame = data.select_split(data.load_labels(folder), "train")
        frame = frame[frame["label"] >= 0]
        balanced = frame.sample(frac=1.0, random_state=0).groupby("label").head(per_class)
        samples.append((balanced.sort_index(), f"gate_{name}_balanced"))
    return samples


def learned_clinics(cards) -> set[str]:
    """The extra training sets any of ``cards`` learned from (their recipes'
    ``extra_training_sets``): whose validation images set a distance threshold."""
    return {name for card in cards for name in card.extra_training_sets}


__all__ = ["fit_model_gate", "GateFit", "GateFitError"]
