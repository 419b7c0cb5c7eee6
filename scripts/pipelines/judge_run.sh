#!/usr/bin/env bash
# Judge a finished training run by issue 18's ship rule without shipping it: its kept model goes
# into a *copy* of weights/ in place of the shipped model ID (scripts/pipelines/try_ensemble_member.sh:
# package, evaluate there, the ensemble's members chosen again on validation), then
#   - check_ship_rule.py: the rule against the shipped version (HEAD's reports/evaluation.json);
#   - compare_paired.py: each figure's difference with a paired bootstrap 95% interval;
#   - ph2_by_diagnosis.py: PH2 melanoma AUC against common and against atypical naevi.
# weights/ and reports/ are untouched. Test figures are read after the choice made on validation.
# Usage: bash scripts/pipelines/judge_run.sh RUN_DIR ID [COPY]   (needs ../shared/data)
#   CANDIDATE_VERSION (environment): the version it is judged as (default: the shipped major + 1).
#   e.g. bash scripts/pipelines/judge_run.sh runs-v3j/efficientnet_lite0 efficientnet_lite0.ham10000
#   COPY: the folder for the copy of weights/ (default: RUN_DIR/../weights-with-member).
# About 5 minutes for Lite0 on 2 AVX2 cores (the tenth attempt, reports/training_v3.md).
# Exit status: 1 when the rule is broken (everything is still printed), 2 on a bad argument.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 2 ] || [ ! -d "weights/$2" ]; then
  echo "usage: bash scripts/pipelines/judge_run.sh RUN_DIR ID [COPY]  (ID: a shipped model;" \
       "received '${2:-}')" >&2
  exit 2
fi
run=$1 id=$2
copy=${3:-$(dirname "$run")/weights-with-member}
shipped=$(python -c "import sys; from lesionlib.registry import read_verified_card; \
from pathlib import Path; print(read_verified_card(Path(sys.argv[1])).version)" "weights/$id")
export CANDIDATE_VERSION=${CANDIDATE_VERSION:-$(( ${shipped%%.*} + 1 )).0.0}
bash scripts/pipelines/try_ensemble_member.sh "$run" "$id" "$copy"
status=0
python scripts/pipelines/check_ship_rule.py --before HEAD --after "$copy/report/evaluation.json" \
  || status=$?
python scripts/pipelines/compare_paired.py "weights/$id" "$copy/$id"
python scripts/benchmarks/ph2_by_diagnosis.py "weights/$id" "$copy/$id"
exit "$status"
