#!/usr/bin/env bash
# The recipe of the shipped model, end to end (about two hours on 2 CPU cores; resumable: re-run it).
# 1. The lung segmenter, from random initialisation, on ../shared/cxr/lungs (held-out Dice in its sidecar).
# 2. The classifier on lung fields at 128 px, fine-tuned from the previous model (weights/history/v1), on a
#    split that keeps every earlier patient's side and splits only new patients.
# 3. evaluate fits the temperature and the OOD guard on validation data, measures the previous model on the
#    same rows, and writes weights/eval/ and weights/MODEL_CARD.md; facts rewrites the README's block.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/cxr}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-$HOME/covidviz-runs}
export OMP_WAIT_POLICY=PASSIVE
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
$PY -m covidviz train-lungs --data "$DATA" --run "$RUNS/lungs" --epochs 30 --threads 2 --export weights \
    $(resume "$RUNS/lungs")
$PY -m covidviz train --data "$DATA" --run "$RUNS/lungfield" --init weights/history/v1 --lungs weights \
    --previous-split weights/history/v1/split.csv --size 128 --epochs 14 --epoch-images 4000 --lr 5e-4 \
    --patience 6 --threads 2 --export weights $(resume "$RUNS/lungfield")
$PY -m covidviz evaluate --data "$DATA" --previous weights/history/v1
$PY -m covidviz facts
