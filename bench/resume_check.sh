#!/usr/bin/env bash
# Run from anywhere: an interrupted-and-resumed training run against an uninterrupted one (same seed).
# Needs runs/resume_val (two generated flowering scenes: python -m datasets.synthetic --out runs/resume_val
# --count 2 --seed 4242 --size 768 --stage flowering --poppy-prob 1.0 --gsd 0.03 --prefix rv).
set -u
cd "$(dirname "$0")/.."
rm -rf runs/resume_straight runs/resume_killed
ARGS="--synthetic 4 --val-data runs/resume_val --synthetic-size 512 --epochs 3 --chips-per-epoch 64 --batch-size 8 --seed 11 --workers 0 --quiet --arch-args {\"base_channels\":8,\"depth\":3}"
time nice -n 5 .venv/bin/python train.py --out runs/resume_straight $ARGS
nice -n 5 .venv/bin/python train.py --out runs/resume_killed $ARGS &
pid=$!
# wait until epoch 1 is logged, then let epoch 2 run a few seconds and kill -9 mid-epoch
while [ ! -f runs/resume_killed/log.csv ] || [ "$(wc -l < runs/resume_killed/log.csv)" -lt 2 ]; do sleep 1; done
sleep 6
kill -9 $pid; wait $pid 2>/dev/null
echo "killed; log rows:"; cat runs/resume_killed/log.csv
time nice -n 5 .venv/bin/python train.py --out runs/resume_killed --resume --quiet
echo "straight:"; cat runs/resume_straight/log.csv
echo "resumed:"; cat runs/resume_killed/log.csv
.venv/bin/python - <<'PY'
import json, torch
a = torch.load("runs/resume_straight/last.pt", weights_only=True)["state_dict"]
b = torch.load("runs/resume_killed/last.pt", weights_only=True)["state_dict"]
diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
print("max |weight difference| straight vs resumed:", diff)
ma = json.load(open("runs/resume_straight/metrics.json")); mb = json.load(open("runs/resume_killed/metrics.json"))
print("best chosen equal:", ma["best"]["chosen"] == mb["best"]["chosen"], "last chosen equal:", ma["last"]["chosen"] == mb["last"]["chosen"])
print("straight last:", {k: ma["last"]["chosen"][k] for k in ("plot_precision","plot_recall","pixel_iou")})
print("resumed  last:", {k: mb["last"]["chosen"][k] for k in ("plot_precision","plot_recall","pixel_iou")})
PY
