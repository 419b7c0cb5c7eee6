"""Bring a Keras classifier trained elsewhere in for audit: ``import-model``.

Seven-class HAM10000 models and binary melanoma models (one sigmoid output, or two softmax
outputs with melanoma at a declared position) are both first-class.

The file is loaded in Keras safe mode; a Lambda layer or a custom class (arbitrary Python code)
is refused with what to do instead. What the file cannot say is declared by the importer: the
order of its seven outputs, the input scaling it expects, the framing, the training data and the
licence. The model is then rebuilt as one flat functional graph that takes RGB 0-255 like every
shipped model: the declared scaling becomes a ``Rescaling`` layer at its start, a nested model
(``Sequential([base, pooling, dense])``, the usual transfer-learning shape) is inlined so Grad-CAM
can reach its last convolution, and a fixed permutation puts its outputs in the HAM10000 class
order (a binary model's become ``other``, ``mel``). Its outputs are checked (probabilities
summing to one) before anything is written.

The card says what is declared and what is measured: the declared training data and licence as
given, no recipe or lineage it does not have, and metrics only after ``evaluate`` measures them
on the fixed sets (until then it is marked not evaluated). The folder is sealed like any other.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from lesionlib.cards import INTENDED_USE, LIMITATIONS, ModelCard, sha256_of
from lesionlib.classes import BINARY_CLASS_NAMES, CLASS_NAMES
from lesionlib.imaging import FRAMING

SCALINGS = {  # name -> (scale, offset, description): the model's input = RGB * scale + offset
    "inside": (1.0, 0.0, "RGB 0-255 (any scaling is inside the model)"),
    "0-1": (1 / 255.0, 0.0, "RGB / 255 (0 to 1)"),
    "-1-1": (1 / 127.5, -1.0, "RGB / 127.5 - 1 (-1 to 1)"),
}
NOT_DECLARED = "not declared by the importer"
BINARY_LIMITATION = ("Binary: answers melanoma vs the rest only. It names no other diagnosis; "
                     "below its threshold the lesion may still be another cancer (basal cell "
                     "carcinoma, actinic keratosis / Bowen's disease).")


class ImportRefused(ValueError):
    """A model that cannot be brought in as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ImportRequest:
    """What the importer declares about a model file (the file cannot say it)."""

    file: Path
    model_id: str
    name: str
    classes: tuple[str, ...] = CLASS_NAMES  # the order of the model's outputs
    scaling: str = "inside"
    framing: str = FRAMING
    training_data: str = NOT_DECLARED
    licence: str = NOT_DECLARED
    version: str = "1.0.0"
    description: str = ""
    # A binary melanoma model: its melanoma output is position ``melanoma_output`` of two
    # softmax outputs, or the single sigmoid output (position 0 of 1).
    binary_melanoma: bool = False
    melanoma_output: int | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        """The rebuilt model's outputs: the seven classes, or ``other``, ``mel``."""
        return BINARY_CLASS_NAMES if self.binary_melanoma else CLASS_NAMES


def parse_classes(text: str) -> tuple[str, ...]:
    """``"akiec,bcc,..."`` as a class order; refused unless it is the seven classes once each."""
    classes = tuple(part.strip().lower() for part in str(text).split(",") if part.strip())
    if sorted(classes) != sorted(CLASS_NAMES):
        raise ImportRefused(f"--classes: expected the seven classes {', '.join(CLASS_NAMES)} "
                            f"once each, in the order of the model's outputs; received "
                            f"{', '.join(classes) or 'nothing'}.")
    return classes


