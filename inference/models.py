"""Conversations, messages and usage in each tenant's schema."""
