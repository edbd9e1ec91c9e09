// Loopback OpenID Connect providers for Atrium's access tests (tests/access/conftest.py starts this).
//
// One node process serves several independent providers, one per port, each with its own issuer,
// signing keys, static client and users, so two tenants can trust two different IdPs.
//
// Config comes as JSON in the IDP_CONFIG environment variable:
//   {"providers": [{"name": "a", "port": 4001,
//                   "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": [...],
//                                "post_logout_redirect_uris": [...]}],
//                   "users": {"alice": {"email": "...", "groups": ["..."], ...}}}]}
//
// Besides the standard OIDC endpoints each provider offers test-only routes:
//   POST /test/mint   {"claims": {...}, "alg": "RS256"|"ES256", "header": {...}}  -> {"token": "..."}
//                     signs arbitrary claims with the provider's own keys (iss and iat filled in when absent),
//                     so tests can make expired, not-yet-valid or wrong-audience tokens that are genuinely signed.
//   GET  /test/stats  -> {"jwks": n, "discovery": n}: how often Atrium fetched the key set and discovery document.
//   POST /test/stats/reset
// When every provider listens it prints one line: READY {"a": "http://127.0.0.1:4001", ...}
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.IDP_CONFIG || '{"providers": []}');

async function signingKeys(name) {
  const keys = [];
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = await exportJWK(privateKey);
    keys.push({ ...jwk, alg, use: 'sig', kid: `${name}-${alg.toLowerCase()}-1` });
  }
  return keys;
}

function readJson(ctx) {
  return new Promise((resolve, reject) => {
    let body = '';
    ctx.req.setEncoding('utf8');
    ctx.req.on('data', (chunk) => { body += chunk; });
    ctx.req.on('end', () => {
      try { resolve(body ? JSON.parse(body) : {}); } catch (err) { reject(err); }
    });
    ctx.req.on('error', reject);
  });
}

async function startProvider(spec) {
  const issuer = `http://127.0.0.1:${spec.port}`;
  const keys = await signingKeys(spec.name);
  const users = spec.users || {};
  const stats = { jwks: 0, discovery: 0 };

  const provider = new Provider(issuer, {
    clients: spec.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris || [],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    jwks: { keys },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Put the profile claims in the ID token too; Atrium also reads the userinfo endpoint.
    conformIdTokenClaims: false,
    // Every client must use PKCE, so a flow without it fails the tests.
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    cookies: {
      // Both providers live on 127.0.0.1; distinct names keep their browser sessions apart.
      names: { session: `_session_${spec.name}`, interaction: `_interaction_${spec.name}`,
               resume: `_interaction_resume_${spec.name}` },
      keys: [`cookie-key-${spec.name}-not-secret`],
    },
    // Test IdP: grant the requested scopes without a consent screen.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
    async findAccount(_ctx, id) {
      const user = users[id];
      if (!user) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...user }; } };
    },
  });
  provider.proxy = false;

  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') stats.jwks += 1;
    if (ctx.path === '/.well-known/openid-configuration') stats.discovery += 1;
    if (ctx.path === '/test/stats' && ctx.method === 'GET') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/test/stats/reset' && ctx.method === 'POST') {
      stats.jwks = 0;
      stats.discovery = 0;
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/test/mint' && ctx.method === 'POST') {
      const body = await readJson(ctx);
      const alg = body.alg || 'RS256';
      const jwk = keys.find((k) => k.alg === alg);
      if (!jwk) {
        ctx.status = 400;
        ctx.body = { error: `no key for ${alg}` };
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      const claims = { iss: issuer, iat: now, exp: now + 300, ...(body.claims || {}) };
      // Claims explicitly set to null are removed (e.g. a token without exp).
      for (const [k, v] of Object.entries(claims)) if (v === null) delete claims[k];
      const { importJWK } = await import('jose');
      const key = await importJWK(jwk, alg);
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg, kid: jwk.kid, typ: 'JWT', ...(body.header || {}) })
        .sign(key);
      ctx.body = { token };
      return;
    }
    await next();
  });

  await new Promise((resolve, reject) => {
    const server = provider.listen(spec.port, '127.0.0.1', resolve);
    server.on('error', reject);
  });
  return [spec.name, issuer];
}

const started = await Promise.all(config.providers.map(startProvider));
process.stdout.write(`READY ${JSON.stringify(Object.fromEntries(started))}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
