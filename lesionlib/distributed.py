"""Training on several machines with TensorFlow's ``MultiWorkerMirroredStrategy``.

Every machine runs the same ``python -m lesionlib train ...`` command with the same
``--workers host:port,host:port,...`` list and its own ``--worker-index`` (0 is the chief). The
list becomes ``TF_CONFIG``, TensorFlow's own cluster description, and the strategy keeps one
synchronous copy of the model per worker: each step every worker computes the gradients of its
shard of the global batch and a ring all-reduce sums them (TensorFlow collectives over gRPC; NCCL
between GPUs). A cluster manager that sets ``TF_CONFIG`` itself (a Kubernetes TFJob, for example)
needs no flags: a ``TF_CONFIG`` in the environment is read when ``--workers`` is not given.

Only the chief writes the run folder (checkpoints, ``state.json``); the other workers write the
same files to a private temporary folder, as the TensorFlow multi-worker guide recommends, and
delete it. See docs/distributed_training.md for starting, resuming and failures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

TF_CONFIG = "TF_CONFIG"


class ClusterError(ValueError):
    """A cluster that cannot train as described (bad addresses, workers out of step)."""
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers of a run (``host:port``, chief first) and which one this process is."""

    workers: tuple[str, ...]
    index: int

    def __post_init__(self):
        if not self.workers:
            raise ClusterError("A cluster needs at least one worker address (host:port).")
        if not 0 <= self.index < len(self.workers):
            raise ClusterError(f"Worker index {self.index} is outside the {len(self.workers)} "
                             f"workers given (expected 0 to {len(self.workers) - 1}).")

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def tf_config(self) -> dict:
        """``TF_CONFIG`` for this process: every worker's address and this task."""
        return {"cluster": {"worker": list(self.workers)},
                "task": {"type": "worker", "index": self.index}}


def parse_workers(text: str) -> tuple[str, ...]:
    """``"host1:port,host2:port"`` -> addresses, in order (the first one is the chief).

    Raises:
        ClusterError: an entry is not ``host:port`` with a port in 1-65535, or is listed twice.
    """
    addresses = tuple(part.strip() for part in text.split(",") if part.strip())
    if not addresses:
        raise ClusterError(f"--workers: expected a comma list of host:port, received {text!r}.")
    for address in addresses:
        match = _ADDRESS.match(address)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise ClusterError(f"--workers: {address!r} is not host:port (e.g. 10.0.0.5:12345, "
                             "port 1-65535).")
    repeated = sorted({address for address in addresses if addresses.count(address) > 1})
    if repeated:
        raise ClusterError(f"--workers lists {', '.join(repeated)} more than once.")
    return addresses


