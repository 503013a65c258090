import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the calibration cache of the test session out of the user's home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QNEWTON_CACHE_DIR", str(tmp_path_factory.mktemp("qnewton-cache")))
    yield
    mp.undo()
