"""How long reading and verifying the model catalogue takes (``registry.discover``).

Every file of every model folder is hashed against its manifest (``lesionlib.integrity``), so
this is the cost the dashboard pays each time it re-reads the catalogue (once a minute).

    python scripts/benchmarks/benchmark_discover.py [--weights DIR] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights folder (default: weights/)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        catalogue = registry.discover(args.weights)
        times.append(time.perf_counter() - start)
    size = sum(path.stat().st_size for card in catalogue.cards.values()
               for path in card.folder.rglob("*") if path.is_file())
    print(f"discover: median {statistics.median(times) * 1000:.0f} ms over {args.repeat} runs; "
          f"{len(catalogue.cards)} models ({size / 1e6:.1f} MB verified), "
          f"{len(catalogue.problems)} refused")


if __name__ == "__main__":
    main()
