"""Python client for chatstore: an OpenAI Agents SDK ``Session`` stored over HTTP."""

from .errors import ChatstoreConnectionError, ChatstoreError
from .session import DEFAULT_TIMEOUT, ChatstoreSession

__all__ = [
    "ChatstoreConnectionError",
    "ChatstoreError",
    "ChatstoreSession",
    "DEFAULT_TIMEOUT",
]

__version__ = "0.1.0"
