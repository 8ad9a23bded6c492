"""schemathesis hooks for chatstore's OpenAPI document (loaded through SCHEMATHESIS_HOOKS by
test_openapi_contract.py).

`POST /import` takes `application/x-ndjson`, which schemathesis has no serializer for: its
body is documented as a string (the lines), so the generated string is sent as UTF-8, and
anything else as one line of JSON.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode("utf-8")
