"""Model cards: the JSON that ships beside every model in ``weights/<model id>/card.json``.

A card is validated on load into a frozen ``ModelCard``; a missing or mistyped field is a
``CardError`` naming the field, what was received and what was expected. The weights file is
refused unless its sha256 matches the card.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

from lesionlib.classes import BINARY_CLASS_NAMES, CLASS_NAMES

CARD_FILE = "card.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ("python", "-m", "lesionlib")
INTENDED_USE = ("Decision support for reviewing dermoscopic images and for teaching. Not a "
                "diagnostic device: every output must be checked by a qualified clinician.")
LICENCE = ("CC BY-NC 4.0, inherited from the HAM10000 training data (Tschandl, Rosendahl & "
           "Kittler, Sci Data 5, 180161, 2018). Non-commercial use only, with attribution.")
LIMITATIONS = (
    "No skin-type (Fitzpatrick) information: HAM10000 comes mostly from fair-skinned patients in "
    "Austria and Australia; performance on darker skin is unknown.",
    "Trained on 200x150 px downscaled dermoscopic images; fine structures visible at full "
    "resolution are lost.",
    "Seven classes only: lesions outside them (e.g. squamous cell carcinoma, non-dermoscopic "
    "photographs) are still forced into one of the seven.",
    "Labels of HAM10000 are partly confirmed by follow-up or consensus rather than histopathology "
    "(see dx_type).",
    "Probabilities are calibrated on HAM10000 validation data; on other clinics' images they may "
    "be over- or under-confident (see the external-set metrics).",
)


class CardError(ValueError):
    """A model card is missing, malformed, or does not match its weights."""


class ModelIntegrityError(CardError):
    """A weights file's sha256 differs from its card (tampered, corrupt or replaced)."""


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """The validated content of ``card.json`` (see ``weights/*/card.json`` for examples)."""

    id: str
    version: str
    name: str
    kind: str  # "single", "ensemble" or "edge" (a TFLite export of a single model)
    architecture: str
    input_size: int
    preprocessing: str
    class_names: tuple[str, ...]
    melanoma_threshold: float
    threshold_method: str
    temperature: float
    temperature_method: str
    intended_use: str
    limitations: tuple[str, ...]
    licence: str
    training: dict
    metrics: dict
    reproduce: dict
    weights_file: str | None = None
    weights_sha256: str | None = None
    cam_layer: str | None = None
    members: tuple[str, ...] = ()
    description: str = ""
    edge: dict = dataclasses.field(default_factory=dict)  # edge models: parent, quantization...
    folder: Path | None = dataclasses.field(default=None, compare=False)

    @property
    def calibrated(self) -> bool:
        """Whether ``evaluate`` fitted this model's temperature and melanoma threshold on the
        HAM10000 validation split (it records its command and the metrics in the card); a model
        only packaged (or imported) has neither: its
        confidence is raw and its threshold the 50% default."""
        return "evaluate" in self.reproduce and bool(self.metrics)

    @property
    def extra_training_sets(self) -> tuple[str, ...]:
        """The sets this model learned from beside HAM10000 train (e.g. ``("isic2017",
        "bcn20000")``), as its training recipe records them; empty for a card without a recipe
        (an ensemble, an imported or a hand-packaged model)."""
        recipe = self.training.get("recipe")
        names = recipe.get("extra_training_sets") if isinstance(recipe, dict) else None
        return tuple(names or ())

    @property
    def is_binary(self) -> bool:
        """Whether the model answers melanoma vs the rest only (outputs ``other``, ``mel``)."""
        return tuple(self.class_names) == BINARY_CLASS_NAMES

    @property
    def melanoma_index(self) -> int:
        """The position of the melanoma output among the model's outputs."""
        return tuple(self.class_names).index("mel")

    @property
    def task(self) -> str:
        """What the model answers, in words."""
        return ("melanoma vs the rest (binary)" if self.is_binary
                else f"{len(self.class_names)} HAM10000 classes")

    @property
    def label(self) -> str:
        """How the UI names the model: ``name (id, version)``."""
        return f"{self.name} ({self.id}, v{self.version})"

    def weights_path(self) -> Path:
        if self.folder is None or self.weights_file is None:
            raise CardError(f"Model {self.id!r} has no weights file.")
        return self.folder / self.weights_file

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("folder")
        data["class_names"] = list(self.class_names)
        data["limitations"] = list(self.limitations)
        data["members"] = list(self.members)
        if not self.edge:
            data.pop("edge")
        return data


