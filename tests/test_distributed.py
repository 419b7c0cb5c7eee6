"""Multi-worker training: cluster flags and TF_CONFIG, data shards, and two real workers on
localhost ending with the weights of one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lesionlib import distributed
from lesionlib.distributed import Cluster, ClusterError

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def test_workers_flag_becomes_tf_config_with_the_chief_first():
    cluster = distributed.resolve_cluster("10.0.0.5:2222, node-b.lab:2222", 1, environ={})
    assert cluster == Cluster(("10.0.0.5:2222", "node-b.lab:2222"), 1)
    assert not cluster.is_chief and cluster.size == 2
    assert cluster.tf_config() == {"cluster": {"worker": ["10.0.0.5:2222", "node-b.lab:2222"]},
                                   "task": {"type": "worker", "index": 1}}


def test_no_flags_and_no_tf_config_is_one_process():
    assert distributed.resolve_cluster(None, None, environ={}) is None


def test_tf_config_from_the_environment_is_used_chief_first():
    text = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                       "task": {"type": "worker", "index": 1}})
    cluster = distributed.resolve_cluster(None, None, environ={"TF_CONFIG": text})
    assert cluster == Cluster(("a:1", "b:1", "c:1"), 2)
    chief = json.dumps({"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker"}})
    assert distributed.resolve_cluster(None, None, {"TF_CONFIG": chief}).is_chief


@pytest.mark.parametrize("workers, index, environ, message", [
    ("a:1,b:2", None, {}, "needs --worker-index"),
    (None, 1, {}, "--worker-index needs --workers"),
    ("a:1,b:2", 2, {}, "Worker index 2 is outside the 2 workers"),
    ("a:1,b", 0, {}, "'b' is not host:port"),
    ("a:1,b:70000", 0, {}, "'b:70000' is not host:port"),
    ("a:1,a:1", 0, {}, "lists a:1 more than once"),
    (" , ", 0, {}, "expected a comma list"),
    ("a:1,b:2", 0, {"TF_CONFIG": '{"cluster": {}}'}, "TF_CONFIG is set too"),
    (None, None, {"TF_CONFIG": "not json"}, "TF_CONFIG is not a cluster description"),
    (None, None, {"TF_CONFIG": '{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}'},
     "task type 'ps' is not supported"),
])
def test_bad_cluster_descriptions_say_what_was_received(workers, index, environ, message):
    with pytest.raises(ClusterError, match=message):
        distributed.resolve_cluster(workers, index, environ=environ)


def test_train_command_refuses_bad_workers_in_one_line(capsys, tmp_path):
    from lesionlib.cli import main

    status = main(["train", "--arch", "small_cnn", "--size", "32", "--run-dir",
                   str(tmp_path), "--workers", "localhost:1,localhost",
                   "--worker-index", "0"])
    assert status == 2
    assert "'localhost' is not host:port" in capsys.readouterr().err


def test_local_cluster_gives_distinct_free_ports():
    addresses = distributed.local_cluster(3)
    assert len(set(addresses)) == 3
    assert distributed.parse_workers(",".join(addresses)) == addresses


def test_shards_split_each_global_batch_and_one_shard_is_unchanged():
    from lesionlib.training import TrainConfig, class_weights, make_dataset

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    labels = np.arange(10, dtype="int32") % 7
    config = TrainConfig("small_cnn", 4, imagenet=False, batch_size=4, augmentation="none")
    weights = class_weights(labels, 0.5)

    def batches(shard):
        dataset = make_dataset(images, labels, config, [0], weights, shard=shard)
        return [batch[0][:, 0, 0, 0].numpy().astype(int).tolist() for batch in dataset]

    whole = batches((0, 1))
    assert sorted(sum(whole, [])) == list(range(10))  # one epoch, every image once
    first, second = batches((0, 2)), batches((1, 2))
    assert [a + b for a, b in zip(first, second)] == whole  # contiguous halves of each batch


def test_shards_draw_their_own_augmentation():
    import tensorflow as tf

    from lesionlib.training import TrainConfig, class_weights, make_dataset

    images = np.full((8, 8, 8, 3), 128, np.uint8)
    images[:, :4] = 20  # top half dark: flips and rotations show
    labels = np.zeros(8, "int32")
    config = TrainConfig("small_cnn", 8, imagenet=False, batch_size=8, augmentation="strong")
    weights = class_weights(labels, 0.5)
    first = next(iter(make_dataset(images, labels, config, [0], weights, shard=(0, 2))))[0]
    second = next(iter(make_dataset(images, labels, config, [0], weights, shard=(1, 2))))[0]
    assert first.shape == second.shape == (4, 8, 8, 3)
    assert not np.allclose(first.numpy(), second.numpy())  # not the same draws twice
    assert isinstance(first, tf.Tensor)


def test_batches_that_leave_a_worker_empty_are_refused():
    from lesionlib.training import _check_batches

    _check_batches(samples=32, batch_size=16, workers=2)
    _check_batches(samples=33, batch_size=16, workers=1)
    with pytest.raises(ClusterError, match="received batch size 16 over 33 samples"):
        _check_batches(samples=33, batch_size=16, workers=2)
    with pytest.raises(ClusterError, match="at least 4 samples"):
        _check_batches(samples=32, batch_size=2, workers=4)


def test_workers_resuming_from_different_checkpoints_are_refused(tmp_path, monkeypatch):
    from lesionlib import training

    monkeypatch.setattr(training, "gather_from_workers",
                        lambda strategy, values: [values, [0, 0, 0, 0]])
    state = {"head_epochs_done": 2}
    (tmp_path / "last.keras").write_bytes(b"")
    with pytest.raises(ClusterError, match="see different checkpoints"):
        training._check_workers_agree(None, state, tmp_path)
    monkeypatch.setattr(training, "gather_from_workers", lambda strategy, values: [values] * 2)
    training._check_workers_agree(None, state, tmp_path)


def test_one_process_gathers_only_its_own_values():
    import tensorflow as tf

    assert distributed.gather_from_workers(tf.distribute.get_strategy(), [1, 2]) == [[1, 2]]


def _spawn(run_dir: Path, *cluster: str) -> subprocess.Popen:
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment.pop("TF_CONFIG", None)
    environment.pop("LESIONLIB_TEST_EPOCHS", None)
    return subprocess.Popen([sys.executable, str(WORKER), str(run_dir), *cluster],
                            cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_local_workers_end_with_the_weights_of_one_process(tmp_path):
    import keras

    workers = ",".join(distributed.local_cluster(2))
    processes = {"single": _spawn(tmp_path / "single"),
                 "chief": _spawn(tmp_path / "multi", workers, "0"),
                 "worker": _spawn(tmp_path / "multi", workers, "1")}
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name], _ = process.communicate(timeout=900)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name} failed:\n{outputs[name][-3000:]}"
    single = keras.models.load_model(tmp_path / "single" / "last.keras")
    multi = keras.models.load_model(tmp_path / "multi" / "last.keras")
    for expected, received in zip(single.get_weights(), multi.get_weights(), strict=True):
        np.testing.assert_allclose(received, expected, rtol=1e-4, atol=1e-6)
    single_state = json.loads((tmp_path / "single" / "state.json").read_text())
    multi_state = json.loads((tmp_path / "multi" / "state.json").read_text())
    # Training moved the weights (the loss changed), and each worker saw a different half of
    # every batch: agreeing with one process means their gradients were combined.
    assert single_state["history"][0]["loss"] != single_state["history"][1]["loss"]
    assert [entry["workers"] for entry in multi_state["history"]] == [2, 2]
    assert [entry["workers"] for entry in single_state["history"]] == [1, 1]
    assert [entry["loss"] for entry in multi_state["history"]] == pytest.approx(
        [entry["loss"] for entry in single_state["history"]], rel=1e-4)
    assert sorted(path.name for path in (tmp_path / "multi").iterdir()) == [
        "best.keras", "last.keras", "last_scored.keras", "state.json"]  # only the chief wrote it


def test_a_dead_peer_is_described_in_one_line():
    import tensorflow as tf

    error = tf.errors.UnavailableError(None, None, (
        "Graph execution error:\n\nCollective ops is aborted by: Error reported from "
        "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\n [[{{node CollectiveReduceV2}}]]"))
    assert isinstance(error, distributed.peer_failure_types())
    text = distributed.describe_peer_failure(error)
    assert text.startswith("the cluster stopped (UnavailableError: Collective ops is aborted")
    assert "\n" not in text
