"""Issue 9's closing note: loss after 8 full-batch QNewton steps at its defaults vs Adam.

Five small models on scikit-learn's digits (no download): a tanh MLP (GGN), a CNN, an MSE
regression (GGN), a BatchNorm MLP and a GRU (rows of the image as a sequence). QNewton runs at
its constructor defaults (``QNewton(model.named_parameters())``, curvature as noted); Adam runs
with each lr of 1e-3, 3e-3, 1e-2, 3e-2 for the same wall time as QNewton's 8 steps, and the best
is reported. Prints a Markdown table and the damping trajectory of the first model.

    PYTHONPATH=src .venv/bin/python scripts/defaults_vs_adam.py [--steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

from qnewton import QNewton
from qnewton.calibration import calibrate


def data(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.data[:n] / 16.0, dtype=torch.float32)
    return x, torch.tensor(d.target[:n])


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.reshape(-1, 8, 8))
        return self.head(out[:, -1])


def models() -> dict[str, tuple[callable, str, str]]:
    """name → (model factory, curvature, loss kind)."""
    return {
        "tanh MLP 64-16-10 (ggn)": (
            lambda: nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)), "ggn", "ce"),
        "CNN (fisher)": (lambda: nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * 36, 10)), "fisher", "ce"),
        "MSE regression MLP (ggn)": (
            lambda: nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1)), "ggn", "mse"),
        "BatchNorm MLP (hessian)": (lambda: nn.Sequential(
            nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)), "hessian",
            "ce"),
        "GRU (fisher)": (GRUNet, "fisher", "ce"),
    }


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str):
    target = (y.float() - 4.5) / 3.0  # regression target: the digit, standardized

    def losses():
        out = model(x)
        if loss == "mse":
            return (out.squeeze(1) - target) ** 2, out
        return nn.functional.cross_entropy(out, y, reduction="none"), out

    return losses


def run_qnewton(factory, curvature: str, loss: str, steps: int, x, y, rates):
    torch.manual_seed(0)
    model = factory()
    # only the machine's rates are passed (calibrated once, outside the timed steps)
    opt = QNewton(model.named_parameters(), curvature=curvature, rates=rates)
    f = closure_for(model, x, y, loss)

    def closure():
        losses, out = f()
        return (losses, out) if curvature in ("ggn", "ggn-mc") else losses

    start = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        final = float(f()[0].mean())
    return final, seconds, opt.ledger.step_rule


def run_adam(factory, loss: str, lr: float, seconds: float, x, y) -> tuple[float, int]:
    torch.manual_seed(0)
    model = factory()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    f = closure_for(model, x, y, loss)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        opt.zero_grad()
        f()[0].mean().backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        return float(f()[0].mean()), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = data()
    rates = calibrate()
    print("| model | initial loss | QNewton defaults, 8 steps | seconds | best Adam (lr, steps) "
          "same time |")
    print("|---|---|---|---|---|")
    trajectory = None
    for name, (factory, curvature, loss) in models().items():
        torch.manual_seed(0)
        with torch.no_grad():
            initial = float(closure_for(factory(), x, y, loss)()[0].mean())
        final, seconds, rule = run_qnewton(factory, curvature, loss, args.steps, x, y, rates)
        trajectory = trajectory or (name, rule)
        adam = min((run_adam(factory, loss, lr, seconds, x, y), lr)
                   for lr in (1e-3, 3e-3, 1e-2, 3e-2))
        (adam_loss, adam_steps), adam_lr = adam
        print(f"| {name} | {initial:.4g} | {final:.4g} | {seconds:.2f} | {adam_loss:.4g} "
              f"(lr {adam_lr:g}, {adam_steps} steps) |")
    name, rule = trajectory
    print(f"\nDamping trajectory, {name}:")
    print("| step | λ | α | ρ | backtracks | loss after |")
    print("|---|---|---|---|---|---|")
    for r in rule:
        rho = "—" if r["rho"] is None else f"{r['rho']:.3f}"
        print(f"| {r['step']} | {r['damping']:.3g} | {r['step_size']:.3g} | {rho} | "
              f"{r['backtracks']} | {r['loss_after']:.4g} |")


if __name__ == "__main__":
    main()
