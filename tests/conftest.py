import sys
from pathlib import Path

# Test helpers (the numpy reference renderer) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _attractor_caches(tmp_path_factory):
    """Attractor caches of the tests' families in a folder of the session, not the machine's temporary folder."""
    import os

    os.environ.setdefault("FDSL_CACHE_DIR", str(tmp_path_factory.mktemp("attractor-caches")))
