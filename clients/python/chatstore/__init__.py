"""Python client for chatstore: an OpenAI Agents SDK ``Session`` and a ChatKit ``Store``
stored over HTTP.

``ChatstoreStore`` and ``ChatstoreAttachmentStore`` need ``openai-chatkit`` (the ``chatkit``
extra); they are imported on first use, so ``import chatstore`` works without it.
"""

from typing import TYPE_CHECKING, Any

from .advanced import ChatstoreAdvancedSession
from .errors import ChatstoreConnectionError, ChatstoreError
from .session import DEFAULT_TIMEOUT, ChatstoreSession

if TYPE_CHECKING:
    from .chatkit_store import ChatstoreAttachmentStore, ChatstoreStore

__all__ = [
    "ChatstoreAdvancedSession",
    "ChatstoreAttachmentStore",
    "ChatstoreConnectionError",
    "ChatstoreError",
    "ChatstoreSession",
    "ChatstoreStore",
    "DEFAULT_TIMEOUT",
]

__version__ = "0.1.0"

_CHATKIT_EXPORTS = ("ChatstoreAttachmentStore", "ChatstoreStore")


def __getattr__(name: str) -> Any:
    if name in _CHATKIT_EXPORTS:
        from . import chatkit_store

        return getattr(chatkit_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
