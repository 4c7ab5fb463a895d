"""Shared fixtures. Tests run on the CPU, with small compiles."""

import os

# Keep Ray on loopback (it rewrites 127.0.0.1 otherwise) and token auth off, for
# every process the tests start. Must be set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "spaces"


@pytest.fixture
def write_space(tmp_path):
    """Write YAML text to a space file in a temporary folder and return its path."""

    def write(text: str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
