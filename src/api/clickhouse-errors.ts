// Errors of the ClickHouse-compatible endpoint, shaped the way a ClickHouse server sends them, so
// @clickhouse/client, clickhouse-go and Grafana's data source parse them into a code and a type:
// body `Code: N. DB::Exception: message. (NAME) (version V)`, header X-ClickHouse-Exception-Code,
// and the HTTP status ClickHouse gives that code. Never a stack trace: only the message.

/** ClickHouse error codes we produce ourselves (src/Common/ErrorCodes.cpp). */
export const CH = {
  UNSUPPORTED_METHOD: [1, 'UNSUPPORTED_METHOD'],
  UNKNOWN_DATABASE: [81, 'UNKNOWN_DATABASE'],
  NOT_IMPLEMENTED: [48, 'NOT_IMPLEMENTED'],
  SYNTAX_ERROR: [62, 'SYNTAX_ERROR'],
  UNKNOWN_SETTING: [115, 'UNKNOWN_SETTING'],
  TIMEOUT_EXCEEDED: [159, 'TIMEOUT_EXCEEDED'],
  READONLY: [164, 'READONLY'],
  TOO_MANY_SIMULTANEOUS_QUERIES: [202, 'TOO_MANY_SIMULTANEOUS_QUERIES'],
  QUERY_IS_TOO_LARGE: [393, 'QUERY_IS_TOO_LARGE'],
  BAD_QUERY_PARAMETER: [457, 'BAD_QUERY_PARAMETER'],
  ACCESS_DENIED: [497, 'ACCESS_DENIED'],
  AUTHENTICATION_FAILED: [516, 'AUTHENTICATION_FAILED'],
  STD_EXCEPTION: [1001, 'STD_EXCEPTION'],
} as const satisfies Record<string, readonly [number, string]>;

export type ChCode = (typeof CH)[keyof typeof CH];

/** An error to answer with, in ClickHouse's terms. */
export class ClickHouseHttpError extends Error {
  override readonly name = 'ClickHouseHttpError';
  constructor(
    readonly code: number,
    readonly type: string,
    message: string,
    /** set when our own check decided it; otherwise from the code, as ClickHouse does */
    readonly status: number = httpStatusOf(code),
  ) {
    super(message);
  }

  static of([code, type]: ChCode, message: string, status?: number): ClickHouseHttpError {
    return new ClickHouseHttpError(code, type, message, status);
  }
}

/**
 * The HTTP status ClickHouse's HTTP handler gives an error code (exceptionCodeToHTTPStatus): the
 * client's mistakes are 4xx, the rest 500.
 */
export function httpStatusOf(code: number): number {
  switch (code) {
    case 194: // REQUIRED_PASSWORD
    case 516: // AUTHENTICATION_FAILED
      return 401;
    case 164: // READONLY
    case 497: // ACCESS_DENIED
      return 403;
    case 60: // UNKNOWN_TABLE
    case 46: // UNKNOWN_FUNCTION
    case 81: // UNKNOWN_DATABASE
    case 47: // UNKNOWN_IDENTIFIER
    case 16: // NO_SUCH_COLUMN_IN_TABLE
    case 73: // UNKNOWN_FORMAT
    case 115: // UNKNOWN_SETTING
      return 404;
    case 393: // QUERY_IS_TOO_LARGE
      return 413;
    case 1: // UNSUPPORTED_METHOD
    case 62: // SYNTAX_ERROR
    case 6: case 25: case 26: case 27: case 32: case 38: case 41: case 69: case 70: case 72: // CANNOT_PARSE_*
    case 36: // BAD_ARGUMENTS
    case 42: // NUMBER_OF_ARGUMENTS_DOESNT_MATCH
    case 43: // ILLEGAL_TYPE_OF_ARGUMENT
    case 53: // TYPE_MISMATCH
    case 130: // CANNOT_READ_ARRAY_FROM_TEXT
    case 184: // ILLEGAL_AGGREGATION
    case 215: // NOT_AN_AGGREGATE
    case 456: // UNKNOWN_QUERY_PARAMETER
    case 457: // BAD_QUERY_PARAMETER
      return 400;
    case 48: // NOT_IMPLEMENTED
      return 501;
    case 202: // TOO_MANY_SIMULTANEOUS_QUERIES
      return 503;
    default:
      return 500;
  }
}

/**
 * The message as a client may see it: ClickHouse appends "Stack trace: ..." to some messages and
 * chDB may name the store's directory; both are cut. Long messages (they can quote the query) are
 * shortened.
 */
export function cleanMessage(message: string, redact: readonly string[] = []): string {
  let m = message.split(/\s*Stack trace[\s(:]/)[0]!;
  for (const r of redact) if (r) m = m.split(r).join('<store>');
  m = m.trim().replace(/\.$/, '');
  return m.length > 2000 ? `${m.slice(0, 2000)}...` : m;
}

/** ClickHouse's body for an error. */
export function errorBody(code: number, type: string, message: string, version: string): string {
  return `Code: ${code}. DB::Exception: ${message}. (${type}) (version ${version})\n`;
}

/**
 * An error thrown while answering, as the error to send: ours as they are; ClickHouse's (from the
 * store's client, with `code` and `type`) with their code; anything else is an internal error whose
 * message stays in our log, not in the response.
 */
export function toHttpError(err: unknown, redact: readonly string[] = []): { error: ClickHouseHttpError; internal: boolean } {
  if (err instanceof ClickHouseHttpError) return { error: err, internal: false };
  const e = err as { code?: unknown; type?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' && /^\d+$/.test(e.code) ? Number(e.code) : typeof e?.code === 'number' ? e.code : undefined;
  if (code !== undefined && typeof e.type === 'string' && /^[A-Z0-9_]+$/.test(e.type)) {
    return { error: new ClickHouseHttpError(code, e.type, cleanMessage(String(e.message ?? ''), redact)), internal: false };
  }
  return { error: ClickHouseHttpError.of(CH.STD_EXCEPTION, 'internal error while running the query (see the agent log)'), internal: true };
}
