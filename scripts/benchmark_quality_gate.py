"""Measure the quality / out-of-distribution gate (lesionlib.quality) and write the figures.

Detection rate: on a set built here of images that are not usable dermoscopy — photographs from
``skimage.data`` (not dermoscopic), synthetic blanks, and HAM10000 *test* images degraded by heavy
blur, under- and over-exposure. False-alarm rate: on the untouched HAM10000 test split (1,509
images). The gate's thresholds were fitted on training/validation data only (``fit-gate``).

Usage: python scripts/benchmark_quality_gate.py [--model ensemble.ham10000] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lesionlib import data, registry  # noqa: E402
from lesionlib.classes import CLASS_NAMES  # noqa: E402
from lesionlib.quality import QualityChecker  # noqa: E402

IMAGE_CODES = {"blank", "blurred", "dark", "bright", "not_dermoscopic"}
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins",
                  "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
                  "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
                  "rocket", "text")


def skimage_photographs() -> list[tuple[str, np.ndarray]]:
    from skimage import data as skimage_data

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            image = np.asarray(getattr(skimage_data, name)())
        except Exception as error:  # noqa: BLE001 - a data file may need a download
            print(f"  skipping skimage.data.{name}: {error}", file=sys.stderr)
            continue
        if image.dtype != np.uint8:
            image = (255 * (image.astype("float64") / max(image.max(), 1))).astype("uint8")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        photos.append((f"photo:{name}", image[..., :3]))
    return photos


def degraded_set(test_images: list[np.ndarray], rng: np.random.Generator, count: int):
    chosen = rng.choice(len(test_images), size=count, replace=False)
    images = []
    for index in chosen[: count // 3]:
        images.append(("blur", cv2.GaussianBlur(test_images[index], (0, 0), 6)))
    for index in chosen[count // 3: 2 * count // 3]:
        images.append(("dark", (test_images[index] * 0.2).astype("uint8")))
    for index in chosen[2 * count // 3:]:
        bright = 255 - (255 - test_images[index].astype("float64")) * 0.15
        images.append(("bright", bright.astype("uint8")))
    for colour in ((0, 0, 0), (255, 255, 255), (128, 128, 128), (224, 172, 150), (200, 120, 100)):
        images.append(("blank", np.full((150, 200, 3), colour, dtype="uint8")))
    return images


def flagged_by_image_gate(reports) -> np.ndarray:
    return np.array([any(f.code in IMAGE_CODES for f in report.findings) for report in reports])


def assess(checker, images, batch_size=32):
    """Quality reports and calibrated probabilities, batch by batch."""
    reports, probabilities = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        batch_probabilities, members = checker.classifier.predict_with_members(batch)
        reports += checker.assess(batch, batch_probabilities, members)
        probabilities.append(batch_probabilities)
    return reports, np.concatenate(probabilities)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=registry.DEFAULT_MODEL_ID)
    parser.add_argument("--out", default="reports")
    parser.add_argument("--degraded", type=int, default=150)
    args = parser.parse_args()

    classifier = registry.load_classifier(args.model)
    checker = QualityChecker(classifier)
    if checker.gate is None:
        print("This model has no quality_gate.npz; run `python -m lesionlib fit-gate` first.")
        return 2
    labels = data.select_split(data.load_labels(data.resolve_data_dir()), "test")
    test_images = [data.load_image(path) for path in labels["path"]]
    test_reports, test_probabilities = assess(checker, test_images)
    false_alarm = flagged_by_image_gate(test_reports)
    uncertain = np.array([any(f.code in ("uncertain", "disagreement") for f in r.findings)
                          for r in test_reports])
    correct = test_probabilities.argmax(axis=1) == labels["label"].to_numpy()
    false_alarm_by_class = {name: float(false_alarm[labels["label"].to_numpy() == index].mean())
                            for index, name in enumerate(CLASS_NAMES)}

    rng = np.random.default_rng(0)
    bad = skimage_photographs() + degraded_set(test_images, rng, args.degraded)
    bad_reports, _ = assess(checker, [image for _, image in bad])
    detected = flagged_by_image_gate(bad_reports)
    kinds = sorted({name.split(":")[0] for name, _ in bad})
    by_kind = {kind: {"n": int(sum(name.split(":")[0] == kind for name, _ in bad)),
                      "detected": float(np.mean([d for (name, _), d in zip(bad, detected)
                                                 if name.split(":")[0] == kind]))}
               for kind in kinds}
    results = {
        "model": classifier.card.id, "model_version": classifier.card.version,
        "command": "python scripts/benchmark_quality_gate.py --model " + args.model,
        "ham10000_test_images": int(len(test_images)),
        "false_alarm_rate_image_gate": float(false_alarm.mean()),
        "false_alarm_rate_by_class": false_alarm_by_class,
        "unsure_flag_rate_on_test": float(uncertain.mean()),
        "accuracy_when_unsure": float(correct[uncertain].mean()) if uncertain.any() else None,
        "accuracy_when_not_unsure": float(correct[~uncertain].mean()) if (~uncertain).any()
        else None,
        "bad_images": int(len(bad)), "detection_rate": float(detected.mean()),
        "detection_by_kind": by_kind,
        "missed": [name for (name, _), d in zip(bad, detected) if not d and ":" in name],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality_gate.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Quality / out-of-distribution gate", "",
             f"Model `{results['model']}` v{results['model_version']}. Reproduce: "
             f"`{results['command']}` (needs ../shared/data).", "",
             f"- Detection rate on {results['bad_images']} unusable images: "
             f"**{results['detection_rate']:.1%}**",
             f"- False-alarm rate of the image gate on the HAM10000 test split "
             f"({results['ham10000_test_images']} images): "
             f"**{results['false_alarm_rate_image_gate']:.1%}**",
             f"- 'Unsure' flags (entropy or ensemble disagreement) on the test split: "
             f"{results['unsure_flag_rate_on_test']:.1%} of cases; accuracy "
             f"{results['accuracy_when_unsure'] or 0:.1%} when flagged vs "
             f"{results['accuracy_when_not_unsure'] or 0:.1%} when not", "",
             "False alarms by true class on the test split: " + ", ".join(
                 f"{name} {rate:.1%}" for name, rate in false_alarm_by_class.items()), "",
             "| kind | n | detected |", "|---|---|---|"]
    lines += [f"| {kind} | {value['n']} | {value['detected']:.1%} |"
              for kind, value in by_kind.items()]
    lines += ["", f"Missed photographs: {', '.join(results['missed']) or 'none'}", ""]
    (out / "quality_gate.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
