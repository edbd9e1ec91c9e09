"""Access data in each tenant's schema: permissions, the tenant's SSO configuration, identities, API keys."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from tenants.fields import EncryptedTextField
from tenants.models import Tenant


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


class OIDCConfig(models.Model):
    """The tenant's identity provider for browser SSO and bearer tokens. One row per tenant schema."""

    # A fixed primary key makes the row a singleton the database itself enforces.
    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    # Help texts are rendered as HTML by the admin: no angle brackets in them ("Sign in with <name>" showed as
    # "Sign in with '.").
    enabled = models.BooleanField(
        default=False,
        help_text="Shows the single sign-on button on the sign-in page and accepts the IdP's bearer tokens. "
                  "Can only be switched on after a successful test sign-in with the current settings.")
    display_name = models.CharField(
        max_length=80, default="SSO", help_text="Shown on the sign-in button, after the words “Sign in with”."
    )
    issuer = models.URLField(
        max_length=500, help_text="The IdP's issuer URL, exactly as it appears in the tokens' iss claim."
    )
    discovery_url = models.URLField(
        max_length=500,
        blank=True,
        default="",
        help_text="Leave empty to use the issuer followed by /.well-known/openid-configuration.",
    )
    client_id = models.CharField(max_length=255)
    client_secret = EncryptedTextField(blank=True, default="", help_text="Stored encrypted; leave blank to keep.")
    scopes = models.CharField(max_length=255, default="openid email profile")
    groups_claim = models.CharField(
        max_length=100,
        default="groups",
        help_text="Claim holding the user's groups or roles (a list or a space/comma-separated string). "
        "Dotted paths reach nested claims, e.g. realm_access.roles for Keycloak.",
    )
    allowed_email_domains = models.TextField(
        blank=True,
        default="",
        help_text="One domain per line (or comma-separated). Empty allows any domain.",
    )
    api_audiences = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Accepted 'aud' values for API bearer tokens, comma-separated. Empty means the client id.",
    )
    verify_ssl = models.BooleanField(default=True, help_text="Verify the IdP's TLS certificate.")
    end_session_endpoint = models.URLField(
        max_length=500,
        blank=True,
        default="",
        help_text="Overrides the discovery document's end_session_endpoint for logout. Usually empty.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    # The last successful test sign-in (access/sso_test.py) and which settings it proved: enabling requires one whose
    # fingerprint matches the settings being saved.
    tested_at = models.DateTimeField(null=True, blank=True, editable=False)
    tested_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        verbose_name = "SSO configuration"
        verbose_name_plural = "SSO configuration"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="oidcconfig_singleton")]

    def __str__(self) -> str:
        return f"SSO via {self.issuer}"

    @property
    def discovery_document_url(self) -> str:
        return self.discovery_url or f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    def connection_fingerprint(self) -> str:
        """A digest of the settings a test sign-in exercises; a change to any of them needs a new test."""
        import hashlib

        parts = [self.issuer, self.discovery_url, self.client_id, str(self.client_secret or ""), str(self.verify_ssl),
                 self.scopes]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    @property
    def test_current(self) -> bool:
        return bool(self.tested_at and self.tested_fingerprint == self.connection_fingerprint())

    @property
    def email_domains(self) -> list[str]:
        raw = self.allowed_email_domains.replace(",", "\n").split("\n")
        return [d.strip().lower().lstrip("@") for d in raw if d.strip()]

    @property
    def audiences(self) -> list[str]:
        values = [a.strip() for a in self.api_audiences.split(",") if a.strip()]
        return values or [self.client_id]


class OIDCGroupMapping(models.Model):
    """An IdP group (claim value) that grants one Atrium role. Roles named here are managed by SSO."""

    config = models.ForeignKey(OIDCConfig, on_delete=models.CASCADE, related_name="group_mappings")
    claim_value = models.CharField(max_length=255, help_text="Group or role name exactly as the IdP sends it.")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="+", verbose_name="role")

    class Meta:
        verbose_name = "group to role mapping"
        constraints = [
            models.UniqueConstraint(fields=["config", "claim_value", "group"], name="oidc_mapping_unique")
        ]

    def __str__(self) -> str:
        return f"{self.claim_value} → {self.group}"


