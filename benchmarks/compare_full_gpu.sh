#!/usr/bin/env bash
# The full-preset comparison (configs/compare-full.yaml) on one GPU, evaluated with AutoAttack and PGD-20,
# as committed in benchmarks/results/compare-full/. Run from the repository root with harp-prune importable
# and the full Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist:
#
#   bash benchmarks/compare_full_gpu.sh [OUT_DIR] [SECONDS]
#
# Two `harp compare` processes share the GPU, 15 cells at a time in all (a small CNN leaves an H200 mostly
# idle, so cells run side by side):
#   OUT_DIR           the preset's methods, HYDRA with LAMP/ERK budgets, HARP started from LAMP, and the
#                     γ0 sweep, at 99 %, 99.9 % and 90 % sparsity (in that order), seeds 0 and 1;
#   OUT_DIR-bounded   HARP with every layer's keep-ratio capped at 20 % (prune.max_layer_density) at 99 and
#                     99.9 %, from the same pre-trained model (copied).
# Both stop after SECONDS (default 470), worker processes included; finished cells are cached, so running it
# again continues. DEVICE=cpu runs it without a GPU (slowly).
set -u
out=${1:-runs/compare-full}
seconds=${2:-470}
common=(--config configs/compare-full.yaml --device "${DEVICE:-cuda}" --evaluate-attacks autoattack,pgd20 --no-progress
        --compare-sparsities 0.99,0.999,0.9 --compare-seeds 0,1)

harp compare "${common[@]}" --out-dir "$out" --compare-jobs 13 \
  --compare-methods harp,harp:lamp,hydra,hydra:lamp,hydra:erk,lwm,global-magnitude,lamp,erk,random \
  --compare-gamma0-sweep 0.01,1 > "$out.log" 2>&1 &
main=$!
# the bounded run waits for the main one's pre-trained model (trained there if not cached)
until [ -f "$out/pretrain/final.pt" ] || ! kill -0 "$main" 2>/dev/null; do sleep 5; done
mkdir -p "$out-bounded" && cp -rn "$out/pretrain" "$out-bounded/"
harp compare "${common[@]}" --out-dir "$out-bounded" --compare-jobs 2 --compare-sparsities 0.99,0.999 \
  --compare-methods harp --prune-max-layer-density 0.2 > "$out-bounded.log" 2>&1 &
bounded=$!

deadline=$((SECONDS + seconds))
while { kill -0 "$main" || kill -0 "$bounded"; } 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 10
  finished=$(find "$out" "$out-bounded" -name result.json | wc -l)
  echo "[compare_full_gpu] ${SECONDS}s: $finished cells finished"
done
# past the deadline: stop everything, workers included (a cell that did not finish is simply not cached)
pkill -KILL -f spawn_main 2>/dev/null
kill -KILL "$main" "$bounded" 2>/dev/null
wait
tail -n 40 "$out.log" "$out-bounded.log"
