"""chatkit-python's own ``Store`` test suite (``tests/test_store.py`` of the ``openai-chatkit``
sdist, see ``chatkit_sdk_suite``) through ``ChatstoreStore``, against real chatstore servers on
SQLite and PostgreSQL: a fresh server and database per test.

Only the SDK's shared ``TestStore`` tests run. Its SQLite subclasses (``TestSqliteStore``,
``TestSqliteStoreCustomIds``) test the SDK's example store and are left out: they are never
collected, as only the subclass below is a name of this module.
"""

from __future__ import annotations

from typing import Any

import pytest
from chatkit_sdk_suite import load_sdk_store_tests

sdk_store_tests = load_sdk_store_tests()


class TestChatstoreStore(sdk_store_tests.TestStore):
    # The SDK's tests use `self.store`; the fixture below sets it once the server is up.
    def setup_method(self, method: Any) -> None:
        pass

    def teardown_method(self, method: Any) -> None:
        pass

    @pytest.fixture(autouse=True)
    def _chatstore_store(self, server: Any, make_chatkit_store: Any) -> None:
        # Each of the SDK's RequestContext users is a chatstore user of the same name.
        self.store = make_chatkit_store(token_for=lambda context: server.token(context.user_id))
