"""The registry of curvature kinds: adding a kind is one new file and one entry here."""

from __future__ import annotations

from qnewton.curvature.fisher import FisherCurvature
from qnewton.curvature.ggn import GGNCurvature
from qnewton.curvature.ggn_mc import MonteCarloGGNCurvature
from qnewton.curvature.hessian import HessianCurvature
from qnewton.curvature.kfac import KFACCurvature
from qnewton.curvature.kind import CurvatureKind
from qnewton.registry import Registry

CURVATURES: Registry[CurvatureKind] = Registry("curvature")
CURVATURES.register("hessian", HessianCurvature())
CURVATURES.register("ggn", GGNCurvature())
CURVATURES.register("fisher", FisherCurvature())
CURVATURES.register("ggn-mc", MonteCarloGGNCurvature())
CURVATURES.register("kfac", KFACCurvature())
