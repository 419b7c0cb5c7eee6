#!/usr/bin/env bash
# After `python -m lesionlib retrain` promotes a model: rebuild everything that hangs off its
# version, so no page shows (or refuses) an artefact of the old weights:
# reports/evaluation.md and the README's figures (from the stored predictions), then
# scripts/pipelines/rebuild_derived.sh (edge exports, similar-case index when it had one, embedding map,
# quality-gate benchmark of the model and the ensembles that contain it, label audit,
# faithfulness report).
# The promotion itself already re-evaluated and refitted the gate of every ensemble that
# contains the model (lesionlib/retraining.py).
# Usage: bash scripts/pipelines/refresh_after_retraining.sh MODEL_ID [--had-index]
#   (needs ../shared/data; about an hour on 2 CPU cores for an EfficientNet-Lite2)
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?usage: bash scripts/pipelines/refresh_after_retraining.sh MODEL_ID [--had-index]}
had_index=${2:-}
case "$had_index" in
  ""|--had-index) ;;
  *) echo "refresh_after_retraining.sh: unknown option $had_index (expected --had-index)" >&2
     exit 2 ;;
esac
python -m lesionlib evaluate --summary-only
bash scripts/pipelines/rebuild_derived.sh ${had_index:+"$had_index"} "$model"
