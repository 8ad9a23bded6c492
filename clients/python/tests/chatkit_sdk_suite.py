"""chatkit-python's own ``Store`` test suite, fetched from PyPI at test time.

The ``openai-chatkit`` sdist of the installed version carries ``tests/test_store.py``: an
abstract ``TestStore`` whose tests any ``chatkit.store.Store`` should pass, and the SDK's
own SQLite subclasses. :func:`load_sdk_store_tests` downloads the sdist once with pip into
a cache directory (``CHATKIT_SDK_CACHE``, default ``clients/python/.cache``), keeps only that
file, and imports it. None of the SDK's code is committed here.

The test file imports two modules its sdist lacks; ``chatkit_sdk_imports/`` supplies them
(``tests._types.RequestContext`` and a stand-in ``helpers.mock_store.SQLiteStore``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

SDK_DISTRIBUTION = "openai-chatkit"
IMPORTS_DIR = Path(__file__).resolve().parent / "chatkit_sdk_imports"
DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"
# The name the test file is imported under: a ``test_*`` module, so pytest rewrites its
# asserts and a failure shows the values compared.
MODULE_NAME = "test_store"
DOWNLOAD_TIMEOUT_SECS = 300


def sdk_version() -> str:
    return importlib.metadata.version(SDK_DISTRIBUTION)


def cached_test_file(version: str) -> Path:
    """``tests/test_store.py`` of the ``openai-chatkit==version`` sdist, downloaded on first
    use (the cache keeps it for later runs)."""
    cache = Path(os.environ.get("CHATKIT_SDK_CACHE") or DEFAULT_CACHE_DIR)
    target = cache / f"openai-chatkit-{version}" / f"{MODULE_NAME}.py"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"{SDK_DISTRIBUTION}=={version}",
            "--dest",
            scratch,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_SECS
        )
        sdists = sorted(Path(scratch).glob("*.tar.gz"))
        if done.returncode != 0 or len(sdists) != 1:
            _unavailable(
                f"could not download the {SDK_DISTRIBUTION} {version} sdist with pip "
                f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
            )
        text = _member(sdists[0], "tests/test_store.py")
        partial = Path(scratch) / target.name
        partial.write_bytes(text)
        # Renamed into place whole, so an interrupted run never leaves half a file cached.
        os.replace(partial, target)
    return target


def _unavailable(reason: str) -> NoReturn:
    """Skips the SDK's suite loudly (PyPI unreachable, say), or fails it under ``CI=true``,
    like the PostgreSQL cases in ``conftest``."""
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason} (CI=true: the SDK's store tests must run)", pytrace=False)
    pytest.skip(f"!!! CHATKIT SDK STORE TESTS NOT RUN !!! {reason}", allow_module_level=True)


def _member(sdist: Path, path: str) -> bytes:
    """The bytes of ``<top directory>/path`` in the sdist."""
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name.partition("/")[2] == path and member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                return extracted.read()
    pytest.fail(f"{sdist.name} has no {path}", pytrace=False)


def load_sdk_store_tests() -> ModuleType:
    """The SDK's ``test_store`` module, imported with the two modules it needs on the path."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    test_file = cached_test_file(sdk_version())
    for name in ("tests", "helpers"):
        loaded = sys.modules.get(name)
        if loaded is not None and Path(loaded.__file__ or "").parent != IMPORTS_DIR / name:
            pytest.fail(f"a module `{name}` other than {IMPORTS_DIR / name} is already imported")
    for directory in (test_file.parent, IMPORTS_DIR):
        if str(directory) not in sys.path:
            # First, ahead of clients/python (on the path through the editable install), whose
            # own tests/ directory would otherwise be found as the `tests` package.
            sys.path.insert(0, str(directory))
    return importlib.import_module(MODULE_NAME)
