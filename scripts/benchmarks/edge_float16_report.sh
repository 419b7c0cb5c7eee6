#!/usr/bin/env bash
# The float16 TensorFlow Lite export of a shipped model, measured against it without shipping it:
# the export goes to a scratch copy of the parent's folder and only its report lands in reports/.
# Usage: bash scripts/benchmarks/edge_float16_report.sh [model id]    (needs ../shared/data or LESIONLIB_DATA)
set -euo pipefail
model=${1:-efficientnet_lite2.ham10000}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "weights/$model" "$scratch/"
python -m lesionlib export --model "$model" --format tflite --weights "$scratch" \
  --report reports/edge_export_float16.md
