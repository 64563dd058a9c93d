#!/usr/bin/env bash
# Fine-tune demonstration: the shipped model before and after a short --init default run on capsule-stage scenes.
# Needs runs/ft_capsule_train (--count 8 --seed 5500 --size 1024 --stage capsule --poppy-prob 1.0) and
# runs/heldout/capsule (--count 6 --seed 9100 --size 1536 --stage capsule --poppy-prob 1.0), made with
# python -m datasets.synthetic.
set -u
cd "$(dirname "$0")/.."
echo "== before: shipped default on held-out capsule scenes"
time nice -n 10 .venv/bin/python bench/evaluate_model.py --weights default --data runs/heldout/capsule --sweep --json runs/ft_before.json
echo "== fine-tune: --init default on 8 capsule scenes, 3 epochs x 240 chips"
rm -rf runs/ft_capsule
time nice -n 10 .venv/bin/python train.py --data runs/ft_capsule_train --val-data runs/heldout/capsule --out runs/ft_capsule --init default --epochs 3 --chips-per-epoch 240 --batch-size 8 --lr 3e-4 --val-every 3 --seed 5 --workers 0 --quiet
cat runs/ft_capsule/log.csv
cat runs/ft_capsule/best_table.txt | head -12
