#!/usr/bin/env bash
# Ship a model waiting in candidates/ (packaged and sealed there, with its run's state.json in
# candidates/<id>.run/) as a new model of weights/, without training it again: package it from
# the training run it came from (below), evaluate it on every set (temperature, threshold and
# predictions computed afresh), fit its quality gate, build everything derived from it (similar-case
# index, embedding map, quality-gate benchmark, label audit, faithfulness report) and measure it
# under the stress test (reports/robustness.md). The ensemble is left as it is: whether a new
# model joins it is scripts/pipelines/choose_ensemble.py's question, answered on validation.
# Usage: bash scripts/pipelines/ship_candidate.sh ID VERSION NAME DESCRIPTION CHANGES
#   (needs ../shared/data or LESIONLIB_DATA; 28 minutes for Lite1 on a 2-core AVX-512 machine)
# EfficientNet-Lite1 version 1.0.0 shipped with:
#   bash scripts/pipelines/ship_candidate.sh efficientnet_lite1.ham10000 1.0.0 \
#     "EfficientNet-Lite1 (mid-size)" \
#     "Mid-size EfficientNet-Lite (4.2M parameters, 224 px): the most accurate model here on the \
# second clinic's validation images (BCN20000); not an ensemble member." \
#     "new model (no earlier version): EfficientNet-Lite1 from ImageNet with the version 3 levers \
# (scripts/pipelines/train_v3h_models.sh: HAM10000 + ISIC 2017 + BCN20000 train, 1 head + 5 \
# fine-tune epochs, fine-tune epoch 4 kept on validation)"
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ne 5 ]; then
  echo "usage: bash scripts/pipelines/ship_candidate.sh ID VERSION NAME DESCRIPTION CHANGES" >&2
  exit 2
fi
id=$1 version=$2 name=$3 description=$4 changes=$5
sealed="candidates/$id"
if [ ! -f "$sealed/model.keras" ] || [ ! -f "$sealed.run/state.json" ]; then
  echo "ship_candidate.sh: expected $sealed/model.keras and $sealed.run/state.json" >&2
  exit 2
fi
if [ -e "weights/$id" ]; then
  echo "ship_candidate.sh: weights/$id exists already; a shipped model is replaced by" \
       "retraining and promotion, not by this script" >&2
  exit 2
fi
# Package from the training run the candidate came from (its card names the folder and the
# digest of its checkpoint), so the shipped card's commands name that run; when the folder is
# gone, it is made again from the sealed model and the run's state.json. The card is read through
# its seal, so a candidate whose files changed after sealing is refused here.
run_info=$(python - "$sealed" <<'EOF'
import sys
from pathlib import Path
from lesionlib.cards import CardError
from lesionlib.registry import read_verified_card
try:
    run = read_verified_card(Path(sys.argv[1])).training["run"]
except (CardError, KeyError) as error:
    sys.exit(f"ship_candidate.sh: {sys.argv[1]} is not a sealed candidate with its run "
             f"recorded ({error})")
print(run["folder"], run["checkpoint_sha256"])
EOF
)  # a refused candidate stops the script here (set -e)
read -r run_dir checkpoint <<< "$run_info"
if [ -f "$run_dir/best.keras" ] && [ "$(sha256sum < "$run_dir/best.keras" | cut -d' ' -f1)" = "$checkpoint" ]; then
  echo "ship_candidate.sh: packaging from $run_dir (its checkpoint is the candidate's)"
else
  if [ -e "$run_dir/best.keras" ]; then
    echo "ship_candidate.sh: $run_dir/best.keras is another checkpoint than the candidate's;" \
         "move it away first" >&2
    exit 2
  fi
  mkdir -p "$run_dir"
  cp "$sealed/model.keras" "$run_dir/best.keras"
  cp "$sealed.run/state.json" "$run_dir/state.json"
  echo "ship_candidate.sh: $run_dir made again from $sealed"
fi
python -m lesionlib package --run-dir "$run_dir" --id "$id" --name "$name" --version "$version" \
  --changes "$changes" --description "$description"
python -m lesionlib evaluate --model "$id"
python -m lesionlib evaluate --summary-only  # the reports again, under the command of all models
python -m lesionlib fit-gate --model "$id"
bash scripts/pipelines/rebuild_derived.sh --had-index "$id"
python -m lesionlib stress-test --model "$id"
echo "ship_candidate.sh: $id $version shipped; remove $sealed and $sealed.run from candidates/"
