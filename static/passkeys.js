// After a passkey is registered (django-otp-webauthn's register script fires this event), go where the user
// was going; the server already checked that "next" stays on this host (access/mfa_views.py).
document.addEventListener("otp_webauthn.register_complete", () => {
  const next = document.querySelector("input[name='next']");
  window.location.assign(next && next.value ? next.value : "/");
});
