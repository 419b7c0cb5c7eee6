"""The attribution line every dashboard page carries, made from the installed models' cards.

Each single model's card records the sets it was trained on (its recipe's
``extra_training_sets``, from which ``lesionlib.packaging`` also writes its ``licence``), so the
line names exactly the installed models that learned from each extra set (ISIC 2017, BCN20000)
and cannot fall behind a newly shipped or removed model.
"""

from __future__ import annotations

from collections.abc import Iterable

from lesionlib.cards import ModelCard

BASE = "Models and images: CC BY-NC 4.0, from HAM10000 (Tschandl et al., Sci Data 2018)"
CLOSING = "Non-commercial use with attribution."
# set name -> how the line cites it
EXTRA_SOURCES = {
    "isic2017": "ISIC 2017 challenge images (Codella et al., 2017; non-commercial research)",
    "bcn20000": "BCN20000 (Combalia et al., 2019; CC BY-NC 4.0)",
}


def short_label(card: ModelCard) -> str:
    """``efficientnet_lite1`` at 1.0.0 -> ``Lite1 v1``; ``small_cnn`` -> ``Small cnn v1``."""
    architecture = card.architecture.split(",")[0].strip()
    base = architecture.removeprefix("efficientnet_").replace("_", " ").capitalize()
    return f"{base} v{card.version.split('.')[0]}"


def learned_from(card: ModelCard, set_name: str) -> bool:
    """Whether ``set_name`` is among the sets the card's model was trained on."""
    return set_name in card.extra_training_sets


def _joined(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def models_by_source(cards: Iterable[ModelCard]) -> dict[str, tuple[str, ...]]:
    """Each extra training set -> the short labels of the installed single models trained on it
    (ensembles and edge copies are made of those and add no data of their own)."""
    singles = sorted((card for card in cards if card.kind == "single"), key=short_label)
    named = {set_name: tuple(dict.fromkeys(short_label(card) for card in singles
                                           if learned_from(card, set_name)))
             for set_name in EXTRA_SOURCES}
    return {set_name: labels for set_name, labels in named.items() if labels}


def attribution_note(cards: Iterable[ModelCard]) -> str:
    """The line: HAM10000, then the models that learned from each extra set (models trained on
    the same sets are named once)."""
    sources_by_models: dict[tuple[str, ...], list[str]] = {}
    for set_name, labels in models_by_source(cards).items():
        sources_by_models.setdefault(labels, []).append(EXTRA_SOURCES[set_name])
    parts = [f"{_joined(list(labels))} also learned from {_joined(citations)}"
             for labels, citations in sources_by_models.items()]
    return "; ".join([BASE, *parts]) + ". " + CLOSING
