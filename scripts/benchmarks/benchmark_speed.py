"""Speed of batch scoring, case review and cold start, each beside a raw reference of the same run.

Every row runs in a fresh child process (so process start, imports and model loading count where
the row says so, and each row's peak RSS is its own). Raw references: ``model.predict`` on
already-decoded, framed tensors (batch 64, after one warm-up batch, time summed over the
members), and one image's compiled forward+backward pass to the CAM layer (a ``tf.function``
written here, independent of ``lesionlib``). On a shared, loaded machine absolute times are
noisy: the ratios to the reference of the same run are what to compare.

    python scripts/benchmarks/benchmark_speed.py                     # all rows, writes reports/speed.md
    python scripts/benchmarks/benchmark_speed.py --limit 300 --rows predict,case
    python scripts/benchmarks/benchmark_speed.py --code /path/to/other/checkout --out /tmp/before.md

``--code`` measures another checkout's ``lesionlib`` and pages (e.g. ``main``, for a "before"),
with this script's harness and data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_ID = "ensemble.ham10000"
ROWS = ("predict", "case", "methods", "cold", "compare")
TARGETS = {"predict": "throughput >= 0.8x raw; peak RSS <= 1.2 GB",
           "case": "<= 3x raw", "methods": "<= 1 s each", "cold": "<= 5 s (browser)",
           "compare": "<= 1.5 s"}


# ----------------------------------------------------------------------------- child processes
# Each child prints one JSON line (its last line) with its figures and its own peak RSS.

CHILD_PRELUDE = """
import json, os, resource, sys, time
START = time.perf_counter()
sys.path.insert(0, {code!r})
os.chdir({code!r})
def done(**figures):
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures), flush=True)
"""

PREDICT_CHILD = """
from lesionlib.cli import main
code = main(["predict", "--model", "ensemble", "--images", {images!r}, "--out", {out!r},
             "--quiet"])
done(seconds=time.perf_counter() - START, exit_code=code)
"""

RAW_PREDICT_CHILD = """
import numpy as np, pandas as pd
from lesionlib import registry
from lesionlib.imaging import load_image
model = registry.load_classifier({model!r})
files = pd.read_csv({images!r})["file"]
images = [load_image(path) for path in files]
seconds = 0.0
for member in model.members:
    framed = member.frame(images)
    member.keras_model.predict(framed[:64], batch_size=64, verbose=0)  # warm-up: traced once
    start = time.perf_counter()
    member.keras_model.predict(framed, batch_size=64, verbose=0)
    seconds += time.perf_counter() - start
done(seconds=seconds, images=len(images))
"""

CASE_CHILD = """
import numpy as np, pandas as pd, statistics
import tensorflow as tf
from lesionlib import explain, registry
from lesionlib.imaging import load_image
from lesionlib.quality import QualityChecker
model = registry.load_classifier({model!r})
checker = QualityChecker(model)
explainers = [explain.Explainer(member) for member in model.members]
images = [load_image(path) for path in pd.read_csv({images!r})["file"][:{cases} + 1]]

def first_look(image, method="Grad-CAM"):
    # what Case review computes for a case it has not seen: prediction, gate, member heatmaps
    if hasattr(model, "score"):
        scores = model.score([image], with_heatmaps=True)
        probabilities, members = scores.probabilities, scores.member_probabilities
        report = checker.assess([image], probabilities, members, scores.member_features)
    else:
        probabilities, members = model.predict_with_members([image])
        report = checker.assess([image], probabilities, members)
    return explain.ensemble_map(explainers, image, int(probabilities[0].argmax()), method)

first_look(images[0])  # the model's first use (loading is not part of this row)
looks = []
for image in images[1:]:
    start = time.perf_counter()
    first_look(image)
    looks.append(time.perf_counter() - start)

