"""Is each model's heatmap on the lesion? Writes reports/heatmap_faithfulness.{md,json}.

Usage (one rerunnable command, e.g. after a model is repackaged):
    nice -n 10 python scripts/benchmarks/heatmap_faithfulness.py [--models ID ...] [--limit N]

For every shipped Keras model and the ensemble (an edge model is explained by its parent, so it
is not measured twice), on the 200 PH2 images with their lesion masks, for the model's top class:
the share of heatmap energy inside the mask (mask framed like the image) against the mask's
share of the image, for every heatmap method; a deletion curve against a random-map baseline for
``--deletion-methods``; and the edge check (energy in the outer band, no mask), whose threshold
is chosen here on half of PH2 and checked on the other half, then counted on HAM10000 validation
images and on the bundled samples. The dashboard reads the JSON (Models, audit, Case review).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import data, edge, explain, faithfulness, registry  # noqa: E402
from lesionlib.classes import CLASS_NAMES  # noqa: E402
from lesionlib.imaging import load_image  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "sample_images"
ISSUE_CASE = "ISIC_0026857"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ph2", default=None, help="PH2 folder (default ../shared/data/ph2)")
    parser.add_argument("--ham", default=None, help="HAM10000 folder (default as --data)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--models", nargs="*", default=None,
                        help="model ids (default: every single Keras model and ensemble)")
    parser.add_argument("--methods", nargs="*", default=list(explain.METHODS))
    parser.add_argument("--deletion-methods", nargs="*", default=["Grad-CAM"])
    parser.add_argument("--deletion-half", action=argparse.BooleanOptionalAction, default=True,
                        help="deletion curves on every other PH2 image (the 'check' half), "
                             "to keep the run to minutes on a CPU; --no-deletion-half: all")
    parser.add_argument("--deletion-count", type=int, default=None,
                        help="deletion curves on the first N of those images only")
    parser.add_argument("--ham-val", type=int, default=100,
                        help="HAM10000 validation images for the edge check's firing rate")
    parser.add_argument("--limit", type=int, default=None, help="first N PH2 images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recompute", action="store_true",
                        help="ignore the figures kept in .cache/ for unchanged models")
    parser.add_argument("--out", default="reports/heatmap_faithfulness",
                        help="writes OUT.md and OUT.json")
    return parser.parse_args(argv)


def load_ph2(folder: Path, limit: int | None) -> tuple[pd.DataFrame, list, list]:
    """PH2 rows sorted by image id, their images and their lesion masks (same size)."""
    labels = pd.read_csv(folder / "labels.csv").sort_values("image_id").reset_index(drop=True)
    if limit:
        labels = labels.head(limit)
    images, masks = [], []
    for row in labels.itertuples():
        image = load_image(folder / row.file)
        mask = np.asarray(Image.open(folder / row.mask).convert("L")) > 0
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{row.mask}: mask {mask.shape} differs from image "
                             f"{image.shape[:2]}; expected masks at the image size.")
        images.append(image)
        masks.append(mask)
    return labels, images, masks


def ham_validation(folder: Path | None, count: int, seed: int) -> tuple[list, list]:
    """``count`` seeded HAM10000 lesion-grouped validation images, and their ids."""
    if folder is None or count <= 0:
        return [], []
    frame = data.select_split(data.load_labels(folder), "val")
    frame = frame.sample(n=min(count, len(frame)), random_state=seed).sort_values("image_id")
    return [load_image(path) for path in frame["path"]], list(frame["image_id"])


def chosen_models(catalogue: registry.Catalogue, wanted: list[str] | None) -> list[str]:
    ids = wanted or [model_id for model_id, card in sorted(catalogue.cards.items())
                     if card.kind in ("single", "ensemble")]
    for model_id in ids:
        registry.get_card(model_id, catalogue)  # KeyError with close matches
    return ids


def cache_path(args, catalogue, model_id: str, image_ids: list[str]) -> Path:
    """Where a model's measured figures are kept, keyed by its weights and every setting: a
    rerun recomputes only the models that changed (e.g. one that was repackaged)."""
    card = catalogue.cards[model_id]
    key = json.dumps([model_id, card.version, faithfulness.weights_identity(card, catalogue.cards),
                      args.methods, args.deletion_methods, args.ham_val, args.seed, image_ids,
                      args.deletion_half, args.deletion_count,
                      faithfulness.DELETION_FRACTIONS, faithfulness.BORDER_FRACTION], default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return data.CACHE_DIR / "heatmap_faithfulness" / f"{model_id}_{digest}.json"


def measure_all(args, catalogue, ph2_images, ph2_masks, ham_images, sample_images,
                image_ids: list[str]) -> dict:
    measured, remembered = {}, {}
    deletion_rows = list(range(1, len(ph2_images), 2)) if args.deletion_half else \
        list(range(len(ph2_images)))
    deletion_rows = deletion_rows[:args.deletion_count] if args.deletion_count else deletion_rows
    for model_id in chosen_models(catalogue, args.models):
        cached = cache_path(args, catalogue, model_id, image_ids)
        if cached.is_file() and not args.recompute:
            print(f"{model_id}: figures from {cached} (unchanged model and settings)")
            measured[model_id] = json.loads(cached.read_text())
            continue
        started = time.time()
        print(f"{model_id}: loading ...", flush=True)
        classifier = registry.load_classifier(model_id, catalogue=catalogue)
        explainers = []
        for member in classifier.members:
            if member.card.id not in remembered:
                remembered[member.card.id] = faithfulness.RememberingExplainer(
                    explain.Explainer(edge.explained_by(member, catalogue)))
            explainers.append(remembered[member.card.id])
        measured[model_id] = {
            "ph2": faithfulness.measure_model(classifier, explainers, ph2_images, ph2_masks,
                                              tuple(args.methods), tuple(args.deletion_methods),
                                              seed=args.seed, deletion_rows=deletion_rows),
            "ham_val": faithfulness.measure_model(classifier, explainers, ham_images, None,
                                                  ("Grad-CAM",), ()) if ham_images else None,
            "samples": faithfulness.measure_model(classifier, explainers, sample_images, None,
                                                  ("Grad-CAM",), ()),
            "seconds": round(time.time() - started, 1)}
        print(f"{model_id}: done in {measured[model_id]['seconds']:.0f} s", flush=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(measured[model_id]))
    return measured


def choose_threshold(measured: dict, choose_rows: np.ndarray) -> dict:
    """Pool every model's and method's PH2 maps of the "choose" half; Youden's J."""
    shares, off_lesion = [], []
    for figures in measured.values():
        area = np.asarray(figures["ph2"]["mask_area"])[choose_rows]
        for method in figures["ph2"]["methods"].values():
            shares += list(np.asarray(method["border_energy"])[choose_rows])
            off_lesion += list(np.asarray(method["mask_energy"])[choose_rows] < area)
    # at least half the map's weight, so that "lies mostly at the image edge" is true
    minimum = max(0.5, faithfulness.area_share(faithfulness.border_band((100, 100))))
    return faithfulness.choose_edge_threshold(np.asarray(shares), np.asarray(off_lesion), minimum)


