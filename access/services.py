"""Writes for access: users from IdP claims, role sync from group claims, API keys."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.signals import setting_changed
from django.db import IntegrityError, connection, transaction
from django.db.models import Model, Q, signals
from django.db.models.base import ModelState
from django.dispatch import receiver
from django.utils import timezone

from access.audit_hooks import access_audit
from access.errors import AccessError, AuthenticationFailed
from access.models import ApiKey, OIDCConfig, UserIdentity
from access.oidc import claim_values
from access.queries import KeyRows, api_key_rows, user_rows_by_id
from audit.chain import mac_hex
from config.stored_text import stored_text
from config.tenant_cache import TenantCache

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest


M = TypeVar("M", bound=Model)

API_KEY_PREFIX = "atr_"
# atr_<8 lowercase hex>_<43 url-safe chars>: the prefix identifies a key in lists and logs.
API_KEY_RE = re.compile(r"^atr_([0-9a-f]{8})_([A-Za-z0-9_-]{32,128})$")
LAST_USED_WRITE_INTERVAL = timedelta(seconds=60)


class LoginRefused(AccessError):
    """The IdP vouched for the user but this tenant does not admit them (403, shown on a page)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- users from IdP claims ---------------------------------------------------------------------

def _email_domain_check(config: OIDCConfig, claims: dict[str, Any]) -> None:
    domains = config.email_domains
    if not domains:
        return
    email = str(claims.get("email") or "").strip().lower()
    if not email or "@" not in email:
        raise LoginRefused("Your identity provider did not send an email address, and this organisation only "
                           "admits addresses from certain domains.", reason="email_missing")
    if claims.get("email_verified") is False:
        raise LoginRefused("Your email address is not verified by your identity provider.",
                           reason="email_unverified")
    domain = email.rsplit("@", 1)[1]
    if domain not in domains:
        raise LoginRefused(f"Accounts from the domain {domain!r} may not sign in to this organisation.",
                           reason="domain_not_allowed")


def _username_for(claims: dict[str, Any]) -> str:
    user_model = get_user_model()
    base = str(claims.get("preferred_username") or str(claims.get("email") or "").split("@")[0] or "sso-user")
    base = re.sub(r"[^\w.@+-]", "", base)[:120] or "sso-user"
    # Never reuse an existing username: a local account named like the IdP user is a different person.
    candidate = base
    while user_model.objects.filter(username=candidate).exists():
        candidate = f"{base}-{secrets.token_hex(3)}"
    return candidate


@dataclass(frozen=True)
class RoleChange:
    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def user_roles_sync(*, config: OIDCConfig, user: Any, claims: dict[str, Any], request: Any = None) -> RoleChange:
    """Make the user's SSO-managed roles match the groups claim.

    Only roles named in the tenant's mapping are managed: roles an admin granted by hand that no
    mapping mentions are left alone.
    """
    values = set(claim_values(claims, config.groups_claim))
    mappings = list(config.group_mappings.select_related("group"))
    managed = {m.group_id: m.group for m in mappings}
    wanted = {m.group_id for m in mappings if m.claim_value in values}
    current = set(user.groups.filter(pk__in=managed).values_list("pk", flat=True))
    to_add, to_remove = wanted - current, current - wanted
    if to_add:
        user.groups.add(*to_add)
    if to_remove:
        user.groups.remove(*to_remove)
    change = RoleChange(added=sorted(managed[g].name for g in to_add),
                        removed=sorted(managed[g].name for g in to_remove))
    if change.changed:
        access_audit("role_change", user=user, request=request,
                     metadata={"source": "sso", "issuer": config.issuer, "added": change.added,
                               "removed": change.removed, "target_user_id": user.pk})
    return change


