"""Test set-up: 8 simulated CPU devices, no network, and a data folder.

XLA_FLAGS must be set before jax is imported anywhere, so it is set here at collection time.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
if "HF_HOME" not in os.environ:
    # A private Hugging Face cache per test process, removed at exit so test runs leave nothing in /tmp.
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="jaxcnn-hf-")
    atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

REPO = pathlib.Path(__file__).resolve().parents[1]
# One persistent XLA compilation cache for the test session, its workers and the commands they start: many tests
# compile the same small programs (on two test files, 234 s -> 156 s with a cold cache). It lives with pytest's
# own cache, is keyed by the program and the jax/XLA versions, and is never read by jaxcnn itself.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax-compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


def _data_dir() -> pathlib.Path | None:
    env = os.environ.get("JAXCNN_DATA_DIR")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "kim").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The benchmark data folder (`JAXCNN_DATA_DIR`, else ../shared/data). Tests that need it fail loudly
    when it is missing rather than skip: CI always has it."""
    d = _data_dir()
    if d is None:
        raise RuntimeError("benchmark data not found: set JAXCNN_DATA_DIR to the folder holding kim/, raw/, ...")
    return d