class UserIdentity(models.Model):
    """Links a user to an IdP account by (issuer, subject); the only key SSO and bearer tokens match on."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    email = models.EmailField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "user identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="identity_issuer_subject_unique")]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class ApiKey(models.Model):
    """A user's API key. Only a keyed hash of the secret is stored; the key is shown once at creation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key, for identification.")
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"atr_{self.prefix}_… ({self.name})"

    @property
    def display(self) -> str:
        return f"atr_{self.prefix}_…"


class TenantPolicy(Tenant):
    """The current tenant's row as its own administrator sees it on the tenant site (access/admin_policy.py):
    the platform's policy read-only, the tenant's own tightenings and notice editable. No table of its own."""

    class Meta:
        proxy = True
        verbose_name = "policy"
        verbose_name_plural = "policy"
        default_permissions = ()


class Budget(models.Model):
    """A spending limit in money for the whole tenant, one user or one API key, per UTC day or calendar month.

    Enforced exactly across processes like the token quotas (access.budgets): a call is admitted only if its
    largest possible cost still fits; alerts go out at 80% and 100% (once per threshold and period).
    """

    class Scope(models.TextChoices):
        TENANT = "tenant", "the whole organisation"
        USER = "user", "one user"
        API_KEY = "api_key", "one API key"

    class Period(models.TextChoices):
        DAILY = "daily", "per UTC day"
        MONTHLY = "monthly", "per calendar month (UTC)"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="budgets", help_text="For a budget of one user.")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets",
                                help_text="For a budget of one API key.")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTHLY)
    limit_micros = models.PositiveBigIntegerField(help_text="The limit in micro-USD (1 USD = 1,000,000).")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scope", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(scope="tenant", user__isnull=True, api_key__isnull=True)
                           | models.Q(scope="user", user__isnull=False, api_key__isnull=True)
                           | models.Q(scope="api_key", user__isnull=True, api_key__isnull=False)),
                name="budget_scope_subject"),
            models.UniqueConstraint(fields=["scope", "user", "api_key", "period"], name="budget_one_per_subject",
                                    nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.get_period_display()}"

    def covers(self, user_id: int | None, api_key_prefix: str) -> bool:
        """Does this budget count a call of `user_id` made with the API key `api_key_prefix` ('' for none)? The
        same subjects as the admission's query (access.budgets), for the rebuild and the recovery of counters."""
        if self.scope == self.Scope.USER:
            return self.user_id == user_id
        if self.scope == self.Scope.API_KEY:
            return self.api_key is not None and self.api_key.prefix == api_key_prefix
        return True

    @property
    def label(self) -> str:
        if self.scope == self.Scope.USER:
            return f"the budget of user {self.user}"
        if self.scope == self.Scope.API_KEY:
            return f"the budget of API key {self.api_key.display if self.api_key else '?'}"
        return "the organisation's budget"


class BudgetAlert(models.Model):
    """A budget threshold reached in one period: the admin notice, and the record that its e-mail went out once."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the limit: 80 or 100.")
    spent_micros = models.PositiveBigIntegerField()
    limit_micros = models.PositiveBigIntegerField()
    recipients = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["budget", "period_start", "threshold"],
                                               name="budget_alert_once")]

    def __str__(self) -> str:
        return f"{self.threshold}% of {self.budget} ({self.period_start})"


class Invitation(models.Model):
    """An e-mailed invitation to join this tenant (access/invitations.py): the invitee sets their own password
    through a one-time link that expires, or signs in with SSO. Only a keyed hash of the link's token is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    roles = models.ManyToManyField(Group, blank=True, related_name="+")
    staff = models.BooleanField(default=False, verbose_name="may open the admin workspace")
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    token_hash = models.CharField(max_length=64, editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                      related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the invitee"
        ACCEPTED = "accepted", "Accepted"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["email"], name="invitation_email_idx")]

    def __str__(self) -> str:
        return f"Invitation for {self.email}"

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return self.Status.ACCEPTED
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.PENDING
