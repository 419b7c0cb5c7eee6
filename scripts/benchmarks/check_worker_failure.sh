#!/bin/bash
# What happens when a worker dies: two localhost workers train the tiny test model for 6 epochs;
# worker 1 is killed (SIGKILL) once the chief has finished epoch 2; the chief must stop with an
# error; then both are started again and must resume after the chief's last completed epoch.
#   nice -n 10 bash scripts/benchmarks/check_worker_failure.sh [FOLDER]
set -u
cd "$(dirname "$0")/../.."
folder=${1:-$(mktemp -d)}
export LESIONLIB_TEST_EPOCHS=6 TF_CPP_MIN_LOG_LEVEL=2
unset TF_CONFIG
ports() { python -c "from lesionlib.distributed import local_cluster; print(','.join(local_cluster(2)))"; }
workers=$(ports)
python tests/distributed_worker.py "$folder/run" "$workers" 0 >"$folder/chief.log" 2>&1 & chief=$!
python tests/distributed_worker.py "$folder/run" "$workers" 1 >"$folder/worker1.log" 2>&1 & other=$!
until grep -q "epoch 2:" "$folder/chief.log" 2>/dev/null; do
    kill -0 $chief 2>/dev/null || { echo "FAIL: chief ended before epoch 2"; exit 1; }
    sleep 1
done
kill -9 $other; killed=$(date +%s)
wait $chief; status=$?
echo "worker 1 killed after epoch 2; chief exit status $status after $(( $(date +%s) - killed )) s:"
grep -m1 -o "The following tasks are unhealthy[^:]*" "$folder/chief.log" || echo "(no heartbeat message)"
done_epochs=$(python -c "import json; print(json.load(open('$folder/run/state.json'))['scratch_epochs_done'])")
echo "chief's state.json: $done_epochs epochs done"
workers=$(ports)
python tests/distributed_worker.py "$folder/run" "$workers" 0 >"$folder/chief2.log" 2>&1 & chief=$!
python tests/distributed_worker.py "$folder/run" "$workers" 1 >"$folder/worker1b.log" 2>&1 & other=$!
wait $chief; first=$?; wait $other; second=$?
grep -h "Resuming\|^\[scratch\]" "$folder/chief2.log" | cut -c1-120
if [ "$status" -ne 0 ] && [ $first -eq 0 ] && [ $second -eq 0 ] \
        && grep -q "Resuming" "$folder/chief2.log" && grep -q "epoch 6:" "$folder/chief2.log"; then
    echo "PASS: the cluster stopped when a worker died and resumed from epoch $done_epochs"
else
    echo "FAIL: see $folder"; exit 1
fi
