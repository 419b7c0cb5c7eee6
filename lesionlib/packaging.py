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


def single_card_data(model_id: str, name: str, architecture: str, input_size: int,
                     scaling: str, cam_layer: str, weights_sha256: str, training: dict,
                     temperature: float = 1.0, melanoma_threshold: float = 0.5,
                     metrics: dict | None = None, reproduce: dict | None = None,
                     version: str = "1.0.0", description: str = "") -> dict:
    """The card of one trained model, as a JSON-ready dictionary (validated by the caller)."""
    return {
        "id": model_id, "version": version, "name": name, "kind": "single",
        "architecture": architecture, "input_size": int(input_size),
        "preprocessing": f"{FRAMING}; resized to {input_size}x{input_size}; scaling "
                         f"'{scaling}' is a layer inside the model graph",
        "class_names": list(CLASS_NAMES), "melanoma_threshold": float(melanoma_threshold),
        "threshold_method": THRESHOLD_METHOD, "temperature": float(temperature),
        "temperature_method": TEMPERATURE_METHOD, "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS), "licence": LICENCE,
        "training": {"data": TRAINING_DATA, **training}, "metrics": metrics or {},
        "reproduce": reproduce or {}, "weights_file": WEIGHTS_FILE,
        "weights_sha256": weights_sha256, "cam_layer": cam_layer, "members": [],
        "description": description,
    }


def ensemble_card_data(model_id: str, name: str, members: list[str], temperature: float = 1.0,
                       melanoma_threshold: float = 0.5, metrics: dict | None = None,
                       reproduce: dict | None = None, version: str = "1.0.0",
                       description: str = "") -> dict:
    return {
        "id": model_id, "version": version, "name": name, "kind": "ensemble",
        "architecture": "mean of calibrated member probabilities, then temperature scaling",
        "input_size": 0,
        "preprocessing": f"{FRAMING}; each member frames the image at its own input size",
        "class_names": list(CLASS_NAMES), "melanoma_threshold": float(melanoma_threshold),
        "threshold_method": THRESHOLD_METHOD, "temperature": float(temperature),
        "temperature_method": TEMPERATURE_METHOD, "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS), "licence": LICENCE,
        "training": {"data": TRAINING_DATA, "members": members}, "metrics": metrics or {},
        "reproduce": reproduce or {}, "members": members, "description": description,
    }


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
