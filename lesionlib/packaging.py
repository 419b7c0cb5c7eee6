"""Write a trained model into ``weights/<model id>/``: the ``.keras`` file and its card.

Installing starts the folder afresh: files derived from a previous version (stored predictions,
quality gate, anything else) are removed, because they no longer describe the new card; run
``evaluate`` and ``fit-gate`` next. The folder is sealed (``lesionlib.integrity.seal``) after
every write.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lesionlib.cards import (INTENDED_USE, LICENCE, LIMITATIONS, ModelCard, sha256_of,
                             validate_card_data, write_card)
from lesionlib.classes import CLASS_NAMES
from lesionlib.imaging import FRAMING
from lesionlib.integrity import seal

WEIGHTS_FILE = "model.keras"
THRESHOLD_METHOD = ("highest threshold reaching 85% melanoma sensitivity on the HAM10000 "
                    "validation split (lesion-grouped)")
TEMPERATURE_METHOD = ("temperature scaling fitted by minimising negative log-likelihood on the "
                      "HAM10000 validation split (lesion-grouped)")
TRAINING_DATA = ("HAM10000 (10,015 dermoscopic images of 7,470 lesions at 200x150 px), "
                 "lesion-grouped split from labels.csv column split_lesion_grouped: "
                 "train 6,998 / val 1,508 / test 1,509 images")
EXTRA_TRAINING_DATA = {
    "isic2017": ("ISIC 2017 challenge training split (2,000 dermoscopic images: melanoma, "
                 "seborrhoeic keratosis, naevus, mapped to mel / bkl / nv); ISIC 2017 validation "
                 "and test come from the same archive, so they are a less independent external "
                 "set than PH2"),
}
EXTRA_TRAINING_DATA["bcn20000"] = (
    "BCN20000 training split (Hospital Clinic de Barcelona, the non-HAM10000 part of ISIC 2019: "
    "8,639 images of 2,499 lesions at 84x84 px, seven classes, lesion-grouped split of "
    "../shared/data/bcn20000); its validation split was scored beside HAM10000's to keep an "
    "epoch, its test split is a seven-class test on another clinic's images")
EXTRA_LICENCE = {
    "bcn20000": (" Also trained on BCN20000 (CC BY-NC 4.0; cite Combalia et al., \"BCN20000: "
                 "Dermoscopic Lesions in the Wild\", arXiv:1908.02288, 2019, and ISIC 2019)."),
    "isic2017": (" Also trained on ISIC 2017 challenge images (cite Codella et al., ISBI 2017, "
                 "arXiv:1710.05006), distributed for non-commercial research with attribution."),
}
COLOUR_CONSTANCY = ("Shades of Gray colour constancy (Minkowski p = 6), a layer at the start "
                    "of the model graph, so training and inference share it")
# train CLI flag -> recipe key, for flags whose value is written as is
_TRAIN_FLAGS = (("--fine-tune-lr", "fine_tune_learning_rate"), ("--seed", "seed"),
                ("--fine-tune-from", "fine_tune_from"),
                ("--class-weight-power", "class_weight_power"),
                ("--label-smoothing", "label_smoothing"), ("--augmentation", "augmentation"),
                ("--warmup-epochs", "warmup_epochs"), ("--ema", "ema_momentum"),
                ("--weight-decay", "weight_decay"),
                ("--low-resolution", "low_resolution_probability"),
                ("--init-from", "initial_weights"))
_LEVER_FLAGS = (("--logit-adjustment", "logit_adjustment"), ("--mixup", "mixup_alpha"))  # if on


def training_data(recipe: dict) -> str:
    """The card's account of the training data, from a run's recipe."""
    extra = [EXTRA_TRAINING_DATA.get(name, name) for name in recipe.get("extra_training_sets")
             or ()]
    return TRAINING_DATA + "".join(f"; plus {text}" for text in extra)


def train_command(recipe: dict, run_dir: str) -> str:
    """The ``train`` command line that reproduces a run's recipe (its state.json config)."""
    parts = ["python -m lesionlib train", f"--arch {recipe['architecture']}",
             f"--size {recipe['image_size']}", f"--run-dir {run_dir}",
             f"--head-epochs {recipe['head_epochs']}",
             f"--fine-tune-epochs {recipe['fine_tune_epochs']}",
             f"--batch-size {recipe['batch_size']}"]
    parts += [f"{flag} {recipe[key]}" for flag, key in _TRAIN_FLAGS
              if recipe.get(key) not in (None, "")]
    if not recipe.get("imagenet", True):
        parts.append("--no-imagenet")
    if recipe.get("colour_constancy"):
        parts.append("--colour-constancy")
    if recipe.get("extra_training_sets"):
        parts.append("--extra-train " + " ".join(recipe["extra_training_sets"]))
    if recipe.get("extra_validation_sets"):
        parts.append("--extra-val " + " ".join(recipe["extra_validation_sets"]))
    if recipe.get("class_weight_groups"):
        parts.append("--class-weight-groups " + " ".join(recipe["class_weight_groups"]))
    parts += [f"{flag} {recipe[key]}" for flag, key in _LEVER_FLAGS if recipe.get(key)]
    if recipe.get("balanced_sampling"):
        parts.append("--balanced-sampling")
    return " ".join(parts)


