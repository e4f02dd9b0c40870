// A real OpenID provider for the tests: oidc-provider (panva/node-oidc-provider 9) on
// 127.0.0.1 with a plain-HTTP issuer, the accounts and clients of one test, short TTLs, a
// server-rendered login and consent that a test drives over HTTP, and a loopback-only
// admin endpoint that rotates the signing keys. It lives here, beside node_modules, so
// that Node finds oidc-provider. Needs Node 22 (tests/peers/node_modules/.bin/node).
//
//   node provider.mjs --config FILE [--port N]     (or OIDC_PORT=N; 0, the default, picks
//                                                   a free port)
//        [--host ADDR --tls-cert FILE --tls-key FILE --issuer https://NAME]
//                                                   an https issuer on ADDR (a vendor in a
//                                                   test's network namespace), instead of
//                                                   plain http on 127.0.0.1
//
// Prints exactly one line on stdout, `ready http://127.0.0.1:<port>`, once it listens;
// everything else (oidc-provider's notices included) goes to stderr. Passwords and
// secrets are never logged.
//
// The config file (JSON), written by tests/support/oidc.py:
//   clients:  oidc-provider client metadata: client_id, client_secret (confidential),
//             redirect_uris, post_logout_redirect_uris, token_endpoint_auth_method
//             ('none' for a public client, 'client_secret_basic'), grant_types,
//             response_types, id_token_signed_response_alg (RS256 or ES256)
//   accounts: {sub, password, email, email_verified, name, groups: [..], roles: {..}};
//             the login form accepts the sub or the email as the login
//   ttl:      seconds for AccessToken, IdToken, AuthorizationCode, Session, Interaction,
//             Grant, RefreshToken
//   scopes:   optional, scope -> [claims]; the defaults are below (SCOPES)
//   resources: optional, the API resources of RFC 8707, as a vendor's authorization
//             server has them: indicator -> {scope: "a b", ttl: seconds}. With any,
//             resource indicators are on: an authorization request or token request
//             naming one gets a JWT access token whose audience is it (signed with the
//             provider's keys, so the API can check it with the JWKS); a refresh that
//             does not name it again gets a token for no resource (useGrantedResource
//             is false, as by default), which such an API refuses.
//   dynamic_registration: optional, true: RFC 7591 registration is open (a client that
//             registers itself gets a client id and secret), as MCP servers' authorization
//             servers often have it
//   client_id_metadata_documents: optional, true: a client id that is an https URL is
//             read from that URL (OAuth Client ID Metadata Document, draft 02), as MCP
//             servers' authorization servers take them. oidc-provider refuses to fetch
//             from special-use addresses (loopback, private ranges); in a test's world
//             the client's public URL is on loopback, so this vendor is configured to
//             fetch without that check (its `fetch` hook), trusting NODE_EXTRA_CA_CERTS
//   rotate_refresh_tokens: optional, true: every refresh answers a new refresh token
//             and the old one is spent (its reuse revokes the grant, as oidc-provider
//             does)
//
// Plain http: oidc-provider takes an http:// issuer as it is (there is no dev switch to
// set in 9.x); it only marks cookies `secure` when the request came over TLS, so over
// http they are plain cookies, which is what a test client on loopback needs. Redirect
// URIs of web clients may be http too for the code flow (only implicit web clients must
// use https).
//
// Interaction (devInteractions is off; this is the replacement):
//   GET  /interaction/<uid>          a login page (prompt login) or a consent page
//                                    (prompt consent), each one <form method="post">
//   POST /interaction/<uid>/login    login, password (+ the hidden csrf field); a wrong
//                                    pair shows the login form again with an error, 200
//   POST /interaction/<uid>/confirm  grants exactly the scopes and claims the client asked
//                                    for (the consent page's first form, id="consent")
//   POST /interaction/<uid>/abort    refuses (the second form, id="deny"): the client gets
//                                    error=access_denied
// Consent is a real second step, asked once per account and client; a later sign-in in
// the same browser session (cookie) goes straight back to the client.
//
// Claims: scope -> claims (SCOPES) and conformIdTokenClaims: false, so every claim the
// granted scopes allow is put in the ID token as well as served by userinfo (by default
// oidc-provider keeps scope claims out of the ID token whenever an access token is issued
// too, as in the code flow).
//
// Keys: an RS256 and an ES256 key are generated at start. POST /__test/rotate (loopback
// only; ?drop_old=1 to forget the old keys) generates a new pair and puts it FIRST in the
// JWKS, so new ID tokens carry a new kid; without drop_old the old public keys stay in
// the JWKS. oidc-provider reads its keys once, when it is built, so a rotation builds a
// new Provider instance with the same configuration and the new key list and hands it
// the next requests; sessions, grants, codes and interactions live in oidc-provider's
// in-memory adapter, which is one store per process, so they survive the swap.
import { createHash, createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { parseArgs } from "node:util";

import Provider, { errors } from "oidc-provider";

const ZITADEL_ROLES = "urn:zitadel:iam:org:project:roles";
const SCOPES = {
  openid: ["sub"],
  email: ["email", "email_verified"],
  profile: ["name"],
  groups: ["groups"],
  roles: [ZITADEL_ROLES],
  // Zitadel's own scope for "all project roles of the user".
  "urn:zitadel:iam:org:projects:roles": [ZITADEL_ROLES],
};
const TTL = {
  AccessToken: 300,
  IdToken: 300,
  AuthorizationCode: 60,
  Session: 600,
  Interaction: 300,
  Grant: 600,
  RefreshToken: 600,
};
const MAX_FORM = 64 * 1024;

// oidc-provider prints its notices with console.info: keep stdout for the ready line.
console.info = console.error;
console.log = console.error;
const log = (message) => process.stderr.write(`oidc-peer: ${message}\n`);

const { values: args } = parseArgs({
  options: {
    config: { type: "string" }, port: { type: "string" }, host: { type: "string" },
    "tls-cert": { type: "string" }, "tls-key": { type: "string" }, issuer: { type: "string" },
  },
});
if (!args.config) {
  log("usage: provider.mjs --config FILE [--port N]");
  process.exit(2);
}
const config = JSON.parse(readFileSync(args.config, "utf8"));
const port = Number(args.port ?? process.env.OIDC_PORT ?? 0);
const accounts = new Map((config.accounts ?? []).map((a) => [a.sub, a]));
const ttl = { ...TTL, ...(config.ttl ?? {}) };
// A resource's own lifetime wins for its access tokens (a number would override the
// resource server's accessTokenTTL, which oidc-provider reads only through a function).
const accessTTL = ttl.AccessToken;
ttl.AccessToken = (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTTL;
const scopes = config.scopes ?? SCOPES;
const resources = config.resources ?? {};
// One secret per process: cookie signing and the login forms' csrf field. It must outlive
// a key rotation (the new Provider instance reads cookies signed by the old one).
const secret = randomBytes(32);

// --- keys ---------------------------------------------------------------------------
let generation = 0;
function newSigningKeys() {
  generation += 1;
  const tag = randomBytes(4).toString("hex");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  return [
    { ...rsa.export({ format: "jwk" }), kid: `rs256-${generation}-${tag}`, alg: "RS256", use: "sig" },
    { ...ec.export({ format: "jwk" }), kid: `es256-${generation}-${tag}`, alg: "ES256", use: "sig" },
  ];
}
// oidc-provider signs with the first key that fits the algorithm: the newest come first.
let signingKeys = newSigningKeys();

// --- accounts -----------------------------------------------------------------------
function claimsOf(account) {
  const claims = { sub: account.sub };
  for (const name of ["email", "email_verified", "name", "groups"]) {
    if (account[name] !== undefined && account[name] !== null) claims[name] = account[name];
  }
  if (account.roles) claims[ZITADEL_ROLES] = account.roles;
  return claims;
}

function findByLogin(login) {
  for (const account of accounts.values()) {
    if (login === account.sub || (account.email && login === account.email)) return account;
  }
  return undefined;
}

function samePassword(given, expected) {
  const a = createHash("sha256").update(String(given)).digest();
  const b = createHash("sha256").update(String(expected)).digest();
  return a.equals(b);
}

// --- the provider ---------------------------------------------------------------------
function build() {
  const provider = new Provider(issuer, {
    clients: config.clients ?? [],
    jwks: { keys: signingKeys },
    cookies: { keys: [secret.toString("base64url")] },
    claims: { acr: null, sid: null, auth_time: null, iss: null, ...scopes },
    conformIdTokenClaims: false,
    ttl,
    pkce: {
      // The default policy, kept explicit: PKCE (S256, the only method 9.x knows) is
      // required of public clients; confidential clients may use it.
      required: (_ctx, client) => client.clientAuthMethod === "none",
    },
    rotateRefreshToken: config.rotate_refresh_tokens === true,
    features: {
      resourceIndicators: {
        enabled: Object.keys(resources).length > 0,
        defaultResource: (_ctx, _client, oneOf) => (oneOf ? oneOf : undefined),
        useGrantedResource: () => false,
        getResourceServerInfo(_ctx, indicator) {
          const info = resources[indicator];
          if (!info) throw new errors.InvalidTarget();
          return {
            scope: info.scope,
            audience: indicator,
            accessTokenTTL: info.ttl ?? accessTTL,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource },
      revocation: { enabled: true },
      registration: { enabled: config.dynamic_registration === true },
      clientIdMetadataDocument: {
        enabled: config.client_id_metadata_documents === true,
        ack: "draft-02",
      },
    },
    // The client metadata documents' fetch (module comment: a test's world keeps the
    // client on loopback; every other fetch of this vendor is the default one).
    fetch: (url, options) => {
      if (config.client_id_metadata_documents === true) delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = accounts.get(sub);
      if (!account) return undefined;
      return { accountId: sub, claims: async () => claimsOf(account) };
    },
    async renderError(ctx, out) {
      ctx.type = "html";
      ctx.body = page("Error", `<h1>Error</h1>${Object.entries(out)
        .map(([k, v]) => `<p id="${esc(k)}">${esc(k)}: ${esc(v)}</p>`).join("")}`);
    },
  });
  for (const event of [
    "server_error", "authorization.error", "grant.error", "end_session.error",
    "userinfo.error", "introspection.error", "revocation.error", "jwks.error",
  ]) {
    provider.on(event, (...rest) => {
      const err = rest.find((x) => x instanceof Error);
      const detail = err ? `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ""}` : "";
      log(`${event} ${detail}`);
    });
  }
  provider.on("grant.success", (ctx) =>
    log(`token issued to ${ctx.oidc.client?.clientId} (${ctx.oidc.params?.grant_type})`));
  provider.on("grant.revoked", (_ctx, grantId) => log(`grant revoked ${grantId}`));
  return { provider, handle: provider.callback() };
}

// RP-initiated logout: oidc-provider's form (hidden xsrf) plus logout=yes and one submit
// button inside it, so that posting the form as it stands signs out.
async function logoutSource(ctx, form) {
  const body = form.replace(
    "</form>",
    '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>',
  );
  ctx.body = page("Sign out", `<h1>Sign out of ${esc(ctx.host)}?</h1>${body}`);
}

// --- pages ------------------------------------------------------------------------------
function esc(value) {
  return String(value)
    .replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>${body}</body></html>`;
}

const csrfFor = (uid) => createHmac("sha256", secret).update(`interaction:${uid}`).digest("base64url");

function loginPage(uid, clientId, error) {
  return page("Sign in", `<h1>Sign in to ${esc(clientId)}</h1>${
    error ? `<p class="error" id="error">${esc(error)}</p>` : ""
  }<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<input type="hidden" name="csrf" value="${csrfFor(uid)}">
<label>Login <input name="login" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button></form>`);
}

function consentPage(uid, clientId, details) {
  const asked = [...(details.missingOIDCScope ?? []), ...(details.missingOIDCClaims ?? [])];
  return page("Consent", `<h1>${esc(clientId)} asks for</h1><ul>${asked
    .map((s) => `<li>${esc(s)}</li>`).join("")}</ul>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm">
<input type="hidden" name="csrf" value="${csrfFor(uid)}"><button type="submit">Allow</button></form>
<form id="deny" method="post" action="/interaction/${esc(uid)}/abort">
<input type="hidden" name="csrf" value="${csrfFor(uid)}"><button type="submit">Deny</button></form>`);
}

function send(res, status, html) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(html);
}

function sendJson(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM) throw new Error("form too large");
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

async function interaction(req, res, path) {
  const [, , uid, action] = path.split("/"); // /interaction/<uid>[/<action>]
  const { provider } = current;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    log(`interaction ${uid}: ${err.name}`);
    return send(res, 400, page("Error", `<h1>Error</h1><p id="error">${esc(err.message)}</p>`));
  }
  if (details.uid !== uid) return send(res, 400, page("Error", "<p id=\"error\">interaction mismatch</p>"));
  const clientId = details.params.client_id;
  const prompt = details.prompt.name;

  if (req.method === "GET" && !action) {
    if (prompt === "login") return send(res, 200, loginPage(uid, clientId));
    if (prompt === "consent") return send(res, 200, consentPage(uid, clientId, details.prompt.details));
    return send(res, 400, page("Error", `<p id="error">unknown prompt ${esc(prompt)}</p>`));
  }
  if (req.method !== "POST") return send(res, 405, page("Error", "<p>method not allowed</p>"));
  const form = await readForm(req);
  if (form.get("csrf") !== csrfFor(uid)) {
    log(`interaction ${uid}: bad csrf field`);
    return send(res, 403, page("Error", '<p id="error">bad csrf field</p>'));
  }

  if (action === "login" && prompt === "login") {
    const account = findByLogin(form.get("login") ?? "");
    if (!account || !samePassword(form.get("password") ?? "", account.password)) {
      log(`login refused for client ${clientId}`);
      return send(res, 200, loginPage(uid, clientId, "Invalid login or password."));
    }
    log(`login ${account.sub} for client ${clientId}`);
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (action === "confirm" && prompt === "consent") {
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
    // offline_access is an OIDC scope oidc-provider lists among the missing ones only when
    // the request had prompt=consent; granting what it lists is granting what was asked.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(" "));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scope.join(" "));
    }
    const grantId = await grant.save();
    log(`consent ${details.session.accountId} for client ${clientId}`);
    const consent = details.grantId ? {} : { grantId };
    return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }
  if (action === "abort") {
    log(`consent denied for client ${clientId}`);
    return provider.interactionFinished(req, res, {
      error: "access_denied",
      error_description: "End-User aborted interaction",
    }, { mergeWithLastSubmission: false });
  }
  return send(res, 400, page("Error", `<p id="error">${esc(action)} does not answer prompt ${esc(prompt)}</p>`));
}

// --- admin (loopback only) --------------------------------------------------------------
const LOOPBACK = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);

function admin(req, res, url) {
  if (!LOOPBACK.has(req.socket.remoteAddress)) return sendJson(res, 403, { error: "loopback only" });
  if (req.method === "POST" && url.pathname === "/__test/rotate") {
    const dropOld = ["1", "true", "yes"].includes(url.searchParams.get("drop_old") ?? "");
    const fresh = newSigningKeys();
    signingKeys = dropOld ? fresh : [...fresh, ...signingKeys];
    current = build();
    const kids = signingKeys.map((k) => k.kid);
    log(`rotated signing keys (drop_old=${dropOld}): ${kids.join(" ")}`);
    return sendJson(res, 200, { signing: fresh.map((k) => k.kid), kids });
  }
  return sendJson(res, 404, { error: "not found" });
}

// --- server -----------------------------------------------------------------------------

let issuer;
let current;
const tls = args["tls-cert"]
  ? { cert: readFileSync(args["tls-cert"]), key: readFileSync(args["tls-key"]) }
  : null;
const listenHost = args.host ?? "127.0.0.1";
const handler = (req, res) => {
  const url = new URL(req.url, issuer);
  const fail = (err) => {
    log(`${req.method} ${url.pathname}: ${err.stack ?? err}`);
    if (!res.headersSent) send(res, 500, page("Error", '<p id="error">internal error</p>'));
    else res.destroy();
  };
  try {
    if (url.pathname.startsWith("/interaction/")) return void interaction(req, res, url.pathname).catch(fail);
    if (url.pathname.startsWith("/__test/")) return void admin(req, res, url);
    return void current.handle(req, res);
  } catch (err) {
    fail(err);
  }
};
const server = tls ? https.createServer(tls, handler) : http.createServer(handler);

server.listen(port, listenHost, async () => {
  issuer = args.issuer ?? `http://127.0.0.1:${server.address().port}`;

  current = build();
  // oidc-provider checks static clients' metadata only when one is first used: check
  // them all now, so that a test's bad client fails the start, not a later step.
  for (const client of config.clients ?? []) {
    try {
      await current.provider.Client.find(client.client_id);
    } catch (err) {
      log(`client ${client.client_id}: ${err.error_description ?? err.message}`);
      process.exit(1);
    }
  }
  log(`${accounts.size} accounts, ${(config.clients ?? []).length} clients, kids ${signingKeys.map((k) => k.kid).join(" ")}`);
  process.stdout.write(`ready ${issuer}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
