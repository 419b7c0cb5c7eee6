"""How long Case review takes to re-render a case it has already seen (target: under 1 s).

Runs the page through Streamlit's AppTest with the default model (the ensemble when shipped):
the first run loads the model, predicts and computes the Grad-CAM heatmap; the following runs
look at the same case again and must come from the caches. Prints the first load and the median
of the re-renders.

    python scripts/benchmarks/benchmark_case_review.py        # shipped weights/ (or $LESIONLIB_WEIGHTS)
    python scripts/benchmarks/benchmark_case_review.py --tiny # the tiny test models
    python scripts/benchmarks/benchmark_case_review.py --method Faster-Score-CAM --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_S = 1.0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="benchmark the tiny test models")
    parser.add_argument("--repeats", type=int, default=5, help="re-renders to time (default 5)")
    parser.add_argument("--sample", default="ISIC_0024904.jpg", help="sample image file")
    parser.add_argument("--method", default="Grad-CAM", help="heatmap method")
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("LESIONLIB_FEEDBACK_URL",
                          f"sqlite:///{tempfile.mkdtemp(prefix='bench_')}/feedback.db")
    if arguments.tiny:
        sys.path.insert(0, str(REPO_ROOT / "tests"))
        from conftest import build_tiny_weights

        os.environ["LESIONLIB_WEIGHTS"] = str(build_tiny_weights(
            Path(tempfile.mkdtemp(prefix="bench_weights_"))))
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO_ROOT / "dashboard.py"), default_timeout=600)
    start = time.perf_counter()
    app.run()  # the default page is Case review: loads the model, predicts, draws a heatmap
    cold_start = time.perf_counter() - start
    app.selectbox(key="case_review_sample").set_value(arguments.sample)
    app.selectbox(key="case_review_method").set_value(arguments.method)
    start = time.perf_counter()
    app.run()
    first_look = time.perf_counter() - start
    if app.exception or app.error:
        print("The page failed:", [item.message for item in app.exception],
              [item.value for item in app.error], file=sys.stderr)
        return 1
    model = app.selectbox(key="case_review_model").value
    timings = []
    for _ in range(arguments.repeats):
        start = time.perf_counter()
        app.run()
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    print(f"model: {model}; sample: {arguments.sample}; heatmap: {arguments.method}")
    print(f"first load (import, model load, prediction + heatmap): {cold_start:.2f} s")
    print(f"first look at another case (prediction + heatmap, model loaded): {first_look:.2f} s")
    print(f"re-render of the same case, median of {arguments.repeats}: {median:.3f} s "
          f"(min {min(timings):.3f}, max {max(timings):.3f})")
    print(f"target: < {TARGET_S:.1f} s -> {'met' if median < TARGET_S else 'NOT met'}")
    return 0 if median < TARGET_S else 2


if __name__ == "__main__":
    sys.exit(main())
