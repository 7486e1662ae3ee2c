#!/usr/bin/env bash
# The GPU part of benchmarks/results/compare-full/: after the CPU grid (`harp compare --config
# compare-full`, out dir OUT_DIR) has finished its 99 % and 99.9 % columns,
#
#   1. HARP with the frontier rate gradient (--prune-rate-frontier 0.1) on the same preset, from the same
#      pre-trained model and split, into OUT_DIR-frontier (6 cells at a time on the GPU);
#   2. AutoAttack (standard, pyautoattack) on the decisive cells with benchmarks/autoattack_cells.py, three
#      processes: HYDRA with LAMP budgets (the strongest baseline), HARP, and HARP-frontier as its cells
#      finish, at 99.9 and 99 %.
#
#   bash benchmarks/compare_full_gpu.sh [OUT_DIR] [SECONDS]
#
# Everything stops after SECONDS (default 300); finished cells and AutoAttack results are cached, so running
# it again continues. Run from the repository root with harp-prune importable; DEVICE=cpu runs it without a
# GPU (slowly).
set -u
out=${1:-runs/compare-full}
seconds=${2:-300}
device=${DEVICE:-cuda}
deadline=$((SECONDS + seconds))
mkdir -p "$out-frontier"
cp -rn "$out/pretrain" "$out/dense.json" "$out-frontier/"

harp compare --config compare-full --device "$device" --no-progress --out-dir "$out-frontier" \
  --compare-methods harp --prune-rate-frontier 0.1 --compare-sparsities 0.999,0.99,0.9 --compare-jobs 6 \
  --data-eval-batch-size 2000 \
  > "$out-frontier.log" 2>&1 &

autoattack() {  # root, methods, sparsities, seeds
  python3 benchmarks/autoattack_cells.py "$1" --methods "$2" --sparsities "$3" --seeds "$4" --device "$device"
}
wait_for() {  # root, cells: until each has its result.json or the deadline passed
  local root=$1 cell
  shift
  for cell in "$@"; do
    until [ -f "$root/cells/$cell/result.json" ] || [ "$SECONDS" -ge "$deadline" ]; do sleep 5; done
  done
}
# three AutoAttack processes, most decisive cells first: the strongest baseline, HARP, HARP-frontier
{ autoattack "$out" hydra-lamp 0.999 0,1; autoattack "$out" hydra-lamp 0.99 0,1; } > "$out-aa-hydra-lamp.log" 2>&1 &
{ autoattack "$out" harp 0.99 0,1; autoattack "$out" hydra-erk 0.99 0,1; } > "$out-aa-harp.log" 2>&1 &
{
  wait_for "$out-frontier" harp/sparsity-0.999/seed-0 harp/sparsity-0.999/seed-1
  autoattack "$out-frontier" harp 0.999 0,1
  wait_for "$out-frontier" harp/sparsity-0.99/seed-0 harp/sparsity-0.99/seed-1
  autoattack "$out-frontier" harp 0.99 0,1
} > "$out-aa-frontier.log" 2>&1 &

while [ "$(jobs -r | wc -l)" -gt 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 10
  echo "[compare_full_gpu] ${SECONDS}s: $(find "$out-frontier" -name result.json | wc -l) frontier cells," \
       "$(find "$out" "$out-frontier" -name autoattack.json | wc -l) AutoAttack results"
done
# past the deadline: stop this script's jobs and everything they started (compare's worker processes)
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill -KILL "$1" 2>/dev/null
}
for job in $(jobs -p); do kill_tree "$job"; done
wait
tail -n 12 "$out"-*.log
