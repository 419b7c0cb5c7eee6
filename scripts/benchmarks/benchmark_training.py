"""Training throughput: the real pipeline against a bare ``fit`` of the same model, same run.

For each architecture and input size: a few steps of ``lesionlib.training``'s own dataset
(strong augmentation, resolution augmentation, the colour layer, class weights, EMA) and the same
number of steps of ``model.fit`` on in-memory tensors; images per second of each and their ratio
(target >= 0.85x). Prints the CPU flags and the load average first: compare speeds only as
ratios measured in one run, on a quiet machine (no training, tests or helpers beside it).

    python scripts/benchmarks/benchmark_training.py                      # Lite0 at 224 and 160
    python scripts/benchmarks/benchmark_training.py --arch efficientnet_lite0 efficientnet_lite2 \
        --sizes 128 160 192 224 --steps 6
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    wanted = [flag for flag in flags if flag.startswith(("avx", "amx")) or flag == "fma"]
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "unknown")
    return f"{model}; {os.cpu_count()} cores; {' '.join(sorted(wanted))}"


def measure(arch: str, size: int, steps: int, batch: int) -> tuple[float, float]:
    """(pipeline images/s, bare fit images/s) over ``steps`` steps after one warm-up step."""
    import keras

    from lesionlib.architectures import build_classifier
    from lesionlib.training import (TrainConfig, _optimizer, class_weights, default_fine_tune_from,
                                    make_dataset, set_phase)

    rng = np.random.default_rng(0)
    count = batch * (steps + 1)
    images = rng.integers(0, 255, (count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, count).astype("int32")
    config = TrainConfig(architecture=arch, image_size=size, batch_size=batch,
                         colour_constancy=True, augmentation="strong", ema_momentum=0.998,
                         low_resolution_probability=0.3)
    results = []
    for pipeline in (True, False):
        keras.utils.set_random_seed(0)
        model = build_classifier(arch, size, True, 0.3, colour_constancy=True)
        set_phase(model, "fine_tune", default_fine_tune_from(model, whole_backbone=True))
        model.compile(optimizer=_optimizer(config, "fine_tune", 1e-4, steps + 1, 1),
                      loss="categorical_crossentropy")
        if pipeline:
            data = make_dataset(images, labels, config, [0], class_weights(labels, 0.8))
            model.fit(data.take(1), verbose=0)  # warm-up: tracing, first batch
            data = make_dataset(images, labels, config, [1], class_weights(labels, 0.8))
            started = time.perf_counter()
            model.fit(data.take(steps), verbose=0)
        else:
            x = images.astype("float32")
            y = keras.utils.to_categorical(labels, 7)
            model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)
            started = time.perf_counter()
            model.fit(x[batch:], y[batch:], batch_size=batch, verbose=0)
        results.append(steps * batch / (time.perf_counter() - started))
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["efficientnet_lite0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 160])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(f"CPU: {cpu_flags()}")
    print(f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print("| architecture | size | pipeline img/s | bare fit img/s | ratio (target >= 0.85) |")
    print("|---|---|---|---|---|")
    for arch in args.arch:
        for size in args.sizes:
            pipeline, bare = measure(arch, size, args.steps, args.batch_size)
            print(f"| {arch} | {size} | {pipeline:.1f} | {bare:.1f} | {pipeline / bare:.2f} |",
                  flush=True)
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
