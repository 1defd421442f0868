// A real OpenID Connect provider for the tests: the npm package
// oidc-provider (OpenID Certified) on loopback, with one registered client
// and its development login form (any login name signs in as that subject;
// `users` gives some of them an email, a name and groups, the last under
// the scope and claim `groups`).

import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';
import { freeTcpPort } from './harness.js';

/**
 * Starts a provider at http://localhost:PORT; resolves to {issuer, stop(),
 * setEmail(sub, email)}. `redirectUris` are the client's registered callbacks,
 * `postLogoutRedirectUris` where RP-initiated logout may send the browser back.
 * `keysElsewhere`: its JWK Set is served from another origin
 * (http://127.0.0.1:OTHER/jwks, with CORS) and its discovery document names
 * that `jwks_uri`, as Google's does (www.googleapis.com); `keysOrigin` is then
 * that origin.
 */
export async function startProvider({ clientId, clientSecret, redirectUris, postLogoutRedirectUris = [], users = {}, idTokenClaims = false, keysElsewhere = false }) {
  const port = await freeTcpPort();
  const issuer = `http://localhost:${port}`;
  const key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      post_logout_redirect_uris: postLogoutRedirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    jwks: { keys: [{ ...key, kid: 'test-1', use: 'sig', alg: 'RS256' }] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          const u = users[sub] || {};
          return { sub, email: u.email, email_verified: Boolean(u.email), name: u.name, preferred_username: sub, groups: u.groups || [] };
        },
      };
    },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
    // `idTokenClaims`: name and email in the ID token itself, as Entra ID,
    // Google and Keycloak put them (what a member's verified name reads).
    conformIdTokenClaims: !idTokenClaims,
    features: { devInteractions: { enabled: true } },
  });
  let keys = null;
  let keysOrigin = null;
  if (keysElsewhere) {
    const keysPort = await freeTcpPort();
    keysOrigin = `http://127.0.0.1:${keysPort}`;
    // The provider's own JWK Set, passed on from another origin.
    keys = http.createServer(async (req, res) => {
      try {
        const body = await (await fetch(`${issuer}/jwks`)).text();
        res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
        res.end(body);
      } catch {
        res.writeHead(502);
        res.end();
      }
    });
    keys.listen(keysPort, '127.0.0.1');
    await new Promise((resolve) => keys.once('listening', resolve));
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.path === '/.well-known/openid-configuration' && ctx.body) ctx.body.jwks_uri = `${keysOrigin}/jwks`;
    });
  }
  // Its warnings about development settings are expected here.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
  const server = provider.listen(port);
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    issuer,
    keysOrigin,
    setEmail(sub, email) {
      users[sub] = { ...(users[sub] || {}), email };
    },
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
      if (keys) {
        keys.closeAllConnections?.();
        await new Promise((resolve) => keys.close(resolve));
      }
    },
  };
}
