"""Multi-worker training on this machine: steps per second for 1 and 2 local workers, and the
all-reduce traffic per step of each shipped architecture (for estimating N machines).

    nice -n 10 python scripts/benchmarks/benchmark_distributed.py --out reports/distributed_training.md

Part 1 starts 1, then 2, worker processes on localhost (``MultiWorkerMirroredStrategy`` over
gRPC, ``lesionlib.training``'s own sharded input pipeline with "basic" augmentation) that train
the same architecture on random images with a fixed global batch, and times the steps after a
warm-up on the chief. Part 2 builds each model in ``weights/`` (one model, not edge/ensemble),
freezes it as its recorded recipe does in the phase that trains most weights, and counts the
trainable parameters: each step all-reduces one float32 gradient per trainable parameter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from lesionlib import distributed  # noqa: E402  (no TensorFlow at import)

WORKER_COUNTS = (2, 4, 8, 16)


def run_worker(args) -> int:
    """One worker: time `args.steps` steps after `args.warmup`; the chief writes JSON."""
    cluster = (distributed.Cluster(distributed.parse_workers(args.workers), args.index)
               if args.workers else None)
    strategy = distributed.make_strategy(cluster)
    import keras
    import numpy as np

    from lesionlib import training
    from lesionlib.architectures import build_classifier

    config = training.TrainConfig(args.arch, args.size, imagenet=False,
                                  batch_size=args.batch_size, augmentation="basic")
    steps = args.warmup + args.steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (steps * args.batch_size, args.size, args.size, 3), np.uint8)
    labels = (np.arange(len(images)) % 7).astype("int32")
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_classifier(args.arch, args.size, False, config.dropout)
    distributed.prepare_model(model, strategy)
    _freeze_like_training(model, args.arch, "all")
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(1e-4),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.05))
    weights = training.class_weights(labels, config.class_weight_power)
    dataset = training._training_dataset(strategy, images, labels, config, [0], weights)
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    seconds = times[-1] - times[args.warmup - 1]
    if distributed.is_chief(strategy):
        result = {"workers": distributed.worker_count(strategy), "architecture": args.arch,
                  "image_size": args.size, "global_batch": args.batch_size,
                  "timed_steps": args.steps, "seconds": seconds,
                  "steps_per_second": args.steps / seconds,
                  "images_per_second": args.steps * args.batch_size / seconds,
                  "trainable_parameters": _trainable_count(model)}
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0


def _freeze_like_training(model, architecture: str, fine_tune_from: str | None) -> None:
    """The trainable set of the phase that trains most weights, as ``training.train`` sets it."""
    from lesionlib import training

    if architecture == "small_cnn":
        training.set_phase(model, "scratch", None)
        return
    first = (training.default_fine_tune_from(model, whole_backbone=True)
             if fine_tune_from == "all"
             else fine_tune_from or training.default_fine_tune_from(model))
    training.set_phase(model, "fine_tune", first)


def _trainable_count(model) -> int:
    import numpy as np

    return int(sum(np.prod(variable.shape) for variable in model.trainable_weights))


def measure_local(args, count: int, folder: Path) -> dict:
    """Start ``count`` local workers of this script and return the chief's measurement."""
    addresses = ",".join(distributed.local_cluster(count)) if count > 1 else ""
    json_out = folder / f"workers{count}.json"
    common = [sys.executable, __file__, "--worker", "--arch", args.arch, "--size",
              str(args.size), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
              "--warmup", str(args.warmup), "--json-out", str(json_out)]
    environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    processes = [subprocess.Popen(common + (["--workers", addresses, "--index", str(index)]
                                            if count > 1 else []), env=environment)
                 for index in range(count)]
    codes = [process.wait(timeout=args.timeout) for process in processes]
    if any(codes):
        raise RuntimeError(f"A worker failed (exit codes {codes}).")
    return json.loads(json_out.read_text())


def shipped_traffic(weights_dir: Path) -> list[dict]:
    """Per shipped single model: trainable parameters in its largest phase and bytes per step."""
    from lesionlib.architectures import build_classifier

    rows = []
    for card_path in sorted(weights_dir.glob("*/card.json")):
        card = json.loads(card_path.read_text())
        if card.get("kind", "single") != "single":
            continue
        recipe = (card.get("training") or {}).get("recipe") or {}
        architecture = card["architecture"]
        model = build_classifier(architecture, card["input_size"], False,
                                 colour_constancy=bool(recipe.get("colour_constancy")))
        _freeze_like_training(model, architecture, recipe.get("fine_tune_from"))
        trainable = _trainable_count(model)
        rows.append({"model": card_path.parent.name, "architecture": architecture,
                     "input_size": card["input_size"], "parameters": model.count_params(),
                     "trainable": trainable, "fine_tune_from": recipe.get("fine_tune_from"),
                     "bytes_per_step": trainable * 4,
                     "batch_size": recipe.get("batch_size")})
    return rows


def ring_bytes_per_worker(gradient_bytes: int, workers: int) -> float:
    """Bytes each worker sends (and receives) per step in a ring all-reduce."""
    return 2 * (workers - 1) / workers * gradient_bytes


