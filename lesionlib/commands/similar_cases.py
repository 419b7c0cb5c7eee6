"""Similar cases and the embedding map: ``similar``, ``embedding-map``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lesionlib.commands import common


def similar(args) -> int:
    """Build a model's similar-case index (``--build``), or list each image's similar cases."""
    from lesionlib import registry

    catalogue = registry.discover(args.weights)
    model_id = args.model or catalogue.default_id()
    if model_id == "ensemble":
        model_id = registry.DEFAULT_MODEL_ID
    card = common.card(model_id or "", catalogue)
    if args.build:
        return build_similar_index(card, catalogue, args)
    if not args.images or not args.out:
        raise common.UsageError("give --images and --out to find similar cases, or --build to "
                                "build the index.")
    return write_similar_cases(card, catalogue, args)


def build_similar_index(card, catalogue, args) -> int:
    from lesionlib import data, registry, retrieval
    from lesionlib.integrity import seal

    folder = common.data_folder(args.data)
    single_card = retrieval.embedding_card(card, catalogue)
    if single_card.id != card.id:
        print(f"{card.id} is an ensemble: using the features of its member {single_card.id} "
              "(best validation balanced accuracy).")
    model = registry.load_single(single_card)
    labels = data.load_labels(folder)
    train, test = data.select_split(labels, "train"), data.select_split(labels, "test")
    size = single_card.input_size
    log = f"Embedding {len(train)} training images with {single_card.id} at {size}px ..."
    print(log, flush=True)
    samples = data.load_labels(data.REPO_ROOT / "sample_images")
    index = retrieval.build_index(
        model, train, data.cached_images(train, size, "ham10000_train"), samples,
        model.frame([data.load_image(path) for path in samples["path"]]),
        dimensions=args.dimensions,
        description=f"HAM10000 training split (lesion-grouped), {len(train):,} images")
    retriever = retrieval.Retriever(index, model)
    scores = retrieval.evaluate_index(retriever, test["label"].to_numpy(),
                                      data.cached_images(test, size, "ham10000_test"), args.k)
    scores.update(query_set=f"HAM10000 test split (lesion-grouped), {len(test):,} images",
                  command=retrieval.build_command(single_card.id))
    index = dataclasses.replace(index, metrics=scores)
    path = index.save(retrieval.index_path(single_card))
    seal(single_card.folder)  # integrity: the index is part of the model folder's manifest
    print(f"Index written to {path} ({path.stat().st_size / 1e6:.2f} MB, "
          f"{len(index.training)} training + {len(index.samples or ())} sample images, "
          f"{index.components.shape[1]} dims). Test split vs training, k={scores['k']}: "
          f"class-balanced precision@{scores['k']} {scores['precision_at_k']:.4f}, majority-vote "
          f"balanced accuracy {scores['majority_vote_balanced_accuracy']:.4f}.")
    return 0


def write_similar_cases(card, catalogue, args) -> int:
    import pandas as pd

    from lesionlib import registry, retrieval
    from lesionlib.imaging import ImageLoadError, load_image
    from lesionlib.inference import read_image_list
    from lesionlib.predictions_csv import check_output_location

    check_output_location(Path(args.out))
    try:
        index, single_card = retrieval.load_index(card, catalogue)
    except (FileNotFoundError, ValueError) as error:
        raise common.UsageError(str(error)) from None
    inputs = read_image_list(Path(args.images))
    retriever = retrieval.Retriever(index, registry.load_single(single_card))
    rows = []
    for item in inputs:
        if item.path is None:
            rows.append({"file": item.name, "error": "blank entry in the image list"})
            continue
        try:
            image = load_image(item.path)
        except ImageLoadError as error:
            rows.append({"file": item.name, "error": str(error)})
            continue
        neighbours = retriever.similar([image], args.k, exclude_ids=[{item.path.stem}])[0]
        rows += [{"file": item.name, "rank": row.rank, "neighbour_id": row.image_id,
                  "neighbour_label": row.dx, "neighbour_dx_type": row.dx_type,
                  "distance": row.distance, "error": ""} for row in neighbours.itertuples()]
    columns = ["file", "rank", "neighbour_id", "neighbour_label", "distance",
               "neighbour_dx_type", "error"]
    frame = pd.DataFrame(rows, columns=columns).fillna({"error": ""})
    frame["rank"] = frame["rank"].astype("Int64")
    frame["model_id"], frame["embedding_model_id"] = card.id, single_card.id
    from lesionlib.plain_text import csv_cell

    for column in ("file", "error"):  # one line per row, no spreadsheet formula
        frame[column] = frame[column].map(csv_cell)
    frame.to_csv(args.out, index=False, float_format="%.6f")
    failed = int((frame["error"] != "").sum())
    print(f"Wrote {len(frame)} rows for {len(inputs)} images to {args.out} ({failed} unreadable). "
          f"Neighbours from {index.description}, features of {single_card.label}. "
          f"{card.intended_use}")
    return 0


def embedding_map(args) -> int:
    """Lay out the HAM10000 test split by a model's features; write and seal the map."""
    from lesionlib import data, embedding_map, registry
    from lesionlib.integrity import seal

    catalogue = registry.discover(args.weights)
    card = common.card(args.model, catalogue)
    single_card = embedding_map.mapped_card(card, catalogue)
    if single_card.id != card.id:
        print(f"{card.id} is an {card.kind} model: mapping the features of "
              f"{single_card.id}.")
    folder = common.data_folder(args.data)
    try:
        test = data.select_split(data.load_labels(folder), "test")
    except ValueError as error:
        raise common.UsageError(f"{folder}: {error}") from None
    model = registry.load_single(single_card)
    size = single_card.input_size
    print(f"Embedding {len(test)} test images with {single_card.id} at {size}px, then "
          f"{args.method} ...", flush=True)
    result = embedding_map.build_map(model, test, data.cached_images(test, size, "ham10000_test"),
                                     "ham10000_test", args.method, args.seed,
                                     log=lambda message: print(message, flush=True))
    path = result.save(embedding_map.map_path(single_card))
    seal(single_card.folder)  # integrity: the map is part of the model folder's manifest
    scores = result.metrics
    print(f"Map written to {path} ({path.stat().st_size / 1e3:.0f} kB, {len(result)} images). "
          f"Trustworthiness (k={scores['k']}) {scores['trustworthiness']:.3f}; same-class "
          f"precision@{scores['k']} {scores['class_precision_at_k_features']:.3f} in feature "
          f"space, {scores['class_precision_at_k_map']:.3f} on the map.")
    return 0
