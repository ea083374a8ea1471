"""Plans' tests relay real chats to stub nodes: the inference fixtures."""

from tests.inference.conftest import node_on  # noqa: F401