def sso_user_resolve(*, config: OIDCConfig, claims: dict[str, Any], request: Any = None,
                     record_login: bool = True) -> Any:
    """The user for verified IdP claims, matched on (issuer, subject) and created on first sight.

    Email is never used to match: an IdP account with the same address as a local account is a
    different identity until an admin links them. Roles are synced from the groups claim.
    """
    _email_domain_check(config, claims)
    # The identity's keys are stored and matched as sent: one PostgreSQL cannot store (NUL, a lone surrogate) is
    # refused, not altered (altered, two subjects could become one account). Names are only shown: altered.
    for name in ("iss", "sub", "email"):
        value = claims.get(name)
        if isinstance(value, str) and stored_text(value) != value:
            raise LoginRefused(f"The identity provider's {name} claim holds a character Atrium cannot store (NUL or "
                               f"a lone surrogate); ask its administrator to correct it.", reason="unstorable_claim")
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    email = str(claims.get("email") or "")[:254]
    user_model = get_user_model()
    with transaction.atomic():
        identity = UserIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is None:
            try:
                with transaction.atomic():  # savepoint: a concurrent first request may win the insert
                    user = user_model.objects.create_user(
                        username=_username_for(claims),
                        email=email,
                        first_name=stored_text(str(claims.get("given_name") or ""))[:150],
                        last_name=stored_text(str(claims.get("family_name") or ""))[:150],
                    )
                    identity = UserIdentity.objects.create(user=user, issuer=issuer, subject=subject, email=email)
                    # An administrator may have invited this address: its roles apply to the new account.
                    from access.invitations import invitation_apply_for_sso

                    invitation_apply_for_sso(user=user, email=email,
                                             email_verified=claims.get("email_verified") is True)
            except IntegrityError:
                identity = UserIdentity.objects.select_related("user").get(issuer=issuer, subject=subject)
        user = identity.user
        if not user.is_active:
            raise LoginRefused("This account is deactivated in this organisation.", reason="inactive")
        # Write only what changed: bearer-token requests pass here on every API call.
        if email and user.email != email:
            user.email = email
            user.save(update_fields=["email"])
        changed = []
        if email and identity.email != email:
            identity.email = email
            changed.append("email")
        if record_login:
            identity.last_login_at = timezone.now()
            changed.append("last_login_at")
        if changed:
            identity.save(update_fields=changed)
        user_roles_sync(config=config, user=user, claims=claims, request=request)
    return user


# --- API keys ------------------------------------------------------------------------------------

# The pepper, derived once per process and again when a test changes the settings it comes from (Django's
# setting_changed): reading two settings and a cache keyed by them cost more than the hash itself.
_pepper: bytes | None = None


def _pepper_bytes() -> bytes:
    """The pepper (ATRIUM_API_KEY_PEPPER, else derived from SECRET_KEY), derived once: every API call hashes its
    key with it (audit.chain.mac_hex, whose keyed SHA-256 states are made once per key and copied per hash: 0.5 us
    against 1.3 us for a copied hmac.HMAC, its Python wrapper's)."""
    global _pepper
    pepper = _pepper
    if pepper is None:
        configured = str(getattr(settings, "ATRIUM_API_KEY_PEPPER", "") or "")
        # Derived, not SECRET_KEY itself, so the two secrets never appear in the same computation.
        pepper = _pepper = configured.encode() if configured else hmac.new(
            settings.SECRET_KEY.encode(), b"atrium-api-key-pepper", hashlib.sha256).digest()
    return pepper


@receiver(setting_changed)
def _pepper_changed(*, setting: str, **_kwargs: Any) -> None:
    global _pepper
    if setting in ("ATRIUM_API_KEY_PEPPER", "SECRET_KEY"):
        _pepper = None


def api_key_hash(raw_key: str) -> str:
    """Keyed hash of a whole key (HMAC-SHA-256 with the pepper). Keys carry 256 bits of entropy, so one HMAC is
    enough: a slow password hash would only slow every API call without making a random key harder to guess."""
    return mac_hex(_pepper_bytes(), raw_key.encode())


