"""The attribution line of every page, made from the installed models' cards."""

import dataclasses

from lesionlib import registry
from lesionlib.attribution import BASE, attribution_note, short_label


def trained_on(*sets: str) -> dict:
    """A card's ``training`` whose recipe names ``sets`` beside HAM10000."""
    return {"recipe": {"extra_training_sets": list(sets)}}


def test_names_each_single_model_under_the_sets_it_learned_from(tiny_weights_dir):
    cards = registry.discover(tiny_weights_dir).cards
    plain, other = cards["tiny0.test"], cards["tiny1.test"]
    both = dataclasses.replace(plain, architecture="efficientnet_lite1", version="1.0.0",
                               training=trained_on("isic2017", "bcn20000"))
    isic_only = dataclasses.replace(other, architecture="efficientnet_lite0", version="2.1.0",
                                    training=trained_on("isic2017"))
    ensemble = dataclasses.replace(cards["ensemble.ham10000"], training=both.training)

    note = attribution_note([both, isic_only, ensemble])

    assert note.startswith(BASE) and note.endswith("Non-commercial use with attribution.")
    assert "Lite0 v2 and Lite1 v1 also learned from ISIC 2017" in note
    assert "; Lite1 v1 also learned from BCN20000" in note
    assert "Tiny" not in note and "Small cnn" not in note  # the ensemble adds no data


def test_models_that_learned_from_the_same_sets_are_named_once(tiny_weights_dir):
    cards = registry.discover(tiny_weights_dir).cards
    both = [dataclasses.replace(cards[model_id], architecture=architecture, version="3.0.0",
                                training=trained_on("isic2017", "bcn20000"))
            for model_id, architecture in (("tiny0.test", "efficientnet_lite0"),
                                           ("tiny1.test", "efficientnet_lite2"))]
    note = attribution_note(both)
    assert note.count("Lite0 v3 and Lite2 v3") == 1
    assert "Lite0 v3 and Lite2 v3 also learned from ISIC 2017 challenge images" in note
    assert "(Codella et al., 2017; non-commercial research) and BCN20000 (Combalia" in note


def test_without_extra_sets_only_ham10000_is_cited(tiny_weights_dir):
    cards = registry.discover(tiny_weights_dir).cards.values()
    assert attribution_note(cards) == BASE + ". Non-commercial use with attribution."
    assert attribution_note([]) == BASE + ". Non-commercial use with attribution."


def test_short_labels():
    card = dataclasses.make_dataclass("C", ["architecture", "version"])
    assert short_label(card("efficientnet_lite2, TensorFlow Lite int8", "3.0.0")) == "Lite2 v3"
    assert short_label(card("small_cnn", "1.0.0")) == "Small cnn v1"