def load_safely(path: Path):
    """The Keras model in ``path``, loaded in safe mode; refusals explain themselves."""
    import keras

    path = Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise ImportRefused(f"{path.name}: expected a Keras model file (.keras, saved with "
                            "model.save); received " + ("no such file." if not path.is_file()
                                                        else f"a {path.suffix or 'plain'} file."))
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - any loader failure is the file's
        text = str(error)
        if "Lambda" in text or "lambda" in text or "safe_mode" in text:
            raise ImportRefused(
                f"{path.name} contains a Lambda layer (arbitrary Python code), which this "
                "dashboard never runs. Replace it with built-in Keras layers (Rescaling, "
                "Normalization, Activation...) and save the model again.") from None
        raise ImportRefused(
            f"{path.name} could not be loaded in Keras safe mode ({type(error).__name__}: "
            f"{text.splitlines()[0][:200] if text else 'no detail'}). A model that needs custom "
            "Python code (its own layer classes) is refused: rebuild it from built-in Keras "
            "layers.") from None
    lambdas = [layer.name for layer in _all_layers(model)
               if type(layer).__name__ == "Lambda"]
    if lambdas:
        raise ImportRefused(f"{path.name} contains Lambda layers ({', '.join(lambdas)}), which "
                            "run arbitrary Python code; rebuild them from built-in layers.")
    return model


def _all_layers(model) -> list:
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers += _all_layers(layer)
    return layers


def _functional(model):
    import keras

    return getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model


def _inline(operation):
    """For re-running a graph: a nested model becomes a call of its own layers (flat)."""
    import keras

    if isinstance(operation, keras.Model):
        functional = _functional(operation)
        if functional is None or not hasattr(functional, "_run_through_graph"):
            raise ImportRefused(f"The nested model {operation.name!r} is not a functional or "
                                "built Sequential model, so it cannot be flattened for "
                                "Grad-CAM; save it as one functional model.")

        def run(*args, **kwargs):
            return functional._run_through_graph(args[0] if len(args) == 1 else list(args),
                                                 operation_fn=_inline)
        return run
    return operation


def input_size(model) -> int:
    """The square input side of the model; refused if it is not a fixed square RGB input."""
    shapes = model.inputs if hasattr(model, "inputs") and model.inputs else None
    shape = tuple(shapes[0].shape) if shapes else tuple(getattr(model, "input_shape", ()))
    if len(shapes or [None]) != 1 or len(shape) != 4 or shape[3] != 3 or not shape[1] \
            or shape[1] != shape[2]:
        raise ImportRefused(f"The model's input is {shape}; expected one square RGB image input "
                            "(None, N, N, 3) with a fixed N.")
    return int(shape[1])


def _binary_outputs(outputs, melanoma_output: int | None):
    """A melanoma model's output tensor as two probabilities (``other``, ``mel``), from built-in
    layers only: one sigmoid p becomes (1 - p, p); two softmax outputs are reordered."""
    import keras

    width = int(outputs.shape[-1]) if len(outputs.shape) == 2 else None
    if width not in (1, 2):
        raise ImportRefused(f"--binary-melanoma: the model's output has shape "
                            f"{tuple(outputs.shape)}; expected (None, 1), one melanoma "
                            "probability (sigmoid), or (None, 2), two softmax outputs.")
    position = 0 if width == 1 else melanoma_output
    if width == 2 and position not in (0, 1):
        raise ImportRefused("--binary-melanoma with two outputs: say which is melanoma with "
                            f"--melanoma-output 0 or 1; received {melanoma_output!r}.")
    if width == 1 and melanoma_output not in (None, 0):
        raise ImportRefused(f"--melanoma-output {melanoma_output}: the model has a single "
                            "output (0), its melanoma probability.")
    layer = keras.layers.Dense(2, trainable=False, name="melanoma_vs_rest",
                               use_bias=width == 1)
    outputs = layer(outputs)
    if width == 1:  # other = 1 - p, mel = p
        layer.set_weights([np.array([[-1.0, 1.0]], "float32"), np.array([1.0, 0.0], "float32")])
    else:
        order = np.zeros((2, 2), "float32")
        order[position, 1] = order[1 - position, 0] = 1.0
        layer.set_weights([order])
    return outputs


