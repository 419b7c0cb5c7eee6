#!/usr/bin/env bash
# Package the trained runs into weights/, define the ensemble, evaluate everything, fit the
# quality gate and measure it. Reproduces every figure in README.md, the model cards and reports/.
# Usage: bash scripts/ship_models.sh [runs-folder]    (needs ../shared/data or LESIONLIB_DATA)
set -euo pipefail
runs=${1:-runs}
python -m lesionlib package --run-dir "$runs/efficientnet_lite0" --id efficientnet_lite0.ham10000 \
  --name "EfficientNet-Lite0 (fast, mobile)" \
  --description "Small and fast (3.4M parameters, 192 px): fit for phones and edge devices."
python -m lesionlib package --run-dir "$runs/efficientnet_lite2" --id efficientnet_lite2.ham10000 \
  --name "EfficientNet-Lite2 (accurate)" \
  --description "Larger EfficientNet-Lite (4.9M parameters, 224 px): the more accurate single model."
python -m lesionlib package --run-dir "$runs/small_cnn" --id small_cnn.ham10000 \
  --name "Small CNN (from-scratch baseline)" \
  --description "A 4-block CNN (1.2M parameters) trained from random initialisation at 96 px: the baseline that transfer learning is measured against."
python -m lesionlib evaluate --model efficientnet_lite0.ham10000 --model efficientnet_lite2.ham10000 \
  --model small_cnn.ham10000
# Members chosen on the validation split only: scripts/choose_ensemble.py prints every combination's
# validation balanced accuracy (all three: 0.723; Lite0+Lite2: 0.717).
python scripts/choose_ensemble.py
python -m lesionlib ensemble --id ensemble.ham10000 --name "Ensemble (Lite0 + Lite2 + small CNN)" \
  --members efficientnet_lite0.ham10000 efficientnet_lite2.ham10000 small_cnn.ham10000 \
  --description "Mean of the calibrated probabilities of the three models, recalibrated."
python -m lesionlib evaluate --model ensemble.ham10000
python -m lesionlib evaluate --summary-only
# Every model's own quality gate and "review carefully" thresholds (on its stored validation
# predictions); the ensemble's gate combines its members' gates, so it comes last.
for model in efficientnet_lite0.ham10000 efficientnet_lite2.ham10000 small_cnn.ham10000 \
    ensemble.ham10000; do
  python -m lesionlib fit-gate --model "$model"
done
python scripts/benchmark_quality_gate.py   # every model -> reports/quality_gate.{md,json}
# The edge model: int8 TensorFlow Lite export of the best single model, evaluated against it;
# writes weights/efficientnet_lite2.ham10000.int8/ and reports/edge_export.md.
python -m lesionlib export --model efficientnet_lite2.ham10000 --format tflite --int8
# Similar-case indices (one command per model; rebuild after retraining, a stale one is refused)
python -m lesionlib similar --build --model efficientnet_lite0.ham10000
python -m lesionlib similar --build --model efficientnet_lite2.ham10000
python scripts/retrieval_report.py
