// Who may use the ClickHouse-compatible endpoint. Credentials arrive the ways ClickHouse accepts them
// (HTTP basic auth, X-ClickHouse-User/X-ClickHouse-Key headers, `user`/`password` URL parameters) or
// as the agent's API bearer token. Every comparison is of SHA-256 digests with timingSafeEqual, so
// it takes the same time whatever the input's length or how much of it matches, and the user name
// and the password are both compared before either result is looked at.
import crypto from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { CH, ClickHouseHttpError } from './clickhouse-errors.js';

export interface ClickHouseCredentials {
  readonly user: string;
  readonly password: string;
}

export interface AuthOptions {
  /** the one user of the endpoint (Grafana's data source: "Username" and "Password") */
  readonly credentials?: ClickHouseCredentials;
  /** the agent's API token, accepted as `Authorization: Bearer <token>` */
  readonly token?: string;
  /** no credentials needed; only for an endpoint on localhost */
  readonly allowAnonymous?: boolean;
}

/** What the request carried: a user and password, a bearer token, or nothing. */
export type Presented =
  | { readonly kind: 'password'; readonly user: string; readonly password: string; readonly via: string }
  | { readonly kind: 'bearer'; readonly token: string }
  | { readonly kind: 'none' };

const digest = (s: string): Buffer => crypto.createHash('sha256').update(s, 'utf8').digest();

/** Equal-length digests compared in constant time. */
export function safeEqual(a: string, b: Buffer): boolean {
  return crypto.timingSafeEqual(digest(a), b);
}

/**
 * The credentials a request carries, in ClickHouse's order: basic auth, the X-ClickHouse headers,
 * the URL parameters. ClickHouse refuses a request that mixes them; so do we, naming both.
 */
export function presented(headers: IncomingHttpHeaders, params: URLSearchParams): Presented {
  const found: Presented[] = [];
  const authz = headers.authorization;
  if (authz !== undefined) {
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authz);
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    if (basic) {
      const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = text.indexOf(':');
      if (colon < 0) throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, 'malformed Authorization: Basic header (no ":" between user and password)');
      found.push({ kind: 'password', user: text.slice(0, colon), password: text.slice(colon + 1), via: 'Authorization: Basic' });
    } else if (bearer) {
      found.push({ kind: 'bearer', token: bearer[1]! });
    } else {
      throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, 'unsupported Authorization header: use Basic or Bearer');
    }
  }
  const hUser = headers['x-clickhouse-user'];
  const hKey = headers['x-clickhouse-key'];
  if (hUser !== undefined || hKey !== undefined) {
    found.push({ kind: 'password', user: String(hUser ?? 'default'), password: String(hKey ?? ''), via: 'X-ClickHouse-User/X-ClickHouse-Key' });
  }
  const pUser = params.get('user');
  const pPassword = params.get('password');
  if (pUser !== null || pPassword !== null) {
    found.push({ kind: 'password', user: pUser ?? 'default', password: pPassword ?? '', via: 'user/password URL parameters' });
  }
  if (found.length > 1) {
    const ways = found.map((f) => (f.kind === 'password' ? f.via : 'Authorization: Bearer'));
    throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, `credentials given more than one way (${ways.join(' and ')}): use one`);
  }
  return found[0] ?? { kind: 'none' };
}

/** Checks requests against the configured credentials; built once, used per request. */
export class Authenticator {
  readonly #user?: Buffer;
  readonly #password?: Buffer;
  readonly #token?: Buffer;
  readonly #anonymous: boolean;

  constructor(opts: AuthOptions) {
    if (opts.credentials) {
      const { user, password } = opts.credentials;
      if (typeof user !== 'string' || !/^[!-~]+$/.test(user)) throw new Error('clickhouse endpoint: credentials.user must be printable ASCII without spaces, and not empty');
      if (typeof password !== 'string' || password.length < 8) throw new Error('clickhouse endpoint: credentials.password must be at least 8 characters');
      this.#user = digest(user);
      this.#password = digest(password);
    }
    if (opts.token !== undefined) {
      if (!/^[!-~]+$/.test(opts.token)) throw new Error('clickhouse endpoint: the token must be printable ASCII without spaces, and not empty');
      this.#token = digest(opts.token);
    }
    this.#anonymous = opts.allowAnonymous === true && !opts.credentials && opts.token === undefined;
    if (!this.#user && !this.#token && !this.#anonymous) {
      throw new Error('clickhouse endpoint: no credentials and no token configured; set one, or allowAnonymous for a localhost-only endpoint');
    }
  }

  get anonymous(): boolean {
    return this.#anonymous;
  }

  /** Throws AUTHENTICATION_FAILED (401) unless the request may go on. */
  check(headers: IncomingHttpHeaders, params: URLSearchParams): void {
    const p = presented(headers, params);
    if (this.#anonymous) return;
    if (p.kind === 'none') throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, 'authentication required: HTTP basic auth, X-ClickHouse-User/X-ClickHouse-Key, or Authorization: Bearer');
    if (p.kind === 'bearer') {
      if (this.#token && safeEqual(p.token, this.#token)) return;
      throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, 'invalid token');
    }
    if (this.#user && this.#password) {
      // both compared, always: no early exit tells which half was wrong
      const userOk = safeEqual(p.user, this.#user);
      const passwordOk = safeEqual(p.password, this.#password);
      if (userOk && passwordOk) return;
    }
    throw ClickHouseHttpError.of(CH.AUTHENTICATION_FAILED, `${p.user}: authentication failed: password is incorrect, or there is no user with such name`);
  }
}