def flatten(model, scaling: str, classes: tuple[str, ...], binary_melanoma: bool = False,
            melanoma_output: int | None = None):
    """The model as one flat functional graph on RGB 0-255 with outputs in HAM10000 order
    (``binary_melanoma``: two outputs, ``other`` and ``mel``)."""
    import keras

    if scaling not in SCALINGS:
        raise ImportRefused(f"--scaling: expected one of {', '.join(SCALINGS)}; received "
                            f"{scaling!r}.")
    size = input_size(model)
    scale, offset, _ = SCALINGS[scaling]
    image = keras.Input((size, size, 3), name="image")
    tensor = keras.layers.Rescaling(scale, offset=offset, name="scaling")(image)
    functional = _functional(model)
    if functional is None:
        raise ImportRefused("The Sequential model has no input shape, so it cannot be rebuilt; "
                            "build it (or give its first layer an input shape) and save again.")
    outputs = functional._run_through_graph(tensor, operation_fn=_inline)
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ImportRefused(f"The model has {len(outputs)} outputs; expected one.")
        outputs = outputs[0]
    if binary_melanoma:
        flat = keras.Model(image, _binary_outputs(outputs, melanoma_output),
                           name=f"imported_{model.name}")
        flat.trainable = False
        return flat
    if tuple(outputs.shape[1:]) != (len(CLASS_NAMES),):
        raise ImportRefused(f"The model's output has shape {tuple(outputs.shape)}; expected "
                            f"(None, {len(CLASS_NAMES)}): one probability per class "
                            f"({', '.join(classes)}). A melanoma-vs-the-rest model comes in "
                            "with --binary-melanoma.")
    if tuple(classes) != CLASS_NAMES:
        order = keras.layers.Dense(len(CLASS_NAMES), use_bias=False, trainable=False,
                                   name="class_order")
        outputs = order(outputs)
        permutation = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), "float32")
        for position, name in enumerate(classes):
            permutation[position, CLASS_NAMES.index(name)] = 1.0
        order.set_weights([permutation])
    flat = keras.Model(image, outputs, name=f"imported_{model.name}")
    flat.trainable = False
    return flat


def cam_layer(model) -> str:
    """The last layer with a spatial (rank-4) output: Grad-CAM's target layer."""
    spatial = [layer.name for layer in model.layers
               if layer.name not in ("image", "scaling")
               and len(getattr(layer.output, "shape", ())) == 4]
    if not spatial:
        raise ImportRefused("The model has no convolutional layer with a spatial output, so no "
                            "heatmap can be computed; import a convolutional classifier.")
    return spatial[-1]


def check_outputs(model, seed: int = 0) -> None:
    """Probabilities summing to one on a few random images, or a refusal."""
    size = int(model.inputs[0].shape[1])
    images = np.random.default_rng(seed).uniform(0, 255, (4, size, size, 3)).astype("float32")
    outputs = np.asarray(model(images, training=False), dtype="float64")
    if not np.all(np.isfinite(outputs)) or outputs.min() < -1e-6 or outputs.max() > 1 + 1e-6 \
            or not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
        raise ImportRefused(f"The model's outputs are not probabilities (rows sum to "
                            f"{', '.join(f'{total:.3f}' for total in outputs.sum(axis=1))}, "
                            f"range {outputs.min():.3f} to {outputs.max():.3f}); expected a "
                            + ("softmax over the seven classes: add one as the last layer."
                               if outputs.shape[1] == len(CLASS_NAMES) else
                               "melanoma probability (a sigmoid output, or a softmax over "
                               "two) as the last layer."))


def card_data(request: ImportRequest, size: int, cam: str, weights_sha256: str,
              source_sha256: str) -> dict:
    """The imported model's card: declared facts as declared, nothing it does not have."""
    scale_text = SCALINGS[request.scaling][2]
    return {
        "id": request.model_id, "version": request.version, "name": request.name,
        "kind": "single", "architecture": "imported Keras model (architecture as in the file)",
        "input_size": size,
        "preprocessing": f"{request.framing}; resized to {size}x{size}; the model's declared "
                         f"input scaling, {scale_text}, is a layer inside the rebuilt graph",
        "class_names": list(request.output_names), "melanoma_threshold": 0.5,
        "threshold_method": "default 0.5 until `evaluate` chooses one on validation",
        "temperature": 1.0, "temperature_method": "none until `evaluate` fits one on validation",
        "intended_use": INTENDED_USE, "limitations": [
            "Imported: trained outside this project; its training data, recipe and any overlap "
            "with the evaluation sets are as declared by the importer, not verified.",
            *((BINARY_LIMITATION,) if request.binary_melanoma else ()),
            *(item for item in LIMITATIONS
              if not (request.binary_melanoma and item.startswith("Seven classes only")))],
        "licence": request.licence,
        "training": {"data": request.training_data, "declared_by_importer": True,
                     "initialisation": "unknown (imported model)",
                     "imported_from": {"file": Path(request.file).name,
                                       "sha256": source_sha256,
                                       "declared_class_order": (
                                           ["binary melanoma", f"melanoma output "
                                            f"{request.melanoma_output or 0}"]
                                           if request.binary_melanoma
                                           else list(request.classes)),
                                       "declared_scaling": request.scaling}},
        "metrics": {}, "reproduce": {"import": import_command(request)},
        "weights_file": "model.keras", "weights_sha256": weights_sha256, "cam_layer": cam,
        "members": [], "description": request.description,
    }


