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

model="$W/base"
history=()
for ((k = 0; k < CYCLES; k++)); do
  c="$W/cycle-$k"
  $VS --config "$CONFIG" generate --model "$model" --data "$W/data/records.jsonl" --out "$c/generate"
  $VS --config "$CONFIG" verify --answers "$c/generate/answers.jsonl" --out "$c/verify"
  $VS --config "$CONFIG" rationalize --model "$model" --rejected "$c/verify/rejected.jsonl" --out "$c/rationalize"
  $VS --config "$CONFIG" sft --base-model "$W/base" --data "$c/verify/verified.jsonl" "$c/rationalize/verified.jsonl" --out "$c/sft"
  $VS summarize --cycle "$k" --verify "$c/verify/metrics.json" --rationalize "$c/rationalize/metrics.json" --out "$c/summary.json"
  history+=("$c/summary.json")
  $VS --config "$CONFIG" decide --history "${history[@]}" --out "$c/decision.json"
  grep -q '"continue": true' "$c/decision.json" || break
  model="$c/sft/model"   # the next cycle generates with this cycle's model; SFT restarts from base
done
