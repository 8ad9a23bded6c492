"""The request context of chatkit-python's store tests (``tests._types.RequestContext`` in
the SDK's repository, missing from its sdist). ``test_store.py`` only builds it with a
``user_id``; ``test_chatkit_sdk_store`` maps that user to a chatstore token."""

from pydantic import BaseModel


class RequestContext(BaseModel):
    user_id: str
