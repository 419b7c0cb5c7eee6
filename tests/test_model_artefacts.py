"""Per-model files (similar-case index, embedding map): one set of rules for both.

Each kind is built for tiny0 over the bundled samples, then: accepted while current; refused as
stale (with its rebuild command) when the installed weights differ; refused when its bytes change
after sealing; missing for tiny1 (with the command that builds it); a foreign ``.npz`` is named
as not being one.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from lesionlib import embedding_map, model_artefacts, registry, retrieval
from lesionlib.integrity import IntegrityError
from test_embedding_map import build_sample_map
from test_retrieval import build_sample_index

KINDS = {
    "similar-case index": (retrieval.KIND, retrieval.load_index, retrieval.RetrievalIndex.load,
                           build_sample_index),
    "embedding map": (embedding_map.KIND, embedding_map.load_map, embedding_map.EmbeddingMap.load,
                      build_sample_map),
}


@pytest.fixture(params=sorted(KINDS))
def built(request, tiny_weights_dir, tmp_path):
    kind, load, read, build = KINDS[request.param]
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    build(weights)
    return kind, load, read, registry.discover(weights)


def test_current_file_is_accepted_and_stale_one_names_the_rebuild(built):
    kind, load, _, catalogue = built
    card = catalogue.cards["tiny0.test"]
    artefact, embedder = load(card, catalogue)
    assert embedder.id == card.id
    assert (artefact.model_id, artefact.model_version, artefact.weights_sha256) == (
        card.id, card.version, card.weights_sha256)
    newer = dataclasses.replace(card, version="2.0.0", weights_sha256="0" * 64)
    with pytest.raises(kind.stale_error, match="v2.0.0") as raised:
        load(newer, catalogue)
    assert isinstance(raised.value, model_artefacts.StaleArtefactError)
    assert kind.build_command("tiny0.test") in str(raised.value)


def test_file_changed_after_sealing_is_refused(built):
    kind, load, _, catalogue = built
    card = catalogue.cards["tiny0.test"]
    path = kind.path(card)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match=kind.file):
        load(card, catalogue)


def test_missing_file_names_the_command_that_builds_it(built):
    kind, load, _, catalogue = built
    with pytest.raises(kind.missing_error) as raised:
        load(catalogue.cards["tiny1.test"], catalogue)
    assert isinstance(raised.value, model_artefacts.ArtefactMissingError)
    assert kind.build_command("tiny1.test") in str(raised.value)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_foreign_file_is_named_as_not_one(name, tmp_path):
    _, _, read, _ = KINDS[name]
    np.savez(tmp_path / "other.npz", numbers=np.arange(3))
    with pytest.raises(ValueError, match=f"not an? {name}: it lacks"):
        read(tmp_path / "other.npz")
    with pytest.raises(ValueError, match=f"not an? {name}"):
        read(b"not a zip file")
