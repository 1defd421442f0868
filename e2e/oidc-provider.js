// A real OpenID Connect provider for the tests: the npm package
// oidc-provider (OpenID Certified) on loopback, with one registered client
// and its development login form (any login name signs in as that subject;
// `users` gives some of them an email, a name and groups, the last under
// the scope and claim `groups`).

import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { freeTcpPort } from './harness.js';

/**
 * Starts a provider at http://localhost:PORT; resolves to {issuer, stop(),
 * setEmail(sub, email)}. `redirectUris` are the client's registered callbacks,
 * `postLogoutRedirectUris` where RP-initiated logout may send the browser back.
 */
export async function startProvider({ clientId, clientSecret, redirectUris, postLogoutRedirectUris = [], users = {}, idTokenClaims = false }) {
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
  // Its warnings about development settings are expected here.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider:', err));
  const server = provider.listen(port);
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    issuer,
    setEmail(sub, email) {
      users[sub] = { ...(users[sub] || {}), email };
    },
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
