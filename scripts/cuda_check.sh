#!/usr/bin/env bash
# spikerl on a CUDA machine, end to end, in a few minutes: what the CPU-only suite cannot see.
#   scripts/cuda_check.sh [NEW_DIR [ATARI_ANN.zip [ENV_ID]]]   (spikerl and its dependencies installed; a CUDA GPU)
# With --device auto (the default) train and compress must run on CUDA (read off the tensors
# they save, in a new or empty NEW_DIR, else a temporary folder); a CartPole ANN is trained,
# stopped and resumed (CUDA random states in the checkpoint), compressed with a short IIR
# schedule, evaluated on CUDA and on the CPU (the same episodes should give the same rewards),
# and its T=1 agent loaded with plain stable_baselines3.DQN.load on either device (the same
# actions). With an Atari ANN (e.g. agents/PongNoFrameskip-v4/ann.zip) its preset's compression
# runs briefly on CUDA too (schedule 2,1, one game per evaluation; ENV_ID where the ANN lies
# outside its run folder). Every step prints its wall time; a failed command stops the script,
# a CUDA/CPU difference is reported and it goes on.
set -euo pipefail
work=${1:-$(mktemp -d)}
atari_ann=${2:-}
atari_env=(${3:+--env "$3"})
mkdir -p "$work"
spikerl=(python3 -m spikerl)
differences=0
step() { echo "== $*"; SECONDS=0; }
took() { echo "   ($SECONDS s)"; }
differs() { echo "   DIFFERENT on CUDA and on the CPU"; differences=$((differences + 1)); }

step "CUDA present"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name(0))"
took

step "train CartPole-v1 to 3000 steps, then resume to 4000 (--device auto)"
"${spikerl[@]}" train --env CartPole-v1 -n 3000 --out "$work/cartpole" --no-progress
"${spikerl[@]}" train --resume "$work/cartpole" -n 4000 --no-progress
python3 - "$work/cartpole" <<'PYTHON'
import glob, sys, torch
checkpoint = torch.load(glob.glob(f"{sys.argv[1]}/checkpoint_*.pt")[0], weights_only=True)
assert "cuda_rng" in checkpoint, "the training checkpoint holds no CUDA random state: training ran on the CPU"
print("training ran on CUDA (its checkpoint holds the CUDA random state)")
PYTHON
took

step "compress it (schedule 3,1, 300 distillation steps per stage)"
"${spikerl[@]}" compress --agent "$work/cartpole/ann.zip" --out "$work/cartpole_snn" --no-progress \
    --set compress.schedule=[3,1] compress.steps_per_stage=300 compress.stage_eval_episodes=5
python3 - "$work/cartpole_snn/T1.zip" <<'PYTHON'
import io, sys, torch, zipfile
weights = torch.load(io.BytesIO(zipfile.ZipFile(sys.argv[1]).read("policy.pth")), weights_only=True)
devices = {str(tensor.device) for tensor in weights.values()}
assert devices == {"cuda:0"}, f"T1.zip was saved from {devices}: compression ran on the CPU"
print("compression ran on CUDA (T1.zip's weights were saved from cuda:0)")
PYTHON
took

step "evaluate T=1 on CUDA and on the CPU: the same episodes, the same rewards"
for device in cuda cpu; do
    "${spikerl[@]}" evaluate --agent "$work/cartpole_snn/T1.zip" --episodes 5 --device "$device" --no-progress \
        | tee "$work/evaluate_$device.txt"
done
diff <(grep -E "^(reward|episode length)" "$work/evaluate_cuda.txt") \
     <(grep -E "^(reward|episode length)" "$work/evaluate_cpu.txt") || differs
took

step "plain DQN.load of T1.zip on CUDA and on the CPU: the same greedy actions on 1000 states"
python3 - "$work/cartpole_snn/T1.zip" <<'PYTHON' || differs
import sys
import numpy as np
from stable_baselines3 import DQN
states = np.random.default_rng(0).normal(scale=[1.0, 1.0, 0.1, 1.0], size=(1000, 4)).astype(np.float32)
actions = {device: DQN.load(sys.argv[1], device=device).predict(states, deterministic=True)[0] for device in ("cuda", "cpu")}
agree = float(np.mean(actions["cuda"] == actions["cpu"]))
print(f"actions agree on {agree:.1%} of 1000 states")
sys.exit(0 if agree >= 0.99 else 1)  # float32 sums in another order may flip a state at a firing threshold
PYTHON
took

if [[ -n "$atari_ann" ]]; then
    step "compress $atari_ann with its preset on CUDA (schedule 2,1, 200 steps per stage, one game per evaluation)"
    "${spikerl[@]}" compress --agent "$atari_ann" "${atari_env[@]}" --out "$work/atari_snn" --no-progress \
        --set compress.schedule=[2,1] compress.steps_per_stage=200 compress.stage_eval_episodes=1 \
        compress.teacher_states=2000 compress.distill.student_states=1000
    took
fi
echo "cuda_check: done, $differences CUDA/CPU difference(s) ($work)"
exit $((differences > 0))