def single_card_data(model_id: str, name: str, architecture: str, input_size: int,
                     scaling: str, cam_layer: str, weights_sha256: str, training: dict,
                     temperature: float = 1.0, melanoma_threshold: float = 0.5,
                     metrics: dict | None = None, reproduce: dict | None = None,
                     version: str = "1.0.0", description: str = "") -> dict:
    """The card of one trained model, as a JSON-ready dictionary (validated by the caller)."""
    recipe = training.get("recipe") if isinstance(training.get("recipe"), dict) else {}
    colour = f"; {COLOUR_CONSTANCY}" if recipe.get("colour_constancy") else ""
    licence = LICENCE + "".join(EXTRA_LICENCE.get(name, "")
                                for name in recipe.get("extra_training_sets") or ())
    return {
        "id": model_id, "version": version, "name": name, "kind": "single",
        "architecture": architecture, "input_size": int(input_size),
        "preprocessing": f"{FRAMING}; resized to {input_size}x{input_size}{colour}; scaling "
                         f"'{scaling}' is a layer inside the model graph",
        "class_names": list(CLASS_NAMES), "melanoma_threshold": float(melanoma_threshold),
        "threshold_method": THRESHOLD_METHOD, "temperature": float(temperature),
        "temperature_method": TEMPERATURE_METHOD, "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS), "licence": licence,
        "training": {"data": training_data(recipe), **training}, "metrics": metrics or {},
        "reproduce": reproduce or {}, "weights_file": WEIGHTS_FILE,
        "weights_sha256": weights_sha256, "cam_layer": cam_layer, "members": [],
        "description": description,
    }


def ensemble_card_data(model_id: str, name: str, members: list[str], temperature: float = 1.0,
                       melanoma_threshold: float = 0.5, metrics: dict | None = None,
                       reproduce: dict | None = None, version: str = "1.0.0",
                       description: str = "", lineage: dict | None = None,
                       licence: str = LICENCE, member_versions: dict | None = None) -> dict:
    """The card of an ensemble. ``member_versions`` (member id -> version) records what it was
    built with: a catalogue refuses the ensemble once a live member has another version."""
    training = {"data": "the training data of each member (see their cards)", "members": members}
    if member_versions:
        training["member_versions"] = dict(member_versions)
    if lineage:
        training["lineage"] = lineage
    return {
        "id": model_id, "version": version, "name": name, "kind": "ensemble",
        "architecture": "mean of calibrated member probabilities, then temperature scaling",
        "input_size": 0,
        "preprocessing": f"{FRAMING}; each member frames the image at its own input size",
        "class_names": list(CLASS_NAMES), "melanoma_threshold": float(melanoma_threshold),
        "threshold_method": THRESHOLD_METHOD, "temperature": float(temperature),
        "temperature_method": TEMPERATURE_METHOD, "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS), "licence": licence,
        "training": training, "metrics": metrics or {},
        "reproduce": reproduce or {}, "members": members, "description": description,
    }


def lineage_for(folder: Path, changes: str) -> dict | None:
    """The lineage record of a new version installed into ``folder``: its parent is the card
    there now (``None`` for a first version, or a folder whose card cannot be read)."""
    from lesionlib.cards import CardError, read_card
    from lesionlib.lineage import parent_record

    if not (Path(folder) / "card.json").is_file():
        return None
    try:
        parent = read_card(Path(folder))
    except CardError:
        return None
    return parent_record(parent, changes)


class SameVersionError(ValueError):
    """Installing a model over the live folder under the version it already has."""


def refuse_same_version(folder: Path, version: str) -> None:
    """Refuse to install ``version`` into ``folder`` when it already holds that version: that
    would make the live model its own parent and drop its stored predictions, calibration and
    gate (what a pasted "Reproduce" command used to do to the default ensemble).

    Raises:
        SameVersionError: the folder's card has ``version``.
    """
    from lesionlib.cards import CardError, read_card

    if not (Path(folder) / "card.json").is_file():
        return
    try:
        live = read_card(folder)
    except CardError:
        return  # an unreadable folder is replaced as before (its card names no version)
    if live.version == version:
        raise SameVersionError(
            f"{folder} already holds {live.id} version {version}, the live model; installing "
            f"version {version} again would replace it with itself and drop its stored "
            "predictions, calibration and quality gate. Give a new --version to replace it, "
            "or --weights another folder to reproduce it beside the live one.")


def save_for_inference(keras_file: Path, target: Path) -> Path:
    """Re-save a training checkpoint without its optimizer state (a third of the size)."""
    import keras

    model = keras.models.load_model(keras_file, compile=False, safe_mode=True)
    temporary = target.with_name(target.stem + ".tmp.keras")
    model.save(temporary)
    temporary.replace(target)
    return target


def remove_derived_files(folder: Path, keep: tuple[str, ...]) -> list[str]:
    """Delete every entry of ``folder`` except ``keep``; returns the names removed."""
    removed = []
    for path in sorted(folder.iterdir()):
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path.name)
    return removed


def install_model(keras_file: Path, folder: Path, card_data: dict) -> ModelCard:
    """Save ``keras_file`` (weights only, no optimizer) into ``folder``, write the card with the
    file's sha256, remove the previous version's derived files and seal the folder."""
    card = validate_card_data({**card_data, "weights_sha256": "0" * 64}, str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / WEIGHTS_FILE
    save_for_inference(Path(keras_file), target)
    remove_derived_files(folder, keep=(WEIGHTS_FILE,))
    card = validate_card_data({**card_data, "weights_sha256": sha256_of(target)}, str(folder))
    write_card(card, folder)
    seal(folder)
    return card


def write_ensemble(folder: Path, card_data: dict) -> ModelCard:
    """Write an ensemble's card into a fresh ``folder`` and seal it."""
    card = validate_card_data(card_data, str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    remove_derived_files(folder, keep=())
    write_card(card, folder)
    seal(folder)
    return card
