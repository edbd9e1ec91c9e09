"""The chat tests' committed users and quota policy, for the cluster tests."""

from tests.chat.conftest import committed_user, quota_policy  # noqa: F401 - fixtures
