"""Access data in each tenant's schema."""

from __future__ import annotations

from django.db import models


class AccessRights(models.Model):
    """Holder of Atrium's custom permissions; no table. Roles are Django Groups granted these."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("read", "Read own conversations and usage"),
            ("write", "Send messages to models"),
            ("use_opus", "Use Opus-tier models"),
            ("use_sonnet", "Use Sonnet-tier models"),
            ("use_haiku", "Use Haiku-tier models"),
            ("use_tools", "Send tool definitions"),
            ("use_vision", "Send images"),
            ("high_tokens", "Request more than 4096 output tokens"),
            ("admin", "Administer the tenant"),
        ]

    def __str__(self) -> str:
        return "access rights"
