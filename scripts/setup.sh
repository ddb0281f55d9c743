#!/usr/bin/env bash
# Creates .venv and installs spikerl with its test and sweep (Ray) extras. Torch is pinned to 2.13.0 when not
# yet installed: on this project's machines that takes the CPU wheel on disk; elsewhere pip
# takes the build PyPI serves for the platform (CUDA on Linux x86-64).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,sweep]"
# SpikingJelly and Norse (the NIR import and energy cross-check tests) declare torchvision and
# torchaudio, which would replace the CPU torch with the newest CUDA build: install them without
# their dependencies (what their tested modules import is already installed).
.venv/bin/python -m pip install -q --no-deps "spikingjelly==2.0.0" "norse==1.1.0"
