#!/bin/bash
# One sitting of PyTorch's CPU beside wgtrain's, model by model, one run after another (README: "The
# CPU backend beside PyTorch"). Usage, from the repository root:
#   PY=/path/to/venv/bin/python benches/torch_sitting.sh WGTRAIN_BINARY...
# Prints PyTorch's images/s with 1 and 2 threads, then each binary's `bench` median, per model.
set -euo pipefail
PY=${PY:-python3}
[ $# -ge 1 ] || { echo "usage: benches/torch_sitting.sh WGTRAIN_BINARY..." >&2; exit 2; }
declare -A STEPS=([fc8-bn]=400 [cnn7-bn]=100 [lenet5]=200 [vgg-small]=30)
for m in fc8-bn cnn7-bn lenet5 vgg-small; do
    for t in 1 2; do
        "$PY" benches/torch_peers.py --model "$m" --device cpu --threads "$t" --steps "${STEPS[$m]}" \
            2>/dev/null | tail -n 1 \
            | "$PY" -c "import json,sys; d=json.load(sys.stdin); print('pytorch', d['model'], d['threads'], 'threads', round(d['images_per_s']))"
    done
    for bin in "$@"; do
        echo "$bin $m $("$bin" bench --models "$m" --batch 110 --matmul none --backend cpu --repeats 5 --json 2>/dev/null \
            | "$PY" -c "import json,sys; print(round(json.loads(sys.stdin.readline())['images_per_s']['median']))")"
    done
done
