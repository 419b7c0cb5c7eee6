"""The teaching quiz's stored reveals: ``quiz-reveals``."""

from __future__ import annotations

from pathlib import Path

from lesionlib.commands import common

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_images"


def quiz_images(data: str | None, samples: Path = SAMPLE_DIR) -> tuple[list, str]:
    """``(image_id, file bytes)`` of the quiz's cases: the HAM10000 test split when the dataset
    is here, and the bundled samples (the quiz's cases without it); and where they came from."""
    import pandas as pd

    from lesionlib import data as datasets

    try:
        folder = datasets.resolve_data_dir(data)
    except FileNotFoundError as error:
        raise common.UsageError(str(error)) from None
    images, origins = [], []
    if folder is not None:
        try:
            test = datasets.select_split(datasets.load_labels(folder), "test")
        except ValueError as error:
            raise common.UsageError(f"{folder}: {error}") from None
        images += [(str(row.image_id), (Path(folder) / row.file).read_bytes())
                   for row in test.itertuples() if (Path(folder) / row.file).is_file()]
        origins.append(f"{len(images)} HAM10000 test images")
    if (samples / "labels.csv").is_file():
        bundled = pd.read_csv(samples / "labels.csv")
        found = [(str(row.image_id), (samples / row.file).read_bytes())
                 for row in bundled.itertuples() if (samples / row.file).is_file()]
        images += found
        origins.append(f"{len(found)} bundled samples")
    if not images:
        raise common.UsageError("No quiz images found: expected the HAM10000 dataset (--data, "
                                f"{datasets.DATA_ENV} or ../shared/data/ham10000) or the bundled "
                                f"samples in {samples}.")
    return images, " and ".join(origins)


def quiz_reveals(args) -> int:
    """Compute what the quiz reveals after each commit, for every quiz case; write and seal it."""
    from lesionlib import quiz_reveals as reveals
    from lesionlib import registry
    from lesionlib.integrity import seal

    catalogue = registry.discover(args.weights)
    card = common.seven_class_card(args.model, catalogue, "quiz-reveals")
    images, origin = quiz_images(args.data)
    print(f"Computing the quiz reveals of {card.id} v{card.version} for {origin} ...",
          flush=True)
    classifier = registry.load_classifier(card.id, catalogue=catalogue)
    store = reveals.build(classifier, catalogue, images, args.k,
                          log=lambda message: print(message, flush=True))
    path = store.save(reveals.KIND.path(card))
    seal(card.folder)  # integrity: the store is part of the model folder's manifest
    print(f"Quiz reveals written to {path} ({path.stat().st_size / 1e6:.2f} MB, {len(store)} "
          f"distinct images; heatmaps: {reveals.HEATMAP_METHOD} of the model's answer).")
    return 0