_FIELD_TYPES = {
    "id": str, "version": str, "name": str, "kind": str, "architecture": str, "input_size": int,
    "preprocessing": str, "class_names": list, "melanoma_threshold": float,
    "threshold_method": str, "temperature": float, "temperature_method": str,
    "intended_use": str, "limitations": list, "licence": str, "training": dict,
    "metrics": dict, "reproduce": dict,
}


def validate_card_data(data: Any, source: str = "card") -> ModelCard:
    """Check a parsed card and build a ``ModelCard``.

    Raises:
        CardError: a field is missing, has the wrong type, or an invalid value.
    """
    if not isinstance(data, dict):
        raise CardError(f"{source}: expected a JSON object, received {type(data).__name__}.")
    for field, expected in _FIELD_TYPES.items():
        if field not in data:
            raise CardError(f"{source}: missing field {field!r}.")
        value = data[field]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise CardError(f"{source}: field {field!r} should be {expected.__name__}, received "
                            f"{type(value).__name__} ({value!r:.60}).")
    if tuple(data["class_names"]) not in (CLASS_NAMES, BINARY_CLASS_NAMES):
        raise CardError(f"{source}: class_names {data['class_names']} differ from the expected "
                        f"{list(CLASS_NAMES)} (or {list(BINARY_CLASS_NAMES)} for a binary "
                        "melanoma model).")
    if tuple(data["class_names"]) == BINARY_CLASS_NAMES and data["kind"] != "single":
        raise CardError(f"{source}: a binary melanoma model is a single model; received kind "
                        f"{data['kind']!r} (ensembles and edge exports are seven-class).")
    if data["kind"] not in ("single", "ensemble", "edge"):
        raise CardError(f"{source}: kind should be 'single', 'ensemble' or 'edge', received "
                        f"{data['kind']!r}.")
    if not 0.0 < float(data["melanoma_threshold"]) <= 1.0:
        raise CardError(f"{source}: melanoma_threshold {data['melanoma_threshold']} is not in "
                        "(0, 1].")
    if not float(data["temperature"]) > 0:
        raise CardError(f"{source}: temperature {data['temperature']} must be positive.")
    if data["kind"] == "edge" and not (isinstance(data.get("edge"), dict)
                                       and data["edge"].get("parent")):
        raise CardError(f"{source}: an edge model needs an 'edge' object naming its 'parent'.")
    if data["kind"] in ("single", "edge"):
        for field in ("weights_file", "weights_sha256", "cam_layer"):
            if not isinstance(data.get(field), str) or not data[field]:
                raise CardError(f"{source}: a single model needs a non-empty {field!r}.")
        weights_file = data["weights_file"]
        if "/" in weights_file or "\\" in weights_file or weights_file.startswith("."):
            raise CardError(f"{source}: weights_file {data['weights_file']!r} must be a plain "
                            "file name inside the model folder.")
    elif not data.get("members"):
        raise CardError(f"{source}: an ensemble needs a non-empty 'members' list.")
    known = {field.name for field in dataclasses.fields(ModelCard)} - {"folder"}
    values = {key: value for key, value in data.items() if key in known}
    for field in ("class_names", "limitations", "members"):
        values[field] = tuple(values.get(field, ()))
    for field in ("melanoma_threshold", "temperature"):
        values[field] = float(values[field])
    return ModelCard(**values)


def read_card(folder: str | Path) -> ModelCard:
    """Read and validate ``folder/card.json``.

    Raises:
        CardError: the file is missing, not JSON, or not a valid card.
    """
    folder = Path(folder)
    path = folder / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"{path}: no model card.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CardError(f"{path}: not valid JSON ({error}).") from None
    card = validate_card_data(data, str(path))
    if card.id != folder.name:
        raise CardError(f"{path}: id {card.id!r} differs from its folder name {folder.name!r}.")
    return dataclasses.replace(card, folder=folder)


