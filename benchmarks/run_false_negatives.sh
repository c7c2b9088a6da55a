#!/usr/bin/env bash
# The false-negative grid as launched: two 1-thread processes (a, b). Phases, each skipping
# finished runs: rate 0.25 for all seeds first (the target's rate), then the control rate 0,
# then gist-qc at 0.25 (b), then the rest. At rate 0 no copy shares a batch, so the oracle
# cancels nothing (it is InfoNCE) and MNRL (InfoNCE through sentence-transformers) is not rerun.
# Usage: nohup bash benchmarks/run_false_negatives.sh a > benchmarks/results/false_negatives_a.log 2>&1 &
#        nohup bash benchmarks/run_false_negatives.sh b > benchmarks/results/false_negatives_b.log 2>&1 &
# Then:  python benchmarks/false_negatives.py --merge benchmarks/results/false_negatives_b.json
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PYTHON:-/work/main/.venv/bin/python}
COMMON=(--pairs 64 --copies 5 --batch-size 16 --epochs 2 --seeds 0,1,2 --threads 1)
run() { nice -n 5 "$PY" benchmarks/false_negatives.py "${COMMON[@]}" --rates "$1" --losses "$2" --output "$OUT"; }
case "$1" in
  a) OUT=benchmarks/results/false_negatives.json
     run 0.25 infonce,oracle,soft:bm25,soft:pa-bm25
     run 0 infonce,soft:bm25
     run 0 soft:pa-bm25
     run 0.1 infonce,oracle,soft:bm25,soft:pa-bm25 ;;
  b) OUT=benchmarks/results/false_negatives_b.json
     run 0.25 gist,soft:simcse,mnrl
     run 0 gist,soft:simcse
     run 0.25 gist-qc
     run 0.1 gist,gist-qc,soft:simcse ;;
  c) OUT=benchmarks/results/false_negatives_c.json  # added later: GIST's guide as weights
     run 0.25 zero-shot,soft:pa-guide
     run 0 soft:pa-guide
     run 0.1 soft:pa-guide ;;
  *) echo "usage: $0 a|b|c" >&2; exit 2 ;;
esac
