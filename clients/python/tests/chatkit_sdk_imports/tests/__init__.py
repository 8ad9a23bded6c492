"""The ``tests`` package chatkit-python's ``tests/test_store.py`` imports ``_types`` from
(see ``chatkit_sdk_suite``). The sdist ships the test file without it."""
