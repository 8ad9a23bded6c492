"""The ``helpers`` package chatkit-python's ``tests/test_store.py`` imports ``mock_store``
from (see ``chatkit_sdk_suite``). The sdist ships the test file without it."""
