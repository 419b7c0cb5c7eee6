"""What every command shares: the user-error type, finding a model's card, the dataset folder."""

from __future__ import annotations

from pathlib import Path


class UsageError(Exception):
    """A mistake in the command line or its inputs: shown as one line, exit status 2."""


def user_error_types() -> tuple[type[Exception], ...]:
    """Exceptions that describe the user's input, not a bug (imported only when needed)."""
    from lesionlib.architectures import ImageNetWeightsUnavailable
    from lesionlib.cards import CardError
    from lesionlib.distributed import ClusterError
    from lesionlib.imaging import ImageLoadError
    from lesionlib.inference import ImageListError
    from lesionlib.predictions_csv import OutputFileError

    return (UsageError, CardError, ImageLoadError, ImageListError, OutputFileError,
            ImageNetWeightsUnavailable, ClusterError)


def card(model_id: str, catalogue):
    """The card of ``model_id``; an unknown or refused id is a ``UsageError``."""
    from lesionlib import registry

    try:
        return registry.get_card(model_id, catalogue)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


def seven_class_card(model_id: str, catalogue, command: str):
    """``card`` for commands that need the seven classes; a binary melanoma model is a
    ``UsageError`` that says so."""
    found = card(model_id, catalogue)
    if found.is_binary:
        raise UsageError(f"--model {model_id}: a binary melanoma model (melanoma vs the rest); "
                         f"`{command}` needs a seven-class model. Audit it with `evaluate` and "
                         "the dashboard's audit page.")
    return found


def data_folder(explicit: str | None, name: str = "ham10000") -> Path:
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