def cluster_from_tf_config(text: str) -> Cluster:
    """A ``TF_CONFIG`` value (JSON) -> ``Cluster``; a ``chief`` task, if any, comes first.

    Raises:
        ClusterError: not JSON, no worker list, or a task type other than chief/worker.
    """
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chief = list(cluster.get("chief", []))
        workers = tuple(chief + list(cluster.get("worker", [])))
        task_type, task_index = task["type"], int(task.get("index", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ClusterError(f"{TF_CONFIG} is not a cluster description ({error}); expected JSON "
                         '{"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": 0}}.') from None
    if task_type not in ("chief", "worker"):
        raise ClusterError(f"{TF_CONFIG} task type {task_type!r} is not supported: "
                         "MultiWorkerMirroredStrategy uses 'chief' and 'worker' only.")
    index = task_index if task_type == "chief" else len(chief) + task_index
    return Cluster(workers, index)


def resolve_cluster(workers: str | None, worker_index: int | None,
                    environ: dict | None = None) -> Cluster | None:
    """The cluster in force: ``--workers``/``--worker-index``, else ``TF_CONFIG``, else None
    (one process, no strategy).

    Raises:
        ClusterError: the flags are incomplete, or given while ``TF_CONFIG`` is set too.
    """
    environ = os.environ if environ is None else environ
    if workers is None:
        if worker_index is not None:
            raise ClusterError("--worker-index needs --workers (the list of every worker).")
        text = environ.get(TF_CONFIG, "").strip()
        return cluster_from_tf_config(text) if text else None
    if environ.get(TF_CONFIG, "").strip():
        raise ClusterError(f"--workers was given but {TF_CONFIG} is set too: use one of them "
                         f"(unset {TF_CONFIG}, or drop --workers/--worker-index).")
    if worker_index is None:
        raise ClusterError("--workers needs --worker-index (this machine's position in the list, "
                         "0 for the chief).")
    return Cluster(parse_workers(workers), worker_index)


def make_strategy(cluster: Cluster | None, timeout_seconds: float | None = None):
    """The strategy for ``cluster``: TensorFlow's default (one process) when None or one worker,
    otherwise ``MultiWorkerMirroredStrategy`` with ``TF_CONFIG`` set from ``cluster``.

    Call it before any other TensorFlow work in the process (TensorFlow's requirement). It blocks
    until every worker has started. ``timeout_seconds`` bounds each collective, so that a dead
    peer ends the run with an error instead of a hang.
    """
    import tensorflow as tf

    if cluster is None or cluster.size == 1:
        return tf.distribute.get_strategy()
    os.environ[TF_CONFIG] = json.dumps(cluster.tf_config())
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def peer_failure_types() -> tuple[type[Exception], ...]:
    """TensorFlow errors that end every worker when one of them stops (missed heartbeats,
    aborted collectives)."""
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError)


def describe_peer_failure(error: Exception) -> str:
    """One line on why the cluster stopped, from TensorFlow's long error text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if "unhealthy" in line or "abort" in line.lower()),
                  lines[0] if lines else "")
    return f"the cluster stopped ({type(error).__name__}: {reason[:300]})."


def worker_count(strategy) -> int:
    """How many workers (input pipelines) ``strategy`` spans; 1 for a single process."""
    if strategy is None or not _is_multi_worker(strategy):
        return 1
    return strategy.cluster_resolver.cluster_spec().num_tasks("worker") + len(
        strategy.cluster_resolver.cluster_spec().as_dict().get("chief", []))


def worker_index(strategy) -> int:
    """This process's position among the workers (0 is the chief)."""
    if strategy is None or not _is_multi_worker(strategy):
        return 0
    resolver = strategy.cluster_resolver
    chiefs = len(resolver.cluster_spec().as_dict().get("chief", []))
    return resolver.task_id if resolver.task_type == "chief" else chiefs + resolver.task_id


def is_chief(strategy) -> bool:
    return worker_index(strategy) == 0


def _is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def write_dir(run_dir: Path, strategy) -> Path:
    """Where this worker writes checkpoints: the run folder on the chief; elsewhere a
    temporary folder named after the worker and the run folder (a restarted worker reuses it;
    ``release_write_dir`` removes it)."""
    if is_chief(strategy):
        return run_dir
    import hashlib

    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"lesionlib-worker{worker_index(strategy)}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def release_write_dir(folder: Path, run_dir: Path) -> None:
    """Delete a non-chief worker's temporary folder (never the run folder)."""
    if folder.resolve() != run_dir.resolve():
        shutil.rmtree(folder, ignore_errors=True)


def gather_from_workers(strategy, values: list[int]) -> list[list[int]]:
    """Every worker's ``values`` (same length everywhere), in worker order; one collective."""
    import tensorflow as tf

    if not _is_multi_worker(strategy):
        return [list(values)]
    local = tf.constant([values], tf.int64)
    gathered = strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0)
    return [[int(value) for value in row] for row in gathered.numpy()]


def shard_rows(rows, count: int, index: int):
    """This shard's contiguous part of one global batch (sizes differ by at most one)."""
    import numpy as np

    return np.array_split(rows, count)[index]


def local_cluster(count: int) -> tuple[str, ...]:
    """``count`` free ``localhost:port`` addresses, for trying several workers on one machine."""
    import socket

    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return tuple(f"localhost:{sock.getsockname()[1]}" for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def prepare_model(model, strategy) -> None:
    """Work around two Keras 3 gaps with ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585,
    open in Keras 3.15.1); no effect for one process.

    1. ``fit`` first builds the optimizer from one batch and hands the whole (inputs, targets,
       weights) structure to ``strategy.reduce``, which fails: building needs only shapes and
       dtypes, so this model builds from this worker's own batch.
    2. ``fit`` averages each step's logs across workers with ``reduce(MEAN, axis=0)``, which
       fails for the scalar loss: the train step returns its logs with shape ``[1]``.
    """
    if not _is_multi_worker(strategy):
        return
    import tensorflow as tf

    def local_value(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local_value, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    train_step = model.train_step

    def train_step_with_vector_logs(data):
        return {name: tf.reshape(value, [1]) for name, value in train_step(data).items()}

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = train_step_with_vector_logs
