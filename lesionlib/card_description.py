"""Change a shipped model's description (the sentence the Models page and the sidebar show under
its name) without repackaging it.

The card is read through its seal (a folder changed since sealing is refused), rewritten with the
new text and the command that changed it (``reproduce["describe"]``, so the card says why its text
differs from its ``package`` command's), and the folder is resealed. Weights, version, metrics and
lineage are untouched: a description is what the model is for, not what it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lesionlib.cards import CardError, ModelCard, read_card, write_card
from lesionlib.integrity import seal
from lesionlib.registry import read_verified_card

MAX_DESCRIPTION_CHARS = 400


class DescriptionError(CardError):
    """A description that cannot go on a card (empty, or longer than a short paragraph)."""


def clean_description(text: str) -> str:
    """``text`` on one line with single spaces.

    Raises:
        DescriptionError: it is empty or longer than ``MAX_DESCRIPTION_CHARS``.
    """
    cleaned = " ".join(str(text).split())
    if not cleaned:
        raise DescriptionError("received an empty description; expected one or two sentences "
                               "on what the model is for")
    if len(cleaned) > MAX_DESCRIPTION_CHARS:
        raise DescriptionError(f"received a description of {len(cleaned)} characters; expected "
                               f"at most {MAX_DESCRIPTION_CHARS} (one or two sentences: the "
                               "details belong in docs/models.md)")
    return cleaned


def redescribe(folder: str | Path, description: str, command: str) -> tuple[ModelCard, bool]:
    """Give the model in ``folder`` a new description, recording ``command``; reseal the folder.

    Returns:
        The card as now written, and whether anything changed (the same text changes nothing).

    Raises:
        DescriptionError: the text is empty or too long.
        CardError: the folder fails its seal or holds no valid card; nothing is written.
    """
    folder = Path(folder)
    text = clean_description(description)
    card = read_verified_card(folder)
    if card.description == text:
        return card, False
    write_card(dataclasses.replace(card, description=text,
                                   reproduce={**card.reproduce, "describe": command}), folder)
    seal(folder)
    return read_card(folder), True


__all__ = ["DescriptionError", "MAX_DESCRIPTION_CHARS", "clean_description", "redescribe"]
