"""Provider adapters: one SDK client per target and credentials, and the two calls the router makes."""

from inference.providers.base import provider_client, provider_create, provider_stream

__all__ = ["provider_client", "provider_create", "provider_stream"]