def api_key_create_check(*, user: User, expires_at: datetime | None) -> None:
    """Raise ValueError saying why a new key for `user` would be refused (forms call it to show the reason;
    api_key_create checks again)."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("expiry must be in the future")
    active = ApiKey.objects.filter(user=user, revoked_at__isnull=True).count()
    if active >= settings.ATRIUM_API_KEYS_PER_USER:
        raise ValueError(f"a user may hold at most {settings.ATRIUM_API_KEYS_PER_USER} active keys")


def api_key_create(*, user: User, name: str, expires_at: datetime | None = None, created_by: User | None = None,
                   request: HttpRequest | None = None) -> tuple[ApiKey, str]:
    """Create a key for `user`; returns (row, raw key). The raw key exists only in this return value."""
    name = name.strip()[:100] or "API key"
    api_key_create_check(user=user, expires_at=expires_at)
    for _attempt in range(5):
        prefix = secrets.token_hex(4)
        raw = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(user=user, name=name, prefix=prefix, secret_hash=api_key_hash(raw),
                                            expires_at=expires_at, created_by=created_by or user)
                access_audit("api_key_create", user=created_by or user, request=request,
                             metadata={"key_id": str(key.id), "prefix": prefix,
                                       "expires_at": expires_at.isoformat() if expires_at else None},
                             subject_id=user.pk)
            return key, raw
        except IntegrityError:
            continue  # prefix collision (1 in 4 billion): draw again
    raise RuntimeError("could not allocate a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey, revoked_by: User, request: HttpRequest | None = None) -> ApiKey:
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            access_audit("api_key_revoke", user=revoked_by, request=request,
                         metadata={"key_id": str(locked.id), "prefix": locked.prefix}, subject_id=locked.user_id)
    return locked


# (key row, user row, the user's permissions), per schema and key prefix; see config/tenant_cache.py.
_key_cache: TenantCache[KeyRows] = TenantCache("api_keys")


def user_rows(user_id: int) -> tuple[dict[str, Any], frozenset[str]]:
    """A user's row and permissions in one query (the bearer-token cache keeps them, access.authentication)."""
    found = user_rows_by_id(user_id)
    if found is None:
        raise AuthenticationFailed("the token's user no longer exists")
    return found


@functools.cache
def _user_model() -> Any:
    """The user model, fixed for the process (as access.queries.user_columns)."""
    return get_user_model()


@functools.cache
def _needs_init(model: type[Model]) -> bool:
    """Whether `model` must be built by its __init__: it has its own, or a pre_init or post_init receiver listens
    for it (asked once, after the apps are ready: Django and the apps connect their receivers at import)."""
    return (model.__init__ is not Model.__init__ or signals.pre_init.has_listeners(model)
            or signals.post_init.has_listeners(model))


def _loaded(model: type[M], row: dict[str, Any]) -> M:
    """What `model.from_db("default", <every column>, <row's values>)` builds, without Model.__init__'s per-field
    setattr and its two signals when nothing listens to them and the model has no __init__ of its own (a third of
    an API call's authentication): `row` maps every concrete field's attname to its value (access.queries)."""
    if _needs_init(model):
        return model.from_db("default", list(row), list(row.values()))
    instance = model.__new__(model)
    instance.__dict__.update(row)
    state = ModelState()
    state.db = "default"
    state.adding = False
    instance._state = state
    return instance


def user_from_rows(user_row: dict[str, Any], permissions: frozenset[str]) -> Any:
    """A user instance (permissions loaded) from user_rows' answer: a fresh object per call, never shared."""
    user = _loaded(_user_model(), user_row)
    user._perm_cache = set(permissions)
    return user


def _key_with_user(rows: KeyRows) -> ApiKey:
    """The key instance, its user (permissions loaded) attached, from the cached rows."""
    key = _loaded(ApiKey, rows.key)
    key._state.fields_cache["user"] = user_from_rows(rows.user, rows.permissions)  # what `key.user = user` stores
    return key