def check_rates(ph2: dict, method: str, rows: np.ndarray, threshold: float) -> dict:
    figures = ph2["methods"][method]
    energy = np.asarray(figures["mask_energy"])[rows]
    return faithfulness.edge_check_rates(np.asarray(figures["border_energy"])[rows],
                                         energy < np.asarray(ph2["mask_area"])[rows], threshold)


def build_report(args, catalogue, measured, ph2_ids, ham_ids, sample_ids) -> dict:
    rows = np.arange(len(ph2_ids))
    choose_rows, check_rows = rows[rows % 2 == 0], rows[rows % 2 == 1]
    try:
        chosen = choose_threshold(measured, choose_rows)
    except ValueError as error:  # e.g. a small --limit run with no off-lesion map
        chosen = {"threshold": None, "why_none": str(error)}
    threshold = chosen["threshold"]
    models = {}
    for model_id, figures in measured.items():
        card = catalogue.cards[model_id]
        ph2 = figures["ph2"]
        methods = {}
        for method, per_image in ph2["methods"].items():
            summary = faithfulness.summarise({**per_image, "mask_area": ph2["mask_area"]},
                                             threshold=threshold)
            if threshold is not None:
                summary["edge_check_on_check_half"] = check_rates(ph2, method, check_rows,
                                                                  threshold)
            methods[method] = summary
        samples = figures["samples"]["methods"]["Grad-CAM"]["border_energy"]
        models[model_id] = {
            "name": card.name, "version": card.version, "kind": card.kind,
            "weights": faithfulness.weights_identity(card, catalogue.cards),
            "heatmap_size": faithfulness.heatmap_size_of_card(card), "methods": methods,
            "ham_val_grad_cam": faithfulness.summarise(
                figures["ham_val"]["methods"]["Grad-CAM"], threshold=threshold)
            if figures["ham_val"] else None,
            "samples_grad_cam": {image_id: {"border_energy": round(share, 4),
                                            "class": CLASS_NAMES[index],
                                            "fires": threshold is not None
                                            and bool(share >= threshold)}
                                 for image_id, share, index in zip(
                                     sample_ids, samples, figures["samples"]["class_indices"])},
            "ph2_images": {"class": [CLASS_NAMES[index] for index in ph2["class_indices"]],
                           "mask_area": _rounded(ph2["mask_area"]),
                           "methods": {method: {key: _rounded(per_image[key]) for key in
                                                ("mask_energy", "border_energy")}
                                       for method, per_image in ph2["methods"].items()}},
            "seconds": figures["seconds"]}
    return {
        "command": "python scripts/benchmarks/heatmap_faithfulness.py " + " ".join(sys.argv[1:]),
        "data": {"set": "ph2", "images": len(ph2_ids), "image_ids": list(ph2_ids),
                 "deletion_images": deletion_description(args, len(ph2_ids)),
                 "ham_val_images": len(ham_ids), "samples": len(sample_ids)},
        "settings": {"explained_class": "each model's top (predicted) class",
                     "border_fraction": faithfulness.BORDER_FRACTION,
                     "deletion_fractions": list(faithfulness.DELETION_FRACTIONS),
                     "deletion_fill": "the image's mean colour",
                     "random_baseline": f"uniform noise on a {faithfulness.RANDOM_GRID}x"
                                        f"{faithfulness.RANDOM_GRID} grid, bilinear upsampling, "
                                        f"seed {args.seed}",
                     "off_lesion": "energy inside the mask below the mask's area share"},
        "edge_check": {"threshold": threshold, "border_fraction": faithfulness.BORDER_FRACTION,
                       "chosen_on": "PH2, every other image by sorted image id (the 'choose' "
                                    "half), all models and methods pooled; Youden's J against "
                                    "the mask verdict (off-lesion), at least 50%",
                       "on_choose_half": {key: value for key, value in chosen.items()
                                          if key != "threshold"},
                       "on_check_half": _pooled_check(measured, check_rows, threshold)
                       if threshold is not None else {}},
        "models": models}


