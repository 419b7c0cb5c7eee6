"""Files computed from one model's exact weights and kept in its folder.

The similar-case index (``retrieval.npz``) and the embedding map (``embedding_map.npz``) are
plain-array ``.npz`` files that name the model id, version and weights sha256 they were computed
with. Both follow the same rules, kept here: written atomically; read through the folder's
manifest (a file changed after sealing is refused); refused as *stale* when the installed
weights differ, with the command that rebuilds them; *missing* with the same command.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

IDENTITY_FIELDS = ("model_id", "model_version", "weights_sha256")


class ArtefactMissingError(FileNotFoundError):
    """The model has no such file yet."""


class StaleArtefactError(ValueError):
    """The file was computed with other weights than the installed model's."""


@dataclasses.dataclass(frozen=True)
class ArtefactKind:
    """One kind of per-model file: its name, what users call it and how to rebuild it."""

    file: str  # e.g. "retrieval.npz"
    title: str  # e.g. "similar-case index"
    command: str  # with ``{model_id}``, e.g. "python -m lesionlib similar --build --model ..."
    missing_error: type[ArtefactMissingError] = ArtefactMissingError
    stale_error: type[StaleArtefactError] = StaleArtefactError

    def build_command(self, model_id: str) -> str:
        return self.command.format(model_id=model_id)

    def path(self, card) -> Path:
        return Path(card.folder) / self.file


def save_arrays(path: str | Path, arrays: dict) -> Path:
    """Write ``arrays`` as a compressed ``.npz`` at ``path`` atomically (no half-written file)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    temporary.replace(path)
    return path


def read_arrays(source: str | Path | bytes, title: str, required: tuple[str, ...]) -> dict:
    """The arrays of an ``.npz`` from a path or bytes, without pickle.

    Raises:
        ValueError: not an ``.npz``, or it lacks a ``required`` array (named).
    """
    where = str(source) if isinstance(source, (str, Path)) else "the file"
    title = ("an " if title[0] in "aeiou" else "a ") + title
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with np.load(data, allow_pickle=False) as archive:
            values = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{where} is not {title} ({error}).") from None
    missing = [name for name in required if name not in values]
    if missing:
        raise ValueError(f"{where} is not {title}: it lacks {missing}.")
    return values


def check_current(kind: ArtefactKind, artefact, card) -> None:
    """Raises: ``kind.stale_error`` when ``artefact`` (with ``IDENTITY_FIELDS``) was not
    computed with ``card``'s exact weights; the message names both and the rebuild command."""
    made_for = tuple(str(getattr(artefact, name)) for name in IDENTITY_FIELDS)
    if made_for == (card.id, card.version, str(card.weights_sha256)):
        return
    raise kind.stale_error(
        f"The {kind.title} of {card.id} was computed for {made_for[0]} v{made_for[1]} (weights "
        f"{made_for[2][:12]}), but the installed model is {card.id} v{card.version} (weights "
        f"{str(card.weights_sha256)[:12]}). Rebuild it: `{kind.build_command(card.id)}`.")


def read_sealed(kind: ArtefactKind, card) -> bytes:
    """The bytes of ``card``'s file of this kind, checked against its folder's manifest.

    Raises:
        ``kind.missing_error``: no such file (the message gives the command that builds it).
        IntegrityError: the file is not the sealed one.
    """
    from lesionlib.integrity import read_verified

    if not kind.path(card).is_file():
        raise kind.missing_error(
            f"No {kind.title} for {card.id}: expected {kind.file} in its folder. Build it with "
            f"`{kind.build_command(card.id)}`.")
    return read_verified(card.folder, kind.file)
