// A certified OpenID provider (panva's oidc-provider) on loopback, for the gateway's interop tests.
//
//   node provider.mjs <port>          (or PROVIDER_PORT=<port>)
//   PROVIDER_REDIRECT_URIS            comma list: the client's redirect_uris (required)
//   PROVIDER_POST_LOGOUT_REDIRECT_URIS  comma list; default: the origin of each redirect URI plus "/login"
//   PROVIDER_CLIENT_SECRET            default "gateway-secret" (try one with "+", "%" or ":" to test encoding)
//   PROVIDER_ACCESS_TOKEN_FORMAT      "jwt" (default) or "opaque": the access tokens for resource urn:gateway
//   PROVIDER_ACCESS_TOKEN_TTL         seconds, default 600: the life of every access token (client
//                                     credentials ones included); a few seconds to watch tokens expire
//   PROVIDER_BACKCHANNEL_LOGOUT_URI   the client's backchannel_logout_uri (optional): when the user's session
//                                     ends at the provider (GET /session/end, then confirm), it posts a
//                                     logout token with `sid` there (OpenID Connect Back-Channel Logout 1.0)
//
// Prints exactly one line "ready <issuer>" on stdout once it listens; everything else goes to stderr.
// State lives in memory only (oidc-provider's default adapter): every run starts empty.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