def import_command(request: ImportRequest) -> str:
    import shlex

    parts = ["python -m lesionlib import-model", shlex.quote(str(request.file)),
             f"--id {shlex.quote(request.model_id)}", f"--name {shlex.quote(request.name)}",
             (f"--binary-melanoma" + (f" --melanoma-output {request.melanoma_output}"
                                      if request.melanoma_output is not None else "")
              if request.binary_melanoma else f"--classes {','.join(request.classes)}"),
             f"--scaling {request.scaling}"]
    if request.training_data != NOT_DECLARED:
        parts.append(f"--training-data {shlex.quote(request.training_data)}")
    if request.licence != NOT_DECLARED:
        parts.append(f"--licence {shlex.quote(request.licence)}")
    return " ".join(parts)


def evaluate_imported(model_id: str, weights_dir: Path, ham10000: Path, log=print) -> ModelCard:
    """Measure an imported model like any other: predictions on every fixed set present,
    temperature and melanoma threshold on HAM10000 validation, then its quality gate."""
    from lesionlib import evaluation, registry
    from lesionlib.gate_fitting import fit_model_gate

    card = registry.get_card(model_id, registry.discover(weights_dir))
    model = registry.load_single(card)
    frames = {}
    for set_name in evaluation.EVALUATION_SETS:
        try:
            frames[set_name] = evaluation.predict_set(model, set_name)
        except FileNotFoundError:
            continue
        log(f"{model_id}: predicted {set_name}")
    if "ham10000_val" not in frames:
        raise ImportRefused("No HAM10000 validation split here to calibrate on: the model stays "
                            "imported and not evaluated.")
    card, _ = evaluation.finish_evaluation(card, frames, f"python -m lesionlib evaluate --model "
                                                         f"{model_id}")
    log(f"{model_id}: evaluated; fitting its quality gate")
    fit_model_gate(model_id, weights_dir, ham10000)
    return registry.get_card(model_id, registry.discover(weights_dir))


def import_model(request: ImportRequest, weights_dir: Path) -> ModelCard:
    """Check, rebuild and install the model as ``weights_dir/<id>/`` (sealed); returns its card.

    Raises:
        ImportRefused: the file, its layers, its input or outputs, or the id (a folder of that
            id exists) do not allow it.
    """
    from lesionlib import packaging
    from lesionlib.cards import CardError, validate_card_data

    folder = Path(weights_dir) / request.model_id
    if folder.exists():
        raise ImportRefused(f"A model folder {request.model_id!r} exists already; choose another "
                            "--id (an import never replaces a model).")
    try:
        validate_card_data(card_data(request, 224, "x", "0" * 64, "0" * 64), request.model_id)
    except CardError as error:
        raise ImportRefused(str(error)) from None
    model = flatten(load_safely(request.file), request.scaling, request.classes,
                    request.binary_melanoma, request.melanoma_output)
    check_outputs(model)
    cam = cam_layer(model)
    with tempfile.TemporaryDirectory() as scratch:
        rebuilt = Path(scratch) / "model.keras"
        model.save(rebuilt)
        data = card_data(request, int(model.inputs[0].shape[1]), cam, "0" * 64,
                         sha256_of(Path(request.file)))
        return packaging.install_model(rebuilt, folder, data)
