#!/usr/bin/env bash
# Creates .venv (if missing) and installs normexp with everything the suite and its tests use (docs/install.md).
# torch first and pinned: any other torch request would pull the CUDA build's gigabytes on a CPU machine.
# fairseq (MT only) comes from ve-fairseq, a prebuilt 0.12.3 for Python 3.11/3.12, installed without its
# dependencies (its torchaudio requirement would drag in CUDA torch); its real needs are the `mt` extra.
# scripts/constraints.txt pins every other package to the versions CI passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==${TORCH_VERSION:-2.13.0}"
$PIP install -q -c scripts/constraints.txt -e ".[launchers,mt,test]"
$PIP install -q --no-deps "ve-fairseq==0.12.3"
.venv/bin/python -c "import torch, hydra, fairseq, normexp; print('normexp', normexp.__version__, 'environment ready: torch', torch.__version__, '| fairseq', fairseq.__version__)"
