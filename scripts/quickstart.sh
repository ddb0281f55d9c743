#!/usr/bin/env bash
# The main job on a fresh machine: set up, train a CartPole-v1 DQN, compress it to a
# 1-timestep SNN (T = 5, 4, 3, 2, 1) and evaluate every stage. Pass another env id to run
# its preset instead (PongNoFrameskip-v4 takes hours on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
env_id="${1:-CartPole-v1}"
bash scripts/setup.sh
run="runs/$env_id"
if [ -f "$run/checkpoint.json" ]; then  # a run started before: continue it (a finished one keeps its ann.zip)
  .venv/bin/spikerl train --resume "$run"
else
  .venv/bin/spikerl train --env "$env_id" --out "$run"
fi
snn="runs/${env_id}_snn"
if [ -f "$snn/results.json" ]; then  # compressed before: continue after its last finished stage (a finished one: nothing to do)
  .venv/bin/spikerl compress --agent "$run/ann.zip" --out "$snn" --resume  # a refusal says what to do
else
  .venv/bin/spikerl compress --agent "$run/ann.zip" --out "$snn"
fi
