"""A stand-in for ``helpers.mock_store`` of chatkit-python's repository (missing from its
sdist). ``test_store.py`` imports ``SQLiteStore`` from it only for the SDK's own SQLite test
classes, which chatstore's suite does not collect: it runs the shared ``TestStore`` tests
through ``ChatstoreStore`` instead."""

from typing import Any


class SQLiteStore:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "the SDK's SQLite test store is not part of this suite; "
            "only TestStore's tests run here, through ChatstoreStore"
        )