def write_card(card: ModelCard, folder: str | Path) -> Path:
    """Write the card, with its ``reproduce`` commands made pasteable (``normalise_command``).

    The file is replaced whole (``replace_in_model_folder``). The caller seals the folder
    afterwards (``lesionlib.integrity.seal``).
    """
    reproduce = {step: normalise_command(command) if isinstance(command, str) else command
                 for step, command in card.reproduce.items()}
    path = Path(folder) / CARD_FILE
    data = {**card.to_json(), "reproduce": reproduce}
    replace_in_model_folder(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path


def replace_in_model_folder(path: str | Path, content: bytes) -> None:
    """Replace the file ``path`` of a model folder whole: ``content`` is written next to the
    folder, then renamed in. A kill mid-write leaves the old file, and no stray temporary file
    among the folder's sealed ones (which would get the folder refused as changed)."""
    path = Path(path)
    home = path.parent.resolve()
    temporary = home.parent / f".{home.name}.{path.name}.tmp"
    temporary.write_bytes(content)
    os.replace(temporary, path)


REPRODUCE_ORDER = ("train", "package", "ensemble", "export", "evaluate", "fit-gate")


def reproduce_steps(card: ModelCard) -> list[tuple[str, str]]:
    """Every step that rebuilds ``card``'s model, in order: the recorded commands, plus the
    gate fit (``fit-gate`` writes no command into the card) where the model has a gate."""
    steps = dict(card.reproduce)
    if card.kind in ("single", "ensemble") and "fit-gate" not in steps:
        steps["fit-gate"] = f"python -m lesionlib fit-gate --model {card.id}"
    ordered = sorted(steps, key=lambda step: (REPRODUCE_ORDER.index(step)
                                              if step in REPRODUCE_ORDER else len(REPRODUCE_ORDER)))
    return [(step, steps[step]) for step in ordered]


def shell_command(argv: list[str]) -> str:
    """The command line a user can paste to run ``argv`` (e.g. ``sys.argv``) again."""
    return normalise_command(shlex.join(argv))


def normalise_command(text: str) -> str:
    """A recorded ``lesionlib`` command as a pasteable shell line.

    The program becomes ``python -m lesionlib``, absolute paths become relative to the
    repository, arguments are quoted with ``shlex.join``, and the words of a single-valued
    option recorded unquoted (``--name EfficientNet-Lite0 (fast)``) are joined back into one
    argument. Text that is not a ``lesionlib`` command is returned unchanged.
    """
    try:
        tokens = shlex.split(text)
    except ValueError:
        return text
    arguments = _lesionlib_arguments(tokens)
    if arguments is None:
        return text
    arguments = _regroup_single_values([_relative_path(token) for token in arguments])
    return shlex.join([*PROGRAM, *arguments])


def _lesionlib_arguments(tokens: list[str]) -> list[str] | None:
    """The arguments after the program (``python -m lesionlib`` or ``.../__main__.py``)."""
    if len(tokens) >= 3 and tokens[1:3] == ["-m", "lesionlib"]:
        return tokens[3:]
    program = Path(tokens[0]).parts[-2:] if tokens else ()
    if program == ("lesionlib", "__main__.py") or program[-1:] == ("lesionlib",):
        return tokens[1:]
    return None


def _relative_path(token: str) -> str:
    """An absolute path (or ``--option=/path``) made relative to the repository."""
    option, equals, value = token.partition("=") if token.startswith("--") else ("", "", token)
    if not os.path.isabs(value):
        return token
    relative = os.path.relpath(value, REPO_ROOT)
    return f"{option}{equals}{relative}"


def _regroup_single_values(arguments: list[str]) -> list[str]:
    """Join the words that follow a single-valued option of the subcommand into one value."""
    from lesionlib.command_options import SINGLE_VALUED_OPTIONS

    if not arguments:
        return arguments
    single = SINGLE_VALUED_OPTIONS.get(arguments[0])
    if single is None:
        return arguments
    grouped, index = [arguments[0]], 1
    while index < len(arguments):
        token = arguments[index]
        grouped.append(token)
        index += 1
        if token in single:
            words = []
            while index < len(arguments) and not arguments[index].startswith("--"):
                words.append(arguments[index])
                index += 1
            if words:
                grouped.append(" ".join(words))
    return grouped


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(card: ModelCard) -> Path:
    """Return the weights path if its sha256 matches the card.

    Raises:
        ModelIntegrityError: the file is missing or its hash differs.
    """
    path = card.weights_path()
    if not path.is_file():
        raise ModelIntegrityError(f"Model {card.id!r}: weights file {path.name} is missing.")
    actual = sha256_of(path)
    if actual != card.weights_sha256:
        raise ModelIntegrityError(
            f"Model {card.id!r}: {path.name} has sha256 {actual[:16]}..., but its card expects "
            f"{card.weights_sha256[:16]}... The file was changed or replaced; refusing to load "
            "it.")
    return path
