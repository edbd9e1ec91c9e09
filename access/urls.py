"""Access URLs on each tenant's domain: SSO (oidc/) and the user's API keys (account/keys/)."""

from django.urls import URLPattern, URLResolver, include, path

from access import api, invitation_views, mfa_views, passkeys, sso, views

urlpatterns: list[URLPattern | URLResolver] = [
    # Names match mozilla-django-oidc's, which its views reverse.
    path("oidc/authenticate/", sso.TenantOIDCAuthenticationRequestView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.TenantOIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("oidc/logout/", sso.TenantOIDCLogoutView.as_view(), name="oidc_logout"),
    path("accounts/invitation/<uuid:invitation_id>/<str:token>/", invitation_views.invitation_accept_view,
         name="invitation_accept"),
    path("account/keys/", views.account_keys, name="account_keys"),
    path("account/mfa/setup/", mfa_views.mfa_setup, name="mfa_setup"),
    path("account/mfa/verify/", mfa_views.mfa_verify, name="mfa_verify"),
    path("account/mfa/passkey/", include(passkeys)),  # WebAuthn ceremonies (namespace otp_webauthn)
    path("api/access/me/", api.MeApi.as_view(), name="access_me"),
]
