"""Monte-Carlo generalized Gauss-Newton: one sampled direction per sample, unbiased for the GGN.

The GGN factor has C rows per sample, ``J_sᵀ R_s[:, c]`` (:mod:`qnewton.curvature.ggn`). Drawing
``z_s ~ N(0, I_C)`` and keeping the single row ``J_sᵀ v_s`` with ``v_s = R_s z_s`` gives
``E[J_sᵀ v_s v_sᵀ J_s] = J_sᵀ R_s E[z_s z_sᵀ] R_sᵀ J_s = J_sᵀ H_s J_s``: the S-row factor is an
unbiased estimate of the GGN at the cost of an empirical Fisher (one backward pass on the fast
path, :mod:`qnewton.curvature.per_sample`). Gaussian directions need only ``R_s``, so the
estimate holds for any loss; sampling labels from the model's predictive distribution (K-FAC's
"true Fisher") would need to know the loss is a likelihood, which a closure does not say.
"""

from __future__ import annotations

import hashlib

import torch

from qnewton.curvature.config import CurvatureConfig
from qnewton.curvature.ggn import GGNCurvature
from qnewton.curvature.kind import BuildInputs


def draw_directions(outputs: torch.Tensor, s: int, c: int, seed: int | None,
                    dtype: torch.dtype) -> torch.Tensor:
    """``z ~ N(0, I)`` of shape ``(S, C)``. With an integer ``seed`` the generator is seeded by it
    and by the bytes of the outputs, so a call is a deterministic function of its inputs (the
    same batch at the same parameters gives the same draw; any change gives a fresh one); with
    ``None`` the draw comes from torch's global RNG (``torch.manual_seed``)."""
    if seed is None:
        return torch.randn((s, c), dtype=dtype, device=outputs.device)
    data = outputs.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    digest = hashlib.blake2b(data, digest_size=8, person=b"qnewton-ggn-mc",
                             salt=int(seed).to_bytes(16, "little", signed=True))
    gen = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
    return torch.randn((s, c), dtype=dtype, generator=gen).to(outputs.device)


class MonteCarloGGNCurvature(GGNCurvature):
    """``S`` factor rows ``J_sᵀ R_s z_s`` with ``z_s ~ N(0, I_C)``, ``scale = 1/S``: an unbiased,
    rank-≤S estimate of the GGN (:mod:`qnewton.curvature.ggn`). The draws are seeded by
    ``CurvatureConfig.seed`` and the outputs (see :func:`draw_directions`) (docs/method.md §4.7).
    """

    name = "ggn-mc"
    #: its rows are one draw; the step rule's ΔᵀCΔ stays the exact GGN's (GGNCurvature.quadratic)
    aligned_rows = False

    def substitute(self, num_samples: int, num_outputs: int, config: CurvatureConfig
                   ) -> tuple[str, str] | None:
        return None  # already the cheap estimate

    def stored_elements(self, n: int, num_samples: int, num_outputs: int) -> int:
        return num_samples * n

    def storage(self, n: int, num_samples: int, num_outputs: int, dtype_name: str) -> str:
        return (f"as a {num_samples}×{n} {dtype_name} factor "
                "(Monte-Carlo GGN, one sampled row per sample)")

    def budget_advice(self, num_samples: int, num_outputs: int) -> str:
        return "use fewer samples per step or a larger budget"

    def seeds(self, sqrt_h: torch.Tensor, outputs: torch.Tensor, inputs: BuildInputs
              ) -> list[torch.Tensor]:
        """One seed, v_s = R_s z_s: row s is J_sᵀ v_s."""
        s, c = inputs.num_samples, inputs.num_outputs
        z = draw_directions(outputs, s, c, inputs.config.seed, inputs.config.dtype)
        v = torch.einsum("sij,sj->si", sqrt_h, z)
        return [v.to(outputs.dtype).reshape(outputs.shape)]
