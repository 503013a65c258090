import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the calibration cache of the test session out of the user's home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QNEWTON_CACHE_DIR", str(tmp_path_factory.mktemp("qnewton-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_check_memo():
    """Each test sees the engine's check run (models of equal structure are built test after
    test, and their parameters can reuse freed ids)."""
    from qnewton.curvature.per_sample.check_memo import CHECKS

    CHECKS.clear()
    yield
    CHECKS.clear()
