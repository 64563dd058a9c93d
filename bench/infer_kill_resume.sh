#!/usr/bin/env bash
# Run from anywhere: a night's batch killed with SIGKILL in the middle of an input's model stage, then the same
# command again (with --resume, to skip the finished input), against one run straight through.
# Three flights, all named odm_orthophoto.tif (as OpenDroneMap names them), copies of samples/demo_ortho.tif
# (2048 x 2048 px) with the shipped model. Prints the timings, the resume record the kill left, the tiles each
# input ran, and a cmp of every GeoJSON, CSV and probability raster.
# KILL_AFTER_ROWS (default 2): rows of tiles of the second flight to let finish before the kill.
set -u
cd "$(dirname "$0")/.."
W=runs/kill_resume
KILL_AFTER_ROWS=${KILL_AFTER_ROWS:-2}
rm -rf $W && mkdir -p $W
for f in north south east; do mkdir -p $W/flights/$f/odm_orthophoto && cp samples/demo_ortho.tif $W/flights/$f/odm_orthophoto/odm_orthophoto.tif; done
INPUTS="$W/flights/north/odm_orthophoto/odm_orthophoto.tif $W/flights/south/odm_orthophoto/odm_orthophoto.tif $W/flights/east/odm_orthophoto/odm_orthophoto.tif"
ARGS="--device cpu --quiet --formats geojson,prob,csv"
SOUTH=south_odm_orthophoto_odm_orthophoto
/usr/bin/time -f "straight: %e s" nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/straight $ARGS
start=$(date +%s.%N)
nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/killed $ARGS &
pid=$!
# Wait until the second flight has recorded KILL_AFTER_ROWS rows of tiles, then kill -9 at once: mid-model.
REC=$W/killed/.$SOUTH.partial/$SOUTH.prob.progress.json
rows_seen() { .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['tiles_done'])" "$REC" 2>/dev/null || echo -1; }
n=0; last=""
while kill -0 $pid 2>/dev/null; do
  if [ -f "$REC" ]; then
    cur=$(rows_seen)
    if [ "$cur" != "$last" ]; then n=$((n + 1)); last=$cur; fi
    [ $n -ge "$KILL_AFTER_ROWS" ] && break
  fi
  sleep 0.05
done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed after $(echo "$(date +%s.%N) - $start" | bc) s; --out then held:"; ls -A $W/killed
echo "resume record left by the kill:"; .venv/bin/python -c "import json,sys; r=json.load(open(sys.argv[1])); print('  rows_done', r['rows_done'], 'tiles_done', r['tiles_done'])" "$REC"
/usr/bin/time -f "resume: %e s" nice -n 5 .venv/bin/python infer.py $INPUTS --out $W/killed $ARGS --resume
echo "--out after resume:"; ls -A $W/killed
for d in straight killed; do
  for s in $W/$d/*.summary.json; do
    .venv/bin/python -c "import json,sys; r=json.load(open(sys.argv[1])); t=r['tiles']; print(f\"  $d {sys.argv[1].split('/')[-1]}: tiles run {t['run']}, taken from earlier run {t.get('taken_from_earlier_run', 0)}, resumed from row {t.get('resumed_from_row', 0)}, predict {r['timings_s']['predict']} s\")" "$s"
  done
done
for f in $W/straight/*.geojson $W/straight/*.prob.tif $W/straight/*.csv; do
  cmp "$f" "$W/killed/$(basename "$f")" && echo "identical: $(basename "$f")"
done
