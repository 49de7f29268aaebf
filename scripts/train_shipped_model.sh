#!/usr/bin/env bash
# The recipe of the shipped model (v4), end to end from the committed v2 (weights/history/v2); resumable: re-run
# it after an interruption, and each finished step is skipped. About 1.5 hours on 2 CPU cores.
# 1. The lung segmenter, from random initialisation, on ../shared/cxr/lungs (held-out Dice in its sidecar).
# 2. v3: DenseNet-121 at output stride 8 on the 128 px lung field, fine-tuned from v2 on v2's split, with
#    acquisition transforms on half the films and the outside-the-lungs penalty (5 epochs of 3,000 films).
# 3. v4: v3's linear head refitted on the frozen pooled features of its training films, each read clean and
#    through one random acquisition transform (scripts/refit_head.py; C by 5-fold cross-validation over training
#    patients), exported as it stands (train --export-only).
# 4. The lung check's floor and flat limit, evaluate (temperature and OOD guard on validation, v3 on the same
#    rows), the decision rule on validation, and facts. scripts/ship_model.sh measures every other artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/cxr}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-$HOME/covidviz-runs}
export OMP_WAIT_POLICY=PASSIVE
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
V3=(--lungs weights --previous-split weights/history/v2/split.csv --arch densenet121_os8 --size 128 --epochs 5
    --epoch-images 3000 --lr 2e-4 --acquisition 0.5 --outside-lungs 0.3 --precision bf16)
$PY -m covidviz train-lungs --data "$DATA" --run "$RUNS/lungs" --epochs 30 --threads 2 --export weights \
  $(resume "$RUNS/lungs")
[ -f "$RUNS/v3-weights/model.json" ] ||
  $PY -m covidviz train --data "$DATA" --run "$RUNS/v3" --init weights/history/v2 "${V3[@]}" \
    --export "$RUNS/v3-weights" $(resume "$RUNS/v3")
[ -f "$RUNS/v3-head-acq/best.pt" ] ||
  $PY scripts/refit_head.py --data "$DATA" --weights "$RUNS/v3-weights" --acquisition-views 1 --c 0.003 0.01 0.03 \
    --out "$RUNS/v3-head-acq/best.pt"
$PY -m covidviz train --data "$DATA" --run "$RUNS/v3-head-acq" "${V3[@]}" --export weights --export-only
$PY -m covidviz fit-lung-floor --data "$DATA"
$PY -m covidviz evaluate --data "$DATA" --previous weights/history/v3
$PY -m covidviz fit-decision --data "$DATA"
$PY -m covidviz facts
