#!/usr/bin/env bash
# Compute and seal the embedding map (weights/<id>/embedding_map.npz) of each shipped
# EfficientNet model: its features of the 1,509 HAM10000 test images laid out by t-SNE.
# Rerun after repackaging a model: a map of other weights is refused by the dashboard.
# Usage: bash scripts/pipelines/build_embedding_maps.sh [MODEL_ID ...]   (needs ../shared/data/ham10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=(efficientnet_lite0.ham10000 efficientnet_lite2.ham10000)
fi
for model in "${models[@]}"; do
  nice -n 10 python -m lesionlib embedding-map --model "$model"
done