def write_report(local: list[dict], traffic: list[dict], args, out: Path) -> None:
    lines = [
        "# Distributed training: measured here, and estimated for N machines",
        "",
        "Reproduce: `nice -n 10 python scripts/benchmarks/benchmark_distributed.py --arch "
        f"{args.arch} --size {args.size} --batch-size {args.batch_size} --steps {args.steps} "
        f"--warmup {args.warmup} --out {out.as_posix()}`. Written "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## 1. Measured on this machine (1 and 2 local workers)",
        "",
        f"Each worker is a process on this {os.cpu_count()}-core machine, which also ran other "
        "jobs (a model training among them) while this was measured; the workers ran at nice "
        "10. The global batch is fixed, so two workers each compute half of it and all-reduce "
        "the gradients over localhost gRPC. No speed-up is expected here: both workers share "
        "the same two cores.",
        "",
        "| workers | architecture | input | global batch | trainable params | timed steps "
        "| steps/s | images/s |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in local:
        lines.append(f"| {row['workers']} | {row['architecture']} | {row['image_size']}px | "
                     f"{row['global_batch']} | {row['trainable_parameters']:,} | "
                     f"{row['timed_steps']} | {row['steps_per_second']:.3f} | "
                     f"{row['images_per_second']:.2f} |")
    if len(local) == 2:
        lines += ["", f"Two workers / one worker: "
                  f"{local[1]['steps_per_second'] / local[0]['steps_per_second']:.2f}x steps/s. "
                  "Read this ratio with care: while other jobs run at normal priority, the "
                  "kernel gives each nice-10 process a share of the two cores, so two worker "
                  "processes together get up to twice the CPU time of one. A ratio above 1 "
                  "here says more about that share than about scaling; the steps also differ "
                  "from run to run with the other jobs' load. What this does show: two "
                  "workers train with the real input pipeline and all-reduce, and the "
                  "all-reduce over localhost does not dominate a step."]
    lines += [
        "",
        "## 2. All-reduce traffic per step of each shipped architecture",
        "",
        "Each step every worker all-reduces one float32 gradient per trainable parameter "
        "(trainable parameters x 4 bytes), counted in the phase that trains most weights "
        "under the model's recorded recipe (BatchNormalization frozen in fine-tuning; "
        "`small_cnn` trains everything). A ring all-reduce makes each worker send, and "
        "receive, 2(N-1)/N times the gradient bytes per step.",
        "",
        "| model | input | params | trainable (phase 2) | gradient MB/step | "
        + " | ".join(f"sent per worker, N={n} (MB)" for n in WORKER_COUNTS) + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in WORKER_COUNTS) + " |",
    ]
    for row in traffic:
        lines.append(
            f"| {row['model']} ({row['architecture']}, fine-tune from "
            f"{row['fine_tune_from'] or 'default' if row['architecture'] != 'small_cnn' else '-'}"
            f") | {row['input_size']}px | {row['parameters']:,} | {row['trainable']:,} | "
            f"{row['bytes_per_step'] / 1e6:.1f} | "
            + " | ".join(f"{ring_bytes_per_worker(row['bytes_per_step'], n) / 1e6:.1f}"
                         for n in WORKER_COUNTS) + " |")
    lines += _bandwidth_section(traffic)
    out.write_text("\n".join(lines) + "\n")


def _bandwidth_section(traffic: list[dict]) -> list[str]:
    """Network bandwidth needed so the all-reduce takes at most a quarter of a step."""
    share, step_times = 0.25, (0.05, 0.2, 1.0)
    lines = [
        "",
        "## 3. Network bandwidth needed (estimate, with its assumptions)",
        "",
        "Assumptions: one GPU per machine; the global batch stays the recipe's (32; 64 for "
        "small_cnn), so each worker computes 1/N of it per step; Keras `fit` all-reduces after "
        "the backward pass, so communication is not hidden behind compute; the all-reduce should "
        f"take at most {share:.0%} of a step; link latency is ignored (a ring has 2(N-1) "
        "latency-bound hops, about 0.1 ms each on a LAN, which matters only for the smallest "
        "models). The step times below are assumptions for one worker's share of the batch, "
        "not measurements (this machine has no GPU, and the lent GPU machines have no "
        "TensorFlow). Needed bandwidth = 2(N-1)/N x gradient bytes x 8 / "
        f"({share:.0%} x step time), in Gbit/s, for N=8:",
        "",
        "| model | " + " | ".join(f"step {seconds:g} s" for seconds in step_times) + " |",
        "| --- | " + " | ".join("---:" for _ in step_times) + " |",
    ]
    for row in traffic:
        sent = ring_bytes_per_worker(row["bytes_per_step"], 8)
        lines.append(f"| {row['model']} | " + " | ".join(
            f"{sent * 8 / (share * seconds) / 1e9:.1f}" for seconds in step_times) + " |")
    lines += [
        "",
        "Reading it: at 1 GbE (1 Gbit/s) only steps of about a second or more (CPU workers) "
        "keep the all-reduce under a quarter of the step for the EfficientNet-Lite models; GPU "
        "workers whose step takes 0.05-0.2 s need about 4 to 21 Gbit/s (10 or 25 GbE). A "
        "larger global batch (more images per step for the same gradient bytes) is the usual "
        "way to scale further; it changes the recipe and must be validated like any other "
        "recipe change.",
    ]
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per measurement")
    parser.add_argument("--out", default="reports/distributed_training.md")
    parser.add_argument("--weights", default=str(REPO_ROOT / "weights"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        local = [measure_local(args, count, Path(folder)) for count in (1, 2)]
    for row in local:
        print(json.dumps(row))
    traffic = shipped_traffic(Path(args.weights))
    out = Path(args.out)
    write_report(local, traffic, args, out)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