// RFC 8707 resource indicators the provider knows, and the access tokens they get. Both have audience
// urn:gateway. oidc-provider does not introspect JWT access tokens (active: false) and cannot revoke them
// (200, but they stay valid until they expire), so an opaque twin is what an introspection validator with an
// expected audience, or a revocation test, can use. A gateway asks for its AUDIENCE itself when it signs a
// user in (resource=urn:gateway): PROVIDER_ACCESS_TOKEN_FORMAT=opaque makes those tokens opaque too, as a
// provider set up for introspection would issue them.
const AUDIENCE = 'urn:gateway';
const JWT_FORMAT = { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
const OPAQUE_FORMAT = { accessTokenFormat: 'opaque' };
const FORMATS = { jwt: JWT_FORMAT, opaque: OPAQUE_FORMAT };
const gatewayFormat = process.env.PROVIDER_ACCESS_TOKEN_FORMAT || 'jwt';
if (!Object.hasOwn(FORMATS, gatewayFormat)) {
  fail(`PROVIDER_ACCESS_TOKEN_FORMAT must be "jwt" or "opaque", not ${JSON.stringify(gatewayFormat)}`);
}
const RESOURCE_SERVERS = {
  'urn:gateway': FORMATS[gatewayFormat],
  'urn:gateway:opaque': OPAQUE_FORMAT,
};
const accessTokenTTL = Number(process.env.PROVIDER_ACCESS_TOKEN_TTL || 10 * 60);
if (!Number.isInteger(accessTokenTTL) || accessTokenTTL <= 0) {
  fail('PROVIDER_ACCESS_TOKEN_TTL must be a whole number of seconds above 0');
}
const RESOURCE_SCOPE = 'chat'; // the one scope a token for those resources may carry

function commaList(value) {
  return (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
}

const port = Number(process.argv[2] ?? process.env.PROVIDER_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('give the port as the first argument or PROVIDER_PORT');
}
const redirectUris = commaList(process.env.PROVIDER_REDIRECT_URIS);
const backchannelLogoutUri = process.env.PROVIDER_BACKCHANNEL_LOGOUT_URI || undefined;
if (redirectUris.length === 0) {
  fail('set PROVIDER_REDIRECT_URIS to a comma list of the client\'s redirect URIs');
}
const postLogoutRedirectUris = commaList(process.env.PROVIDER_POST_LOGOUT_REDIRECT_URIS);
if (postLogoutRedirectUris.length === 0) {
  for (const uri of redirectUris) postLogoutRedirectUris.push(`${new URL(uri).origin}/login`);
}

// A plain-http issuer is accepted as is (the constructor only asks for a web URI). What plain http changes
// is the cookies (see `cookies` below); the proxy warnings in lib/helpers/initialize_app.js only fire for
// https issuers.
const issuer = `http://127.0.0.1:${port}`;

// A fresh signing key per run: ID tokens and JWT access tokens are RS256 under it, published at jwks_uri.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `rs256-${randomBytes(4).toString('hex')}`,
  use: 'sig', alg: 'RS256' };

function titleCase(id) {
  return id.charAt(0).toUpperCase() + id.slice(1);
}

function claimsFor(id) {
  return {
    sub: id,
    name: titleCase(id),
    preferred_username: id,
    email: `${id}@example.com`,
    email_verified: true,
  };
}

const configuration = {
  clients: [{
    client_id: 'gateway',
    client_secret: process.env.PROVIDER_CLIENT_SECRET || 'gateway-secret',
    // oidc-provider registers one method per client, but accepts client_secret_basic and client_secret_post
    // interchangeably for either of them (lib/shared/token_auth.js): both work for this client.
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: redirectUris, // http on 127.0.0.1 is fine for a "web" client using the code flow
    post_logout_redirect_uris: postLogoutRedirectUris,
    // With session_required, ID tokens carry `sid` and so do logout tokens (v8 leaves out nothing else).
    ...(backchannelLogoutUri ? { backchannel_logout_uri: backchannelLogoutUri,
      backchannel_logout_session_required: true } : {}),
  }],
  jwks: { keys: [signingKey] },
  cookies: {
    // Signed cookies (keygrip), as the docs recommend; a per-run key is enough for a test bed.
    keys: [randomBytes(32).toString('base64url')],
    // Plain http on loopback: oidc-provider marks a cookie `Secure` only when the request is (ctx.secure),
    // but v8's long-lived session cookie (`_session`) defaults to SameSite=None, which browsers drop unless
    // it is Secure; v8 then falls back on a second `_session.legacy` copy without SameSite. Lax is what the
    // code flow needs (the provider's cookies are only read on top-level navigations to it) and works on
    // http, so both kinds are Lax here. (v9 made Lax the default for both.)
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  async findAccount(_ctx, id) {
    return { accountId: id, async claims() { return claimsFor(id); } };
  },
  // The name and email ride along in JWT access tokens and introspection answers, so a resource server
  // can name the user without calling userinfo (Keycloak and Entra put such claims in access tokens too).
  async extraTokenClaims(_ctx, token) {
    if (!token.accountId) return undefined; // client-credentials tokens have no user
    const { name, preferred_username: preferredUsername, email } = claimsFor(token.accountId);
    return { name, preferred_username: preferredUsername, email };
  },
  // Like most providers, a refresh token whenever the client may use one (oidc-provider's default asks for
  // the offline_access scope, which in turn needs prompt=consent).
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  pkce: {
    // Required for every client, confidential ones included (the default asks it of public clients only).
    methods: ['S256'],
    required: () => true,
  },
  features: {
    devInteractions: { enabled: true }, // the built-in login (any login, any password) and consent pages
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    // v8 makes its outgoing requests with got and no SSRF guard, so a gateway on 127.0.0.1 receives them
    // (v9 refuses special-use addresses unless configured with a `fetch` of its own). v8 has no
    // front-channel logout: that one is tested against a mocked provider.
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No default resource: a request without `resource` gets an opaque access token with no audience,
      // the only kind oidc-provider's userinfo endpoint accepts ("token audience prevents accessing the
      // userinfo endpoint"). A request with resource=urn:gateway gets a JWT (RFC 9068, typ at+jwt).
      defaultResource: async () => undefined,
      // A code grant for a resource yields its token even when the token request repeats no `resource`.
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (!Object.hasOwn(RESOURCE_SERVERS, resourceIndicator)) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return { audience: AUDIENCE, scope: RESOURCE_SCOPE, accessTokenTTL,
          ...RESOURCE_SERVERS[resourceIndicator] };
      },
    },
  },
  ttl: {
    // Fixed numbers win over a resource server's accessTokenTTL: both say the same here.
    AccessToken: accessTokenTTL,
    AuthorizationCode: 60,
    ClientCredentials: accessTokenTTL,
    IdToken: 10 * 60,
    RefreshToken: 24 * 60 * 60,
    Interaction: 10 * 60,
    Session: 60 * 60,
    Grant: 24 * 60 * 60,
  },
};

const provider = new Provider(issuer, configuration);
// No reverse proxy in front: `proxy` stays false, so X-Forwarded-* headers are ignored. (Behind a TLS
// terminator one sets `provider.proxy = true` so ctx.secure, and with it the cookies, follow the proxy.)
provider.proxy = false;

provider.on('server_error', (_ctx, error) => process.stderr.write(`server_error: ${error.stack}\n`));
provider.on('backchannel.error', (_ctx, error, client) => process.stderr.write(
  `backchannel.error (${client.clientId}): ${error.message}\n`));

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // keep-alive clients must not hold the exit up
  });
}
