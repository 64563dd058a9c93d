#!/usr/bin/env bash
# Run from anywhere: a night's batch killed with SIGKILL mid-way, resumed with --resume, against one run straight.
# Three flights, all named odm_orthophoto.tif (as OpenDroneMap names them), copies of samples/demo_ortho.tif
# (2048 x 2048 px) with the shipped model. Prints the timings and a cmp of every GeoJSON and probability raster.
set -u
cd "$(dirname "$0")/.."
W=runs/kill_resume
rm -rf $W && mkdir -p $W
for f in north south east; do mkdir -p $W/flights/$f/odm_orthophoto && cp samples/demo_ortho.tif $W/flights/$f/odm_orthophoto/odm_orthophoto.tif; done
INPUTS="$W/flights/north/odm_orthophoto/odm_orthophoto.tif $W/flights/south/odm_orthophoto/odm_orthophoto.tif $W/flights/east/odm_orthophoto/odm_orthophoto.tif"
ARGS="--device cpu --quiet --formats geojson,prob,csv"
/usr/bin/time -f "straight: %e s" nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/straight $ARGS
start=$(date +%s.%N)
nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/killed $ARGS &
pid=$!
# wait until the first flight is finished, then let the second run for a few seconds and kill -9 mid-flight
while [ -z "$(ls $W/killed/*.summary.json 2>/dev/null)" ]; do sleep 0.2; done
sleep 5
kill -9 $pid; wait $pid 2>/dev/null
echo "killed after $(echo "$(date +%s.%N) - $start" | bc) s; --out then held:"; ls -A $W/killed
/usr/bin/time -f "resume: %e s" nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/killed $ARGS --resume
echo "--out after resume:"; ls -A $W/killed
for f in $W/straight/*.geojson $W/straight/*.prob.tif $W/straight/*.csv; do
  cmp "$f" "$W/killed/$(basename "$f")" && echo "identical: $(basename "$f")"
done
