"""One worker of the localhost multi-worker test: train a tiny model on fixed random data.

Usage: python tests/distributed_worker.py RUN_DIR [WORKERS INDEX]  (no WORKERS: one process).
Writes RUN_DIR/last.keras (chief) and prints "done". LESIONLIB_TEST_EPOCHS=6 in the environment trains longer
(scripts/benchmarks/check_worker_failure.sh).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str]) -> int:
    from lesionlib import distributed

    run_dir = Path(argv[0])
    cluster = (distributed.Cluster(distributed.parse_workers(argv[1]), int(argv[2]))
               if len(argv) > 1 else None)
    strategy = distributed.make_strategy(cluster, timeout_seconds=120)

    import keras
    import numpy as np

    from lesionlib.architectures import register_architecture
    from lesionlib.training import TrainConfig, train

    @register_architecture("tiny_no_bn_test", 16, "unit", "top_activation", "test only", "none")
    def _tiny(scaled, imagenet):  # no BatchNormalization: per-worker batches add up exactly
        tensor = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(scaled)
        return keras.layers.Conv2D(8, 3, activation="relu", name="top_activation")(tensor), None

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (32, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(32, dtype="int32") % 7
    # Two epochs of two steps (global batch 16), with an EMA of the weights, no augmentation
    # randomness and no dropout: one process and two workers must end with the same weights.
    epochs = int(os.environ.get("LESIONLIB_TEST_EPOCHS", "2"))
    config = TrainConfig("tiny_no_bn_test", 16, imagenet=False, head_epochs=epochs,
                         fine_tune_epochs=0, batch_size=16, augmentation="none", dropout=0.0,
                         ema_momentum=0.5, head_learning_rate=1e-2)
    train(config, images, labels, images[:8], labels[:8], run_dir, log=print, verbose=0,
          strategy=strategy)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
