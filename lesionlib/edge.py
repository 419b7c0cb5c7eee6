"""Edge models: a single Keras classifier exported to TensorFlow Lite, and its runtime.

``export_edge`` converts a shipped single model (float16 weights, or full-integer int8
post-training quantization calibrated on class-balanced HAM10000 training images) into its own
catalogue entry ``weights/<parent id>.<quantization>/`` with ``model.tflite`` and a card of kind
``"edge"`` naming its parent. ``evaluate_edge`` then measures the edge model itself with
``lesionlib.evaluation`` (calibrate on validation, report on test and the external sets, store
predictions), fits its quality gate on its own pooled features and records its parity with the
parent (top-1 agreement, metric changes, file size, single-image latency).

The exported graph has two outputs: the softmax probabilities and the ``avg_pool`` features that
the quality gate needs. Input: one framed image ``(1, size, size, 3)`` of RGB pixels 0-255, as
``uint8`` for int8 (scale 1, zero point 0: the raw pixel bytes) and ``float32`` for float16.
Outputs are ``float32``. Any ``ShadesOfGray`` colour-constancy layer is part of the graph.

``EdgeModel`` runs it with the maintained LiteRT runtime (``ai_edge_litert``) behind the
interface of ``registry.SingleModel``. Heatmaps need gradients, which a TFLite graph has not:
``explained_by`` returns the parent Keras model, and the dashboard says so.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path

import numpy as np

from lesionlib.cards import ModelCard, sha256_of, validate_card_data, write_card
from lesionlib.integrity import seal
from lesionlib.classes import CLASS_NAMES
from lesionlib.edge_model import EdgeModel, load_edge  # noqa: F401  (edge.EdgeModel, edge.load_edge)

EDGE_KIND = "edge"
EDGE_FILE = "model.tflite"
QUANTIZATIONS = ("float16", "int8")
FEATURE_LAYER = "avg_pool"
RUNTIME = "ai-edge-litert 2.3.0 (LiteRT interpreter, XNNPACK on CPU)"
REPORT_SETS = ("ham10000_test", "isic2017", "ph2")
_QUANTIZATION_TEXT = {
    "float16": "float16 weights (post-training), float32 compute; input float32 pixels 0-255",
    "int8": ("full-integer int8 post-training quantization (weights and activations), "
             "calibrated on a class-balanced sample of HAM10000 training images; input uint8 "
             "pixels 0-255 (scale 1, zero point 0), outputs dequantized to float32"),
}


class EdgeExportError(ValueError):
    """The model cannot be exported (wrong kind, unknown quantization, missing data)."""


# ----------------------------------------------------------------------------- conversion

# Int8 Shades of Gray: the layer divides by each channel's illuminant estimate (+1e-6). In int8
# the 1e-6 is lost and a (near-)black channel quantizes to zero, which the integer DIV kernel
# refuses (a runtime error on a blank image). The exported graph floors the divisor instead: for
# every channel brighter than a Minkowski mean of ~7/255 the result is unchanged, and a darker
# channel's pixels are ~0 either way (the gate withholds such images as dark or blank).
INT8_ILLUMINANT_FLOOR = 0.05


def _int8_safe_shades_of_gray(layer):
    """A copy of a ``ShadesOfGray`` layer whose divisor is floored (see above)."""
    import keras

    from lesionlib.colour import ShadesOfGray

    class FlooredShadesOfGray(ShadesOfGray):
        def call(self, inputs):
            unit = keras.ops.cast(inputs, "float32") / 255.0
            illuminant = keras.ops.power(
                keras.ops.mean(keras.ops.power(unit, self.power), axis=(1, 2), keepdims=True),
                1.0 / self.power)
            norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(illuminant), axis=-1,
                                                keepdims=True))
            divisor = keras.ops.maximum(np.sqrt(3.0) * illuminant, INT8_ILLUMINANT_FLOOR)
            return keras.ops.clip(inputs * (norm / divisor), 0.0, 255.0)

    return FlooredShadesOfGray(power=layer.power, name=layer.name)


def _for_int8(keras_model):
    """``keras_model`` with any Shades of Gray layer made int8-safe (same weights)."""
    import keras

    from lesionlib.colour import ShadesOfGray

    if not any(isinstance(layer, ShadesOfGray) for layer in keras_model.layers):
        return keras_model
    clone = keras.models.clone_model(
        keras_model, clone_function=lambda layer: _int8_safe_shades_of_gray(layer)
        if isinstance(layer, ShadesOfGray) else layer.__class__.from_config(layer.get_config()))
    clone.set_weights(keras_model.get_weights())
    return clone


def _serving_function(keras_model):
    """A frozen (variables as constants) function: pixels -> (probabilities, pooled features)."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    two_outputs = keras.Model(keras_model.inputs[0],
                              [keras_model.output, keras_model.get_layer(FEATURE_LAYER).output])
    size = keras_model.inputs[0].shape[1:]
    spec = tf.TensorSpec((1, *size), tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        probabilities, features = two_outputs(image, training=False)
        return {"probabilities": probabilities, "features": features}

    return convert_variables_to_constants_v2(serve.get_concrete_function())


def convert(keras_model, quantization: str, representative: np.ndarray | None = None) -> bytes:
    """The TFLite flatbuffer of ``keras_model`` with a second output of pooled features.

    Args:
        keras_model: a flat lesionlib classifier (pixels 0-255 in, softmax out).
        quantization: ``"float16"`` or ``"int8"``.
        representative: framed training images ``(n, size, size, 3)`` (int8 only).

    Raises:
        EdgeExportError: unknown quantization, or int8 without representative images.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise EdgeExportError(f"Unknown quantization {quantization!r}; expected one of "
                              f"{QUANTIZATIONS}.")
    if keras_model.get_layer(FEATURE_LAYER).output.shape[-1] == len(CLASS_NAMES):
        raise EdgeExportError(f"The {FEATURE_LAYER!r} features have {len(CLASS_NAMES)} "
                              "channels, like the probabilities: the outputs would be ambiguous.")
    if quantization == "int8":
        keras_model = _for_int8(keras_model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_serving_function(keras_model)])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        if representative is None or len(representative) == 0:
            raise EdgeExportError("int8 quantization needs representative images; received "
                                  "none.")

        def samples():
            for image in representative:
                yield [np.asarray(image, "float32")[None]]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()


def representative_images(size: int, per_class: int = 40, data_dir=None) -> np.ndarray:
    """Class-balanced framed HAM10000 training images (the int8 calibration set).

    Raises:
        EdgeExportError: the HAM10000 folder is not found.
    """
    from lesionlib import data

    folder = data.resolve_data_dir(data_dir)
    if folder is None:
        raise EdgeExportError("int8 export needs HAM10000 training images: pass --data or set "
                              "LESIONLIB_DATA (expected a folder with labels.csv).")
    train = data.balanced_sample(data.select_split(data.load_labels(folder), "train"), per_class)
    return data.cached_images(train, size, f"edge_representative_{per_class}")


# ----------------------------------------------------------------------------- runtime

def explained_by(model, catalogue=None):
    """The model whose gradients explain ``model``: an edge model's parent, else itself.

    Raises:
        KeyError / CardError: the parent is not in the catalogue or is refused.
    """
    if model.card.kind != EDGE_KIND:
        return model
    from lesionlib import registry

    catalogue = catalogue or registry.discover(model.card.folder.parent)
    return registry.load_single(registry.get_card(model.card.edge["parent"], catalogue))


# ----------------------------------------------------------------------------- export

def edge_card_data(parent: ModelCard, model_id: str, quantization: str, weights_sha256: str,
                   edge: dict, command: str) -> dict:
    """The card of an edge export: the parent's, re-identified, with the parent's calibration
    until ``evaluate_edge`` fits its own."""
    data = parent.to_json()
    data.update({
        "id": model_id, "kind": EDGE_KIND,
        "name": f"{parent.name}, edge ({quantization})",
        "architecture": f"{parent.architecture}, TensorFlow Lite {quantization}",
        "preprocessing": f"{parent.preprocessing}; {_QUANTIZATION_TEXT[quantization]}",
        "weights_file": EDGE_FILE, "weights_sha256": weights_sha256, "metrics": {},
        "temperature_method": "copied from the parent model (not yet evaluated)",
        "threshold_method": "copied from the parent model (not yet evaluated)",
        "reproduce": {"export": command,
                      "evaluate": f"python -m lesionlib evaluate --model {model_id}"},
        "description": (f"TensorFlow Lite export ({quantization}) of {parent.id} "
                        f"v{parent.version}, for phones and edge devices. Heatmaps are computed "
                        "with the parent model."),
        "edge": edge,
    })
    return data


def export_edge(parent: ModelCard, quantization: str, weights_dir: Path,
                representative: np.ndarray | None = None, model_id: str | None = None,
                command: str = "") -> ModelCard:
    """Convert a shipped single model and install it as ``weights_dir/<model_id>/``.

    Raises:
        EdgeExportError: the parent is not a single Keras model, or conversion input is missing.
    """
    from lesionlib import registry

    if parent.kind != "single":
        raise EdgeExportError(f"Only single Keras models can be exported; {parent.id!r} is "
                              f"of kind {parent.kind!r}.")
    keras_model = registry.load_single(parent).keras_model
    flatbuffer = convert(keras_model, quantization, representative)
    model_id = model_id or f"{parent.id}.{quantization}"
    folder = Path(weights_dir) / model_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EDGE_FILE).write_bytes(flatbuffer)
    parent_size = parent.weights_path().stat().st_size
    edge = {"parent": parent.id, "parent_version": parent.version,
            "parent_sha256": parent.weights_sha256, "quantization": quantization,
            "runtime": RUNTIME, "file_size_bytes": len(flatbuffer),
            "parent_file_size_bytes": parent_size,
            "size_ratio": len(flatbuffer) / parent_size,
            "representative_images": 0 if representative is None else len(representative),
            "outputs": {"probabilities": "softmax, float32",
                        "features": f"{FEATURE_LAYER}, float32 (quality gate)"}}
    card = validate_card_data(edge_card_data(parent, model_id, quantization,
                                             sha256_of(folder / EDGE_FILE), edge, command),
                              str(folder))
    card = dataclasses.replace(card, folder=folder)
    edge["input"] = load_edge(card).input_dtype + " pixels 0-255, shape (1, "\
        f"{card.input_size}, {card.input_size}, 3)"
    card = dataclasses.replace(card, edge=edge)
    write_card(card, folder)
    seal(folder)
    return card


# ----------------------------------------------------------------------------- evaluation

def predict_set(model: EdgeModel, set_name: str):
    """Uncalibrated predictions (a frame as ``evaluation.predict_set``'s) and pooled features.

    Raises:
        FileNotFoundError: the set's folder is not found.
    """
    from lesionlib import data, evaluation

    folder_name, split = evaluation.EVALUATION_SETS[set_name]
    folder = data.resolve_data_dir(name=folder_name)
    if folder is None:
        raise FileNotFoundError(f"Dataset folder {folder_name!r} not found; set LESIONLIB_DATA.")
    labels = data.select_split(data.load_labels(folder), split)
    images = data.cached_images(labels, model.card.input_size,
                                f"{folder_name}_{split.replace('+', '_')}")
    probabilities, features = model.run_framed(images)
    return evaluation.prediction_frame(labels, probabilities, folder_name), features


def fit_edge_gate(model: EdgeModel, parent, features: dict, per_class: int = 500,
                  val_frame=None) -> Path:
    """Fit the quality gate on the edge model's own features as ``fit-gate`` fits its parent's
    (``lesionlib.gate_fitting``): a class-balanced sample of every set the parent learned from,
    the distance threshold on the validation images of every clinic it learned from, the image
    checks on every clinic's validation images; "review carefully" thresholds from its
    calibrated validation predictions.

    Args:
        parent: the card of the model it was exported from (its recipe names the training sets).
        features: set name -> the edge model's features of that evaluation set (``predict_set``);
            ``ham10000_val`` is required.
    """
    from lesionlib import data, gate_fitting, selective
    from lesionlib.quality import GATE_FILE, fit_gate

    folder = data.resolve_data_dir()
    train, val = gate_fitting.gate_samples(folder, per_class)
    clinic_val = gate_fitting.clinic_val_samples(folder)

    def features_of(frame, tag):
        return model.run_framed(data.cached_images(frame, model.card.input_size, tag))[1]

    train_features = np.concatenate([
        features_of(*sample)
        for sample in gate_fitting.training_samples(parent, train, folder, per_class)])
    distance = gate_fitting.distance_val_samples(val, clinic_val,
                                                 gate_fitting.learned_clinics([parent]))
    # HAM10000 validation (first) comes with the evaluation's ``features``: not run again
    val_features = np.concatenate([features["ham10000_val"],
                                   *[features_of(*sample) for sample in distance[1:]]])
    gate = fit_gate(train_features, val_features,
                    gate_fitting.quality_reference_images(val, clinic_val))
    if val_frame is not None:
        entropy, _, correct = selective.stored_scores(val_frame)
        gate = gate.with_uncertainty(selective.select_thresholds(entropy, None, correct))
    return gate.save(model.card.folder / GATE_FILE)


NEAR_TIE_MARGIN = 0.1


def agreement(card: ModelCard, parent: ModelCard, set_name: str) -> dict:
    """Top-1 agreement of the edge model with its parent's stored predictions, the number of
    disagreements, and how many of those the parent itself called nearly a tie (its top two
    calibrated probabilities within ``NEAR_TIE_MARGIN``). Empty when either has no predictions.
    """
    from lesionlib.evaluation import load_predictions, probabilities_of

    mine, theirs = load_predictions(card, set_name), load_predictions(parent, set_name)
    if mine is None or theirs is None:
        return {}
    theirs = theirs.set_index("image_id").loc[mine["image_id"]]
    differs = mine["prediction"].to_numpy() != theirs["prediction"].to_numpy()
    top_two = np.sort(probabilities_of(theirs), axis=1)[:, -2:]
    near_tie = (top_two[:, 1] - top_two[:, 0]) < NEAR_TIE_MARGIN
    return {"top1_agreement": float(1 - differs.mean()), "disagreements": int(differs.sum()),
            "disagreements_near_tie": int((differs & near_tie).sum())}


def metric_changes(card: ModelCard, parent: ModelCard) -> dict:
    """Per report set: top-1 agreement, and the edge minus parent balanced accuracy and
    melanoma AUC (from the two cards' metrics)."""
    changes = {}
    for set_name in REPORT_SETS:
        mine, theirs = card.metrics.get(set_name), parent.metrics.get(set_name)
        if not mine or not theirs:
            continue
        row = {"n": mine.get("n"), **agreement(card, parent, set_name)}
        for key in ("balanced_accuracy", "melanoma_auc"):
            if mine.get(key) is not None and theirs.get(key) is not None:
                row[key] = mine[key]
                row[f"{key}_parent"] = theirs[key]
                row[f"{key}_change"] = mine[key] - theirs[key]
        changes[set_name] = row
    return changes


def _median_ms(call, runs: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def latency(model: EdgeModel, keras_model, image: np.ndarray, runs: int = 50) -> dict:
    """Median single-image latency (framed input, model call only) of the edge model and of the
    parent Keras model, measured in the same run."""
    framed = model.frame([image])
    return {"runs": runs, "cpu_count": os.cpu_count(),
            "edge_ms": _median_ms(lambda: model.run_framed(framed), runs),
            "keras_ms": _median_ms(lambda: keras_model(framed, training=False), runs)}


def evaluate_edge(card: ModelCard, catalogue, command: str, latency_image: np.ndarray,
                  latency_runs: int = 50, gate_per_class: int = 500,
                  log=print) -> ModelCard:
    """Measure an exported edge model: metrics and stored predictions (via
    ``evaluation.finish_evaluation``), its own quality gate, parity with its parent.

    Raises:
        FileNotFoundError: the HAM10000 validation split is not available.
    """
    from lesionlib import evaluation, registry

    model = load_edge(card)
    frames, features = {}, {}
    for set_name in evaluation.EVALUATION_SETS:
        try:
            frames[set_name], features[set_name] = predict_set(model, set_name)
        except FileNotFoundError as error:
            log(f"  skipping {set_name}: {error}")
            continue
        log(f"{card.id}: predicted {set_name}")
    if "ham10000_val" not in frames:
        raise FileNotFoundError("The HAM10000 validation split is needed to calibrate the edge "
                                "model; set LESIONLIB_DATA.")
    card = dataclasses.replace(
        card, temperature_method=registry.get_card(card.edge["parent"],
                                                   catalogue).temperature_method,
        threshold_method=registry.get_card(card.edge["parent"], catalogue).threshold_method)
    card, _ = evaluation.finish_evaluation(card, frames, command)
    parent = registry.get_card(card.edge["parent"], catalogue)
    gate_path = fit_edge_gate(model, parent, features, gate_per_class,
                              evaluation.load_predictions(card, "ham10000_val"))
    log(f"{card.id}: quality gate {gate_path}")
    edge = {**card.edge, "parity": metric_changes(card, parent),
            "latency": latency(model, registry.load_single(parent).keras_model, latency_image,
                               latency_runs)}
    card = dataclasses.replace(card, edge=edge)
    write_card(card, card.folder)
    seal(card.folder)
    return card


# ----------------------------------------------------------------------------- report

TARGETS = {"float16": 0.99, "int8": 0.97}
MAX_METRIC_CHANGE = 0.01
MAX_INT8_SIZE_RATIO = 0.30


def _fmt(value, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def report_markdown(cards: list[ModelCard]) -> str:
    """The parity report of every edge model against its parent Keras model."""
    lines = ["# Edge (TensorFlow Lite) exports", "",
             "Written by `python -m lesionlib export` (or `python -m lesionlib export "
             "--report-only`) from the edge models' cards. Each edge model is measured with the "
             "same machinery as the Keras models (`lesionlib.evaluation`: temperature and "
             "melanoma threshold fitted on HAM10000 validation, figures on data never fitted "
             "on). Top-1 agreement compares each image's top class with the parent's stored "
             "prediction. Targets: agreement >= 99% (float16) / >= 97% (int8); |change| in "
             f"balanced accuracy and melanoma AUC <= {MAX_METRIC_CHANGE}; int8 file <= "
             f"{MAX_INT8_SIZE_RATIO:.0%} of the Keras file. A disagreement is 'near a tie' "
             "when the parent's own top two probabilities are within "
             f"{NEAR_TIE_MARGIN}.", ""]
    for card in cards:
        edge = card.edge
        target = TARGETS[edge["quantization"]]
        size_line = (f"- file: {edge['file_size_bytes'] / 1e6:.2f} MB, "
                     f"{edge['size_ratio']:.1%} of the parent's model.keras "
                     f"({edge['parent_file_size_bytes'] / 1e6:.2f} MB)")
        lines += [f"## {card.id}", "",
                  f"- parent: `{edge['parent']}` v{edge['parent_version']}; quantization "
                  f"{edge['quantization']}; runtime {edge['runtime']}",
                  f"- input: {edge.get('input', 'n/a')}; outputs: probabilities (float32) and "
                  f"{FEATURE_LAYER} features (float32, for its own quality gate)", size_line]
        timing = edge.get("latency")
        if timing:
            lines.append(f"- single-image latency (median of {timing['runs']} runs, "
                         f"{timing['cpu_count']} CPU cores, model call only): edge "
                         f"{timing['edge_ms']:.1f} ms, Keras parent {timing['keras_ms']:.1f} ms "
                         "in the same run")
        lines += ["", f"| set | images | top-1 agreement (target {target:.0%}) | balanced acc. "
                      "edge / parent / change | melanoma AUC edge / parent / change |",
                  "|---|---|---|---|---|"]
        for set_name, row in edge.get("parity", {}).items():
            near = (f" ({row['disagreements_near_tie']} of {row['disagreements']} "
                    f"disagreements near a tie)" if row.get("disagreements") else "")
            lines.append(
                f"| {set_name} | {row.get('n')} | "
                f"{_fmt(row.get('top1_agreement'), '{:.2%}')}{near} | "
                f"{_fmt(row.get('balanced_accuracy'))} / "
                f"{_fmt(row.get('balanced_accuracy_parent'))} / "
                f"{_fmt(row.get('balanced_accuracy_change'), '{:+.4f}')} | "
                f"{_fmt(row.get('melanoma_auc'))} / {_fmt(row.get('melanoma_auc_parent'))} / "
                f"{_fmt(row.get('melanoma_auc_change'), '{:+.4f}')} |")
        lines.append("")
    return "\n".join(lines)


def write_report(catalogue, path: Path) -> Path:
    cards = [card for _, card in sorted(catalogue.cards.items()) if card.kind == EDGE_KIND]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(cards))
    return path


# ----------------------------------------------------------------------------- display

def summary_lines(card: ModelCard) -> list[str]:
    """Plain-language facts of an edge model's card (parent, quantization, size, latency)."""
    edge = card.edge
    lines = [f"TensorFlow Lite export of `{edge['parent']}` v{edge['parent_version']}, "
             f"{edge['quantization']}; runs on {edge['runtime']}",
             f"input: {edge.get('input', 'n/a')}",
             f"file: {edge['file_size_bytes'] / 1e6:.2f} MB, {edge['size_ratio']:.1%} of the "
             f"parent's ({edge['parent_file_size_bytes'] / 1e6:.2f} MB)",
             "heatmaps are computed with the parent model (a TFLite graph has no gradients)"]
    timing = edge.get("latency")
    if timing:
        lines.append(f"single-image latency: {timing['edge_ms']:.1f} ms against "
                     f"{timing['keras_ms']:.1f} ms for the Keras parent (median of "
                     f"{timing['runs']} runs, {timing['cpu_count']} CPU cores)")
    return lines


def parity_frame(card: ModelCard):
    """One row per evaluation set: agreement with the parent and metric changes."""
    import pandas as pd

    return pd.DataFrame([
        {"set": set_name, "images": row.get("n"), "top-1 agreement": row.get("top1_agreement"),
         "balanced acc. change": row.get("balanced_accuracy_change"),
         "melanoma AUC change": row.get("melanoma_auc_change")}
        for set_name, row in card.edge.get("parity", {}).items()])