def _last_used_record(key_id: Any, prefix: str, schema: str, now: datetime) -> bool:
    """Record last use at most once per LAST_USED_WRITE_INTERVAL, so a busy key is not a row update per call; True
    when this call wrote it.

    Conditional update: concurrent requests in several processes still write at most once. The column sends no
    invalidation (it changes too often), so this process refreshes its own cached row, and does so before the
    write, under the cache's lock: the other requests of this process that saw the stale stamp at the same moment
    leave the write to the first (at a burst's start that was one UPDATE per request thread, each opening its own
    database connection for it). A failed write puts the cached stamp back, so a later call tries again.
    """
    claimed: list[datetime | None] = []  # the stamp this call replaced, when it took the write

    def stamped(rows: KeyRows) -> KeyRows:
        last = rows.key["last_used_at"]
        if last is not None and now - last < LAST_USED_WRITE_INTERVAL:
            return rows  # another request of this process has just taken the write
        claimed.append(last)
        return replace(rows, key={**rows.key, "last_used_at": now})

    if _key_cache.update(schema, prefix, stamped) and not claimed:
        return False
    try:
        ApiKey.objects.filter(pk=key_id).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_WRITE_INTERVAL)
        ).update(last_used_at=now)
    except BaseException:
        if claimed:
            def unstamped(rows: KeyRows) -> KeyRows:
                if rows.key["last_used_at"] != now:
                    return rows
                return replace(rows, key={**rows.key, "last_used_at": claimed[0]})

            _key_cache.update(schema, prefix, unstamped)
        raise
    return True


def _live_key_rows(raw_key: str, tenant_label: str, schema: str | None) -> tuple[KeyRows, datetime | None]:
    """The rows of the live key for a presented raw key (and when its last use was recorded now, if it was);
    raises AuthenticationFailed saying why not.

    The key's row, its user's and the permissions come from this process's cache, which the database empties when
    a key, a user, a role or a permission changes (config/tenant_cache.py), else from one query
    (access.queries.api_key_rows: the ORM's query building would cost more than the round trip). The checks below
    run on every call, on the cached rows as on fresh ones, and build no model instance.
    """
    raw_key = raw_key.strip()
    match = API_KEY_RE.match(raw_key)
    if match is None:
        raise AuthenticationFailed(f"malformed API key (tenant {tenant_label})")
    if schema is None:
        schema = connection.schema_name  # type: ignore[attr-defined]
    prefix = match.group(1)
    rows = _key_cache.get_or_load(schema, prefix, lambda: api_key_rows(prefix))
    # Compare even when no row exists so a missing prefix and a wrong secret take the same time.
    expected = rows.key["secret_hash"] if rows is not None else "0" * 64
    if not hmac.compare_digest(expected, api_key_hash(raw_key)) or rows is None:
        raise AuthenticationFailed(f"invalid API key (tenant {tenant_label})")
    key = rows.key
    now = datetime.now(UTC)  # timezone.now() without its read of settings.USE_TZ (always on: config/settings)
    if key["revoked_at"] is not None:
        raise AuthenticationFailed(f"API key {_loaded(ApiKey, key).display} was revoked (tenant {tenant_label})")
    if key["expires_at"] is not None and key["expires_at"] <= now:
        raise AuthenticationFailed(f"API key {_loaded(ApiKey, key).display} expired (tenant {tenant_label})")
    if not rows.user["is_active"]:
        raise AuthenticationFailed(f"the owner of API key {_loaded(ApiKey, key).display} is deactivated "
                                   f"(tenant {tenant_label})")
    if (key["last_used_at"] is None or now - key["last_used_at"] >= LAST_USED_WRITE_INTERVAL) and _last_used_record(
            key["id"], key["prefix"], schema, now):
        return rows, now
    return rows, None


def api_key_authenticate(*, raw_key: str, tenant_label: str, schema: str | None = None) -> ApiKey:
    """The live key for a presented raw key, its user attached; raises AuthenticationFailed saying why not.
    `schema`: the connection's schema, when the caller has it at hand (see `_live_key_rows`)."""
    rows, used_now = _live_key_rows(raw_key, tenant_label, schema)
    key = _key_with_user(rows)
    if used_now is not None:
        key.last_used_at = used_now
    return key


def api_key_user(*, raw_key: str, tenant_label: str, schema: str | None = None) -> tuple[Any, str, str]:
    """What an API call needs of a live key: (its user, permissions loaded; the key's id; its prefix), without
    building the key's instance; raises AuthenticationFailed as `api_key_authenticate`."""
    rows, _used_now = _live_key_rows(raw_key, tenant_label, schema)
    return user_from_rows(rows.user, rows.permissions), str(rows.key["id"]), rows.key["prefix"]