def raw_step(keras_model, layer_name):
    from keras.src.layers.convolutional.base_conv import BaseConv
    names = [layer.name for layer in keras_model.layers]
    layer = next(layer for layer in reversed(keras_model.layers[:names.index(layer_name) + 1])
                 if isinstance(layer, BaseConv))
    import keras
    graph = keras.Model(keras_model.inputs[0], [layer.output, keras_model.outputs[0]])
    @tf.function
    def step(image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            activations, probabilities = graph(image, training=False)
            score = probabilities[:, 4]
        return tape.gradient(score, activations)
    return step

raw = []
for member in model.members:
    step = raw_step(member.keras_model, member.card.cam_layer)
    framed = tf.constant(member.frame([images[0]]))
    step(framed)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        step(framed).numpy()
        times.append(time.perf_counter() - start)
    raw.append(statistics.median(times))
methods = {{}}
if {methods}:
    for method in ("Grad-CAM++", "Faster-Score-CAM"):
        start = time.perf_counter()
        explain.ensemble_map(explainers, images[1], 4, method)
        methods[method] = time.perf_counter() - start
done(seconds=statistics.median(looks), raw_seconds=sum(raw), methods=methods)
"""

IMPORT_CHILD = """
import tensorflow, keras
done(seconds=time.perf_counter() - START)
"""

APP_CHILD = """
os.environ.setdefault("LESIONLIB_FEEDBACK_URL", "sqlite:///" + {feedback!r})
from streamlit.testing.v1 import AppTest
app = AppTest.from_file("dashboard.py", default_timeout=900)
app.run()
cold = time.perf_counter() - START
failed = bool(app.exception or app.error)
compare = None
if {compare} and not failed:
    start = time.perf_counter()
    app.switch_page("pages/compare.py").run()
    compare = time.perf_counter() - start
    failed = bool(app.exception or app.error)
done(seconds=cold, compare_seconds=compare, failed=failed,
     errors=[str(item.value)[:200] for item in app.error])
"""


def run_child(code: Path, body: str, **values) -> dict:
    """Run ``body`` in a fresh Python process at ``code``; its last stdout line as JSON."""
    source = CHILD_PRELUDE.format(code=str(code)) + body.format(**values)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    figures["wall_seconds"] = wall  # process start included
    return figures


# ----------------------------------------------------------------------------- rows

def test_image_list(data_dir: Path, limit: int, folder: Path) -> Path:
    """A CSV naming the HAM10000 lesion-grouped test images (the first ``limit``; 0: all)."""
    import pandas as pd

    labels = pd.read_csv(data_dir / "labels.csv")
    test = labels[labels["split_lesion_grouped"] == "test"]
    if limit:
        test = test.head(limit)
    path = folder / "test_images.csv"
    pd.DataFrame({"file": [str(data_dir / file) for file in test["file"]]}).to_csv(
        path, index=False)
    return path


def measure(code: Path, rows: list[str], images: Path, cases: int, folder: Path,
            partial: Path) -> dict:
    """Run the rows; ``results`` is written to ``partial`` after each (a long run that is
    stopped keeps what it measured)."""
    results = _Results(partial)
    count = sum(1 for _ in open(images)) - 1
    if "predict" in rows:
        out = folder / f"predict_{time.time_ns()}.csv"
        predict = run_child(code, PREDICT_CHILD, images=str(images), out=str(out))
        raw = run_child(code, RAW_PREDICT_CHILD, model=MODEL_ID, images=str(images))
        results["predict"] = {"images": count, "rate": count / predict["wall_seconds"],
                              "raw_rate": count / raw["seconds"],
                              "peak_rss_mb": predict["peak_rss_mb"], "csv": str(out)}
    if "case" in rows or "methods" in rows:
        case = run_child(code, CASE_CHILD, model=MODEL_ID, images=str(images), cases=cases,
                         methods="methods" in rows)
        results["case"] = {"seconds": case["seconds"], "raw_seconds": case["raw_seconds"],
                           "peak_rss_mb": case["peak_rss_mb"]}
        if case["methods"]:
            results["methods"] = case["methods"]
    if "cold" in rows or "compare" in rows:
        tensorflow = run_child(code, IMPORT_CHILD)
        app = run_child(code, APP_CHILD, feedback=str(folder / f"fb_{time.time_ns()}.db"),
                        compare="compare" in rows)
        results["cold"] = {"seconds": app["seconds"], "import_seconds": tensorflow["seconds"],
                           "peak_rss_mb": app["peak_rss_mb"], "failed": app["failed"],
                           "errors": app["errors"]}
        if app["compare_seconds"] is not None:
            results["compare"] = {"seconds": app["compare_seconds"]}
    return dict(results)


class _Results(dict):
    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.path.write_text(json.dumps(self, indent=1))


def markdown(results: dict, code: Path, command: str, before: dict | None = None) -> str:
    load = results.get("load_average")
    lines = [f"# Speed ({MODEL_ID})", "",
             f"Measured by `{results.get('command', command)}` on "
             f"{results.get('measured_at', '(date not recorded)')}, code at `{code}`, "
             f"{results.get('cpu_count', os.cpu_count())} CPU cores (load average "
             f"{'?' if load is None else f'{load:.1f}'} at the end: absolute times are noisy on a "
             "shared machine; compare the ratios to the raw reference of the same run)"
             + (f"; rendered by `{command}`." if command != results.get("command", command)
                else "."), ""]
    if before is not None:
        lines += [f"## After (`{results.get('command', command)}`)", ""]
    lines += table(results)
    if before is not None:
        lines += ["", f"## Before (code at {before.get('code', '?')}, same harness: "
                  f"`{before.get('command', '?')}`)", ""]
        lines += table(before)
        lines += ["", "## Outputs unchanged", "", outputs_comparison(before, results)]
    return "\n".join(lines) + "\n"


def outputs_comparison(before: dict, after: dict) -> str:
    """How far the two runs' predict CSVs (same images) differ."""
    import pandas as pd

    try:
        old, new = (pd.read_csv(run["predict"]["csv"], dtype=str, keep_default_na=False)
                    for run in (before, after))
    except (KeyError, OSError) as error:
        return f"Not compared ({type(error).__name__}: {error})."
    from lesionlib.classes import CLASS_NAMES

    old, new = old.set_index("file"), new.set_index("file")
    shared = sorted(set(old.index) & set(new.index))  # runs may differ in --limit
    old, new = old.loc[shared], new.loc[shared]
    difference = (old[list(CLASS_NAMES)].astype(float)
                  - new[list(CLASS_NAMES)].astype(float)).abs().to_numpy().max()
    same = {column: int((old[column] == new[column]).sum())
            for column in ("prediction", "melanoma_flag", "warning", "error")}
    return (f"predict CSVs of both runs, {len(new)} images: largest absolute probability "
            f"difference {difference:.1e}; identical " + ", ".join(
                f"`{column}` {count}/{len(new)}" for column, count in same.items()) + ".")


def table(results: dict) -> list[str]:
    lines = ["| what | figure | raw reference, same run | ratio | peak RSS | target |",
             "| --- | --- | --- | --- | --- | --- |"]
    if "predict" in results:
        row = results["predict"]
        lines.append(f"| `predict --model ensemble` on {row['images']} HAM10000 test images, "
                     f"process start included | {row['rate']:.1f} img/s | model.predict on "
                     f"decoded tensors, batch 64, summed over members: {row['raw_rate']:.1f} "
                     f"img/s | {row['rate'] / row['raw_rate']:.2f}x raw | "
                     f"{row['peak_rss_mb'] / 1024:.2f} GB | {TARGETS['predict']} |")
    if "case" in results:
        row = results["case"]
        lines.append(f"| first look at a new case (prediction + members' Grad-CAM + gate), "
                     f"median | {1000 * row['seconds']:.0f} ms | compiled forward+backward to "
                     f"the CAM layer, one image, summed over members: "
                     f"{1000 * row['raw_seconds']:.0f} ms | "
                     f"{row['seconds'] / row['raw_seconds']:.1f}x raw | "
                     f"{row['peak_rss_mb'] / 1024:.2f} GB | {TARGETS['case']} |")
    raw_case = results.get("case", {}).get("raw_seconds")
    for method, seconds in results.get("methods", {}).items():
        ratio = f"{seconds / raw_case:.1f}x raw" if raw_case else "-"
        lines.append(f"| {method}, first time on a case (both members) | {seconds:.2f} s | "
                     f"the case row's raw reference | {ratio} | - | {TARGETS['methods']} "
                     "(issue: 3.9 / 4.3 s when raw was 27 ms) |")
    if "cold" in results:
        row = results["cold"]
        status = " (the page FAILED: " + "; ".join(row["errors"]) + ")" if row["failed"] else ""
        lines.append(f"| first page load in AppTest (process start, import, models, first "
                     f"prediction and heatmap){status} | {row['seconds']:.1f} s | import "
                     f"tensorflow + keras in a fresh process: {row['import_seconds']:.1f} s | "
                     f"{row['seconds'] / row['import_seconds']:.1f}x import | "
                     f"{row['peak_rss_mb'] / 1024:.2f} GB | {TARGETS['cold']} |")
    if "compare" in results:
        lines.append(f"| switching to Compare models (after the first page) | "
                     f"{results['compare']['seconds']:.1f} s | - | - | - | "
                     f"{TARGETS['compare']} |")
    return lines


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated rows to measure (default: all of {ROWS})")
    parser.add_argument("--limit", type=int, default=0,
                        help="score only the first N test images (default 0: all 1,509)")
    parser.add_argument("--cases", type=int, default=5, help="new cases timed (median)")
    parser.add_argument("--code", default=str(REPO_ROOT),
                        help="checkout whose lesionlib and pages are measured")
    parser.add_argument("--data", default=os.environ.get("LESIONLIB_DATA")
                        or str(REPO_ROOT.parent / "shared" / "data" / "ham10000"))
    parser.add_argument("--out", default=str(REPO_ROOT / "reports" / "speed.md"))
    parser.add_argument("--before", help="a previous run's .json (e.g. of main, via --code) "
                        "to show beside this one, with the difference of the predict CSVs")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: render --out's .json (and --before) again")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    sys.path.insert(0, str(REPO_ROOT))
    rows = [row.strip() for row in arguments.rows.split(",") if row.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        print(f"Unknown rows {unknown}; expected some of {ROWS}.", file=sys.stderr)
        return 2
    data_dir = Path(arguments.data)
    if not (data_dir / "labels.csv").is_file():
        print(f"--data {data_dir}: no labels.csv; expected the HAM10000 folder.", file=sys.stderr)
        return 2
    code = Path(arguments.code).resolve()
    command = ("python scripts/benchmarks/benchmark_speed.py " + " ".join(sys.argv[1:])).strip()
    out = Path(arguments.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if arguments.render:
        results = json.loads(out.with_suffix(".json").read_text())
    else:
        folder = Path(tempfile.mkdtemp(prefix="benchmark_speed_"))
        images = test_image_list(data_dir, arguments.limit, folder)
        results = measure(code, rows, images, arguments.cases, folder, out.with_suffix(".json"))
    results.setdefault("code", str(code))
    if not arguments.render:
        results.update(command=command, cpu_count=os.cpu_count(),
                       load_average=os.getloadavg()[0],
                       measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    before = json.loads(Path(arguments.before).read_text()) if arguments.before else None
    text = markdown(results, code, command.strip(), before)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
