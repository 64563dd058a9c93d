#!/usr/bin/env bash
# Stand-in for pretraining on a public aerial data set (issue 6): pretrain fastunet on the land cover of
# poppy-free generated scenes (the role Agriculture-Vision or LoveDA would play), then fine-tune the poppy model
# from K labelled scenes, and train the same network from scratch on the same K scenes with the same budget.
# Every model is scored on the same held-out scenes at the threshold its validation chose.
#
#   bash bench/pretrain_stand_in.sh            # all steps; skips a step whose output exists
#   KS="2 4 8 16" bash bench/pretrain_stand_in.sh
#
# Data (all generated, seeds disjoint from every other set):
#   runs/exp6/landcover   48 poppy-free 1024 px scenes with land-cover rasters (seed 6000)
#   runs/exp6/pool        16 labelled 1536 px scenes, all stages, poppy in each (seed 6100); K = the first K
#   validation            runs/default/synthetic/val-n10-seed1002029-px1536 (the default model's validation)
#   test                  runs/exp6/test -> runs/heldout/{flowering,vegetative,capsule,none} (22 scenes)
set -eu
cd "$(dirname "$0")/.."
PY=".venv/bin/python"
E=runs/exp6
KS=${KS:-"2 4 8 16"}
VAL=runs/default/synthetic/val-n10-seed1002029-px1536
# One budget for both arms: 5 epochs x 240 chips of 256 px (1,200 chips), peak lr 2e-3, validation at the end.
BUDGET=(--epochs 5 --chips-per-epoch 240 --batch-size 8 --lr 2e-3 --val-every 5 --workers 0 --quiet)
mkdir -p "$E"

[ -d "$E/landcover" ] || $PY -m datasets.synthetic --out "$E/landcover" --count 48 --seed 6000 --size 1024 \
    --landcover --no-poppy --prefix lc
[ -d "$E/pool" ] || $PY -m datasets.synthetic --out "$E/pool" --count 16 --seed 6100 --size 1536 \
    --poppy-prob 1.0 --prefix pool
if [ ! -d "$E/test" ]; then
    mkdir -p "$E/test"
    for f in runs/heldout/{flowering,vegetative,capsule,none}/*; do ln -s "$(realpath "$f")" "$E/test/"; done
fi

if [ ! -f "$E/pre/best.pt" ]; then
    rm -rf "$E/pre"
    /usr/bin/time -v $PY train.py --pretrain "synthetic-landcover:$E/landcover" --out "$E/pre" --epochs 8 \
        --chips-per-epoch 500 --batch-size 8 --lr 2e-3 --val-every 2 --val-chips 200 --seed 61 --workers 0 \
        --quiet 2> "$E/pre.time"
    cat "$E/pre/best_table.txt"
fi

for k in $KS; do
    d="$E/k$k"
    if [ ! -d "$d" ]; then
        mkdir -p "$d"
        for f in $(ls "$E"/pool/pool_*.tif | head -n "$k"); do
            stem="${f%.tif}"
            for x in "$stem".*; do ln -s "$(realpath "$x")" "$d/"; done
        done
    fi
    for arm in pre scratch; do
        run="$E/run_${arm}_k$k"
        [ -f "$run/best.pt" ] && continue
        rm -rf "$run"
        init=()
        [ "$arm" = pre ] && init=(--init "$E/pre/best.pt")
        start=$(date +%s)
        $PY train.py --data "$d" --val-data "$VAL" --out "$run" "${init[@]}" "${BUDGET[@]}" --seed 62
        echo "$(( $(date +%s) - start ))" > "$run/seconds.txt"
    done
done

for k in $KS; do
    for arm in pre scratch; do
        run="$E/run_${arm}_k$k"
        [ -f "$run/test.json" ] && continue
        $PY bench/evaluate_model.py --weights "$run/best.pt" --data "$E/test" --json "$run/test.json" > "$run/test.txt"
    done
done
$PY bench/pretrain_stand_in_table.py "$E" $KS
