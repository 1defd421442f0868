// Names the organisation's provider vouches for, end to end (OpenPubkey,
// docs/security.md §15 and docs/protocol.md §13).
//
// Before a provider sign-in the page makes the MLS signature key pair it will
// join with (in the wasm module) and a random rz, and asks the provider for a
// token whose nonce commits to them (`?key_nonce=`). Across the redirect the
// key waits in this tab's sessionStorage: the choice is the simplest store
// that survives a same-tab navigation and dies with the tab; script on this
// origin can read it, as it can drive the MLS member anyway (a sealed copy
// under a non-extractable WebCrypto key would stop a copy of storage, not a
// script). The server hands the provider's ID token back in a cookie the page
// reads; the meeting page then joins with that key and puts token and rz in
// its leaf. The key is used for one member only (two leaves may not share a
// key): a reload or a second tab joins with a fresh key and shows "name from
// the server".

const KEY_STORE = 'conclave.leafKey';
const TOKEN_COOKIE = 'conclave_leaf_token';

const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function loadWasm() {
  const mod = await import('/e2ee/conclave_e2ee.js');
  await mod.default();
  return mod;
}

/**
 * The provider's start URL with this tab's commitment to a fresh MLS key;
 * the plain URL when the module or storage is not there (the sign-in then
 * works as before, without a verified name).
 */
export async function keyBoundStartUrl(startUrl) {
  try {
    const wasm = await loadWasm();
    const { secret, public: pub } = wasm.newSigningKey();
    const rz = crypto.getRandomValues(new Uint8Array(32));
    const nonce = wasm.keyNonce(pub, rz);
    sessionStorage.setItem(KEY_STORE, JSON.stringify({ secret: b64(secret), public: b64(pub), rz: b64(rz), nonce }));
    const url = new URL(startUrl, location.href);
    url.searchParams.set('key_nonce', nonce);
    return url.pathname + url.search;
  } catch (err) {
    console.warn('signing in without a key binding:', err);
    return startUrl;
  }
}

function cookie(name) {
  const hit = document.cookie.split('; ').find((c) => c.startsWith(`${name}=`));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : null;
}

/** The nonce claim of a compact JWS, read without trusting it (members check it). */
function tokenNonce(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload + '='.repeat((4 - (payload.length % 4)) % 4))).nonce ?? null;
  } catch {
    return null;
  }
}

/**
 * The MLS member for participant `id`: with this tab's bound key and the
 * provider's token when both are here and match, else a plain one.
 */
export function leafMember(wasm, id) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY_STORE) || 'null');
    const token = cookie(TOKEN_COOKIE);
    if (stored && token && tokenNonce(token) === stored.nonce) {
      sessionStorage.removeItem(KEY_STORE);
      return wasm.Member.withSigningKey(id, unb64(stored.secret), unb64(stored.public), token, unb64(stored.rz));
    }
  } catch (err) {
    console.warn('joining without a key binding:', err);
  }
  return new wasm.Member(id);
}

// The trust list is pinned by this browser (trust on first use), not taken
// from the server each time: the first provider list a page of this origin
// sees is kept in localStorage (issuer, client id, name). Later, a provider
// the server names that is not pinned is not trusted (its members' names
// are not "verified"), and the Security panel offers to trust it by hand; a
// provider the server no longer names stays pinned. So a modified server
// cannot add an issuer of its own without the user seeing it
// (docs/security.md §15, the trust list).
const PIN_STORE = 'conclave.trustedProviders';

function readPins() {
  try {
    const pins = JSON.parse(localStorage.getItem(PIN_STORE) || 'null');
    return Array.isArray(pins) ? pins.filter((p) => p && typeof p.issuer === 'string' && typeof p.clientId === 'string') : null;
  } catch {
    return null;
  }
}

function writePins(pins) {
  try {
    localStorage.setItem(PIN_STORE, JSON.stringify(pins));
  } catch (err) {
    console.warn('cannot keep the trusted providers:', err);
  }
}

const samePin = (a, b) => a.issuer.replace(/\/$/, '') === b.issuer.replace(/\/$/, '') && a.clientId === b.clientId;

/** The host of an issuer URL, as shown beside its name. */
export function issuerHost(issuer) {
  try {
    return new URL(issuer).host;
  } catch {
    return issuer;
  }
}

async function fetchKeys(p) {
  const meta = await (await fetch(`${p.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { credentials: 'omit' })).json();
  if (meta.issuer !== p.issuer || !meta.jwks_uri) throw new Error('discovery names another issuer, or no keys');
  return (await fetch(meta.jwks_uri, { credentials: 'omit' })).json();
}

/**
 * `{trusted, unpinned}`: the pinned providers, each with its keys fetched
 * from the provider itself (discovery, then jwks_uri), never through
 * Conclave; and the server's providers this browser has not pinned.
 */
let providersPromise = null;
const changed = new Set();

function providerState() {
  if (!providersPromise) {
    providersPromise = (async () => {
      const res = await fetch('/api/v1/auth/methods', { credentials: 'same-origin' });
      if (!res.ok) return { trusted: [], unpinned: [] };
      const { providers = [] } = await res.json();
      const listed = providers
        .filter((p) => p.issuer && p.client_id)
        .map((p) => ({ name: p.name, issuer: p.issuer, clientId: p.client_id }));
      let pins = readPins();
      if (!pins) {
        pins = listed;
        writePins(pins);
      }
      const unpinned = listed.filter((p) => !pins.some((q) => samePin(p, q)));
      const trusted = [];
      for (const p of pins) {
        try {
          trusted.push({ name: p.name, issuer: p.issuer, clientId: p.clientId, jwks: await fetchKeys(p) });
        } catch (err) {
          console.warn(`cannot fetch the keys of ${p.name}:`, err);
        }
      }
      return { trusted, unpinned };
    })().catch(() => ({ trusted: [], unpinned: [] }));
  }
  return providersPromise;
}

/** The providers whose word this page takes for names (see providerState). */
export async function trustedProviders() {
  return (await providerState()).trusted;
}

/** The server's providers this browser has not pinned: `[{name, issuer, clientId}]`. */
export async function unpinnedProviders() {
  return (await providerState()).unpinned;
}

/** Calls `fn` when the user trusts another provider. */
export function onProvidersChanged(fn) {
  changed.add(fn);
  return () => changed.delete(fn);
}

/**
 * The user trusts a provider the server names that was not pinned: it joins
 * the pinned list, and the names are checked again.
 */
export async function trustProvider(issuer) {
  const { unpinned } = await providerState();
  const p = unpinned.find((u) => u.issuer === issuer);
  if (!p) return;
  const pins = readPins() || [];
  if (!pins.some((q) => samePin(p, q))) writePins([...pins, p]);
  providersPromise = null;
  for (const fn of changed) fn();
}
