#!/usr/bin/env bash
# The README's CLI walk-through: tiny model -> synthetic data -> Video-STaR cycles, step by step.
# Usage: scripts/walkthrough.sh [WORKDIR] [CYCLES]   (uses .venv/bin/videostar when present)
set -euo pipefail
W=${1:-work}
CYCLES=${2:-2}
VS=${VIDEOSTAR:-$( [ -x .venv/bin/videostar ] && echo .venv/bin/videostar || echo videostar )}
CONFIG=${CONFIG:-configs/tiny.yaml}

$VS model tiny --out "$W/base"
$VS data synthetic --count 48 --seed 0 --out "$W/data"
# reported held-out clips, and validation clips that choose the cycle handed on (decide.select)
$VS data synthetic --kinetics --count 24 --seed 1 --out "$W/heldout"
$VS data synthetic --kinetics --count 48 --seed 1000 --out "$W/validation"
RUN="$W/run.yaml"   # the config with the suites' data in $W
sed -e "s#demo/heldout/#$W/heldout/#g" -e "s#demo/validation/#$W/validation/#g" "$CONFIG" > "$RUN"

model="$W/base"
history=()
for ((k = 0; k < CYCLES; k++)); do
  c="$W/cycle-$k"
  $VS --config "$RUN" generate --model "$model" --data "$W/data/records.jsonl" --out "$c/generate"
  $VS --config "$RUN" verify --answers "$c/generate/answers.jsonl" --out "$c/verify"
  $VS --config "$RUN" rationalize --model "$model" --rejected "$c/verify/rejected.jsonl" --out "$c/rationalize"
  $VS --config "$RUN" sft --base-model "$W/base" --data "$c/verify/verified.jsonl" "$c/rationalize/verified.jsonl" --out "$c/sft"
  $VS --config "$RUN" evaluate --model "$c/sft/model" --adapter-base "$W/base" --cycle "$k" --out "$c/evaluate"
  $VS summarize --cycle "$k" --verify "$c/verify/metrics.json" --rationalize "$c/rationalize/metrics.json" \
    --scores "$c/evaluate/scores.json" --out "$c/summary.json"
  history+=("$c/summary.json")
  $VS --config "$RUN" decide --history "${history[@]}" --out "$c/decision.json"
  grep -q '"continue": true' "$c/decision.json" || break
  # the next cycle generates with the chosen cycle's model (the best on validation); SFT restarts from base
  model="$W/cycle-$(sed -n 's/.*"chosen": \([0-9]*\).*/\1/p' "$c/decision.json")/sft/model"
done
