#!/usr/bin/env bash
# After `python -m lesionlib retrain` promotes a model: rebuild everything that hangs off its
# version, so no page shows (or refuses) an artefact of the old weights.
#   - reports/evaluation.md and the README's figures (from the stored predictions);
#   - the edge (TensorFlow Lite) exports whose parent is the model: exported again;
#   - its similar-case index (when it had one) and reports/retrieval.md;
#   - the embedding maps, the quality-gate benchmark, the label audit and the heatmap
#     faithfulness report (each skips, or reuses the cached figures of, unchanged models).
# The promotion itself already re-evaluated and refitted the gate of every ensemble that
# contains the model (lesionlib/retraining.py).
# Usage: bash scripts/refresh_after_retraining.sh MODEL_ID [--had-index]
#   (needs ../shared/data; about an hour on 2 CPU cores for an EfficientNet-Lite2)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bash scripts/refresh_after_retraining.sh MODEL_ID [--had-index]}
had_index=${2:-}
python -m lesionlib evaluate --summary-only
# edge exports of this model (their cards name it as parent)
exports=$(mktemp)
trap 'rm -f "$exports"' EXIT
python - "$model" <<'EOF' > "$exports"
import json, sys
from pathlib import Path
for card in sorted(Path("weights").glob("*/card.json")):
    value = json.loads(card.read_text())
    edge = value.get("edge") or {}
    if value.get("kind") == "edge" and edge.get("parent") == sys.argv[1]:
        print("--int8" if edge.get("quantization") == "int8" else "")
EOF
while read -r flag; do
  # shellcheck disable=SC2086 - an empty flag is no argument
  python -m lesionlib export --model "$model" --format tflite $flag
done < "$exports"
if [ "$had_index" = "--had-index" ]; then
  python -m lesionlib similar --build --model "$model"
  python scripts/retrieval_report.py
fi
bash scripts/build_embedding_maps.sh "$model"
python scripts/benchmark_quality_gate.py
python scripts/label_audit_report.py
nice -n 10 python scripts/heatmap_faithfulness.py
