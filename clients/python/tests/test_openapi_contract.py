"""The OpenAPI document says exactly what the server does: schemathesis, with every check on,
finds no failure against a real server on each database.

The run is bounded and repeatable: the seed and the example count are fixed in
``schemathesis.toml`` beside this file, which also lists (with the reason for each) the few
checks turned off for one operation where JSON Schema cannot state the API's rule.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Teaches schemathesis to send `application/x-ndjson` (the body of POST /import).
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# Far above the run's usual 20-40 s, so only a hang trips it.
RUN_TIMEOUT_SECS = 600


def test_schemathesis_finds_no_failure(server, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    assert st.is_file(), f"schemathesis is not installed beside {sys.executable}"
    done = subprocess.run(
        [
            str(st),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.token('alice')}",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECS,
        # schemathesis keeps a cache in its working directory: not in the repository.
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    report = done.stdout[-20000:] + done.stderr[-4000:]
    assert done.returncode == 0, f"schemathesis failed on {server.backend}:\n{report}"
    assert " passed" in done.stdout, f"schemathesis ran no test case:\n{report}"
