"""Access: roles and permissions, the access policy, SSO and API authentication, API keys, quotas."""
