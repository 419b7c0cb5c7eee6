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
