#!/usr/bin/env bash
# Fine-tune the shipped model on 8 capsule-stage scenes, with and without hard-negative mining (same seed and
# budget), validated on the 6 held-out capsule scenes; compare the sweep rows of runs/ft2_{plain,hn}/best_table.txt
# at equal thresholds. Needs runs/ft_capsule_train and runs/heldout/capsule (see bench/finetune_demo.sh).
set -u
cd "$(dirname "$0")/.."
for arm in plain hn; do
  rm -rf runs/ft2_$arm
  extra=()
  [ $arm = hn ] && extra=(--hard-negatives 0.3 --mine-every 1)
  s=$(date +%s)
  .venv/bin/python train.py --data runs/ft_capsule_train --val-data runs/heldout/capsule --out runs/ft2_$arm --init default --epochs 3 --chips-per-epoch 240 --batch-size 8 --lr 3e-4 --positive-fraction 0.35 --val-every 3 --seed 5 --workers 0 --quiet "${extra[@]}"
  echo "$arm $(( $(date +%s) - s )) s"
  head -3 runs/ft2_$arm/best_table.txt
done