def deletion_description(args, count: int) -> str:
    rows = len(range(1, count, 2)) if args.deletion_half else count
    described = ("every other image by sorted id (the 'check' half)" if args.deletion_half
                 else "all images")
    if args.deletion_count and args.deletion_count < rows:
        return f"the first {args.deletion_count} of {described}"
    return described


def _pooled_check(measured: dict, rows: np.ndarray, threshold: float) -> dict:
    shares, off_lesion = [], []
    for figures in measured.values():
        area = np.asarray(figures["ph2"]["mask_area"])[rows]
        for method in figures["ph2"]["methods"].values():
            shares += list(np.asarray(method["border_energy"])[rows])
            off_lesion += list(np.asarray(method["mask_energy"])[rows] < area)
    return faithfulness.edge_check_rates(np.asarray(shares), np.asarray(off_lesion), threshold)


def _rounded(values) -> list:
    return [None if value != value else round(float(value), 4) for value in values]


def main(argv=None) -> int:
    args = parse_arguments(argv)
    ph2_folder = data.resolve_data_dir(args.ph2, name="ph2") if args.ph2 else \
        data.resolve_data_dir(name="ph2")
    if ph2_folder is None:
        print("PH2 not found: pass --ph2 FOLDER (the ../shared/data/ph2 layout, with masks/).",
              file=sys.stderr)
        return 2
    catalogue = registry.discover(args.weights)
    labels, ph2_images, ph2_masks = load_ph2(ph2_folder, args.limit)
    ham_images, ham_ids = ham_validation(data.resolve_data_dir(args.ham) if args.ham else
                                         data.resolve_data_dir(), args.ham_val, args.seed)
    sample_files = sorted(SAMPLE_DIR.glob("*.jpg"))
    sample_images = [load_image(path) for path in sample_files]
    print(f"PH2 {len(ph2_images)} images, HAM10000 validation {len(ham_images)}, samples "
          f"{len(sample_images)}", flush=True)
    measured = measure_all(args, catalogue, ph2_images, ph2_masks, ham_images, sample_images,
                           list(labels["image_id"]) + ham_ids)
    report = build_report(args, catalogue, measured, list(labels["image_id"]), ham_ids,
                          [path.stem for path in sample_files])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(faithfulness.report_markdown(report))
    print(f"Wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
