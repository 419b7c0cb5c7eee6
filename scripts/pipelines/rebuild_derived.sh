#!/usr/bin/env bash
# Rebuild everything derived from the weights of the named models, after they changed
# (scripts/pipelines/ship_models.sh after packaging, scripts/pipelines/refresh_after_retraining.sh after a
# promotion), so no page shows (or refuses) an artefact of the old weights:
#   - the edge (TensorFlow Lite) exports whose card names a model as parent: exported again
#     (then reports/evaluation.md is written again with their figures);
#   - with --had-index, their similar-case indices, then reports/retrieval.md;
#   - the teaching quiz's stored reveals of every ensemble that contains one of them and of
#     every one of them that had such a store (after the similar-case index they point into);
#   - their embedding maps;
#   - the quality-gate benchmark of the models, their edge exports and every ensemble that
#     contains one of them (the rows of the other models are kept);
#   - the label audit and the heatmap faithfulness report (each reuses the cached figures of
#     unchanged models).
# An ensemble named itself (redefined, perhaps with other members than the models named beside
# it) gets its stored reveals and its quality-gate benchmark row; it has no index or map.
# The models' own evaluation and quality gates come first (evaluate, fit-gate): both callers
# do that before calling this.
# Usage: bash scripts/pipelines/rebuild_derived.sh [--had-index] MODEL_ID [MODEL_ID ...]
#   DRY_RUN=1 prints the commands instead of running them.
#   (needs ../shared/data; about an hour on 2 CPU cores when an EfficientNet-Lite2 changed)
set -euo pipefail
cd "$(dirname "$0")/../.."
had_index=""
if [ "${1:-}" = "--had-index" ]; then had_index=1; shift; fi
if [ $# -eq 0 ]; then
  echo "usage: bash scripts/pipelines/rebuild_derived.sh [--had-index] MODEL_ID [MODEL_ID ...]" >&2
  exit 2
fi
models=("$@")
run() { if [ -n "${DRY_RUN:-}" ]; then echo "+ $*"; else "$@"; fi; }
# Each line: KIND ID [FLAG]: "edge <parent> [--int8]" for an export of a named model,
# "ensemble <id>" for an ensemble with a named member; read from the installed cards.
dependants=$(python - "${models[@]}" <<'EOF'
import json, sys
from pathlib import Path
changed = set(sys.argv[1:])
for path in sorted(Path("weights").glob("*/card.json")):
    card = json.loads(path.read_text())
    edge = card.get("edge") or {}
    if card.get("kind") == "ensemble" and card["id"] in changed:
        print("named-ensemble", card["id"])
    elif card.get("kind") == "edge" and edge.get("parent") in changed:
        print("edge", card["id"], edge["parent"], "--int8" if edge.get("quantization") == "int8"
              else "")
    elif card.get("kind") == "ensemble" and changed & set(card.get("members") or ()):
        print("ensemble", card["id"])
EOF
)
named_ensembles=$(awk '$1 == "named-ensemble" {print $2}' <<< "$dependants")
singles=()
for model in "${models[@]}"; do
  if ! grep -qxF "$model" <<< "$named_ensembles"; then singles+=("$model"); fi
done
measured=("${models[@]}")
reveals=()
for model in "${singles[@]}"; do
  if [ -f "weights/$model/quiz_reveals.npz" ]; then reveals+=("$model"); fi
done
while read -r kind id parent flag; do
  case "$kind" in
    named-ensemble) reveals+=("$id") ;;
    # shellcheck disable=SC2086 - an empty flag is no argument
    edge) run python -m lesionlib export --model "$parent" --format tflite $flag
          measured+=("$id") ;;
    ensemble) measured+=("$id")
              reveals+=("$id") ;;
  esac
done <<< "$dependants"
# the exports' new figures in reports/evaluation.md (ship_models.sh wrote it before them)
if grep -q "^edge" <<< "$dependants"; then
  run python -m lesionlib evaluate --summary-only
fi
if [ -n "$had_index" ]; then
  for model in "${singles[@]}"; do
    run python -m lesionlib similar --build --model "$model"
  done
  run python scripts/benchmarks/retrieval_report.py
fi
for model in "${reveals[@]}"; do
  run python -m lesionlib quiz-reveals --model "$model"
done
if [ ${#singles[@]} -gt 0 ]; then
  run bash scripts/pipelines/build_embedding_maps.sh "${singles[@]}"
fi
run python scripts/benchmarks/benchmark_quality_gate.py $(printf -- '--model %s ' "${measured[@]}")
run python scripts/benchmarks/label_audit_report.py
run nice -n 10 python scripts/benchmarks/heatmap_faithfulness.py
