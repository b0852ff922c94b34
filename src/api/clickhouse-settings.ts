// URL parameters of the ClickHouse-compatible endpoint. A ClickHouse server takes any setting as a
// URL parameter; this endpoint takes the protocol's own parameters, an allow-list of settings that
// only shape the output (or lower our limits), and ignores the HTTP-transport ones a client may send
// out of habit. Anything else is refused with READONLY, naming the setting, as a server in readonly
// mode refuses a setting it may not change. Every value is checked here and written as a SQL literal
// into the query's own SETTINGS clause (never `SET`: the store's session is shared with the writer).
import { CH, ClickHouseHttpError } from './clickhouse-errors.js';

export interface ClickHouseLimits {
  /** max_execution_time, seconds; also the HTTP deadline (plus a grace) */
  readonly maxExecutionSeconds: number;
  /** max_result_rows (overflow: throw) */
  readonly maxResultRows: number;
  /** max_result_bytes (overflow: throw) */
  readonly maxResultBytes: number;
  /** max_rows_to_read (overflow: throw) */
  readonly maxRowsToRead: number;
  /** max_memory_usage, bytes */
  readonly maxMemoryBytes: number;
  /** max_threads: the agent shares the node's cores with the workloads */
  readonly maxThreads: number;
  /** request body, bytes, after decompression */
  readonly maxBodyBytes: number;
  /** query text (URL `query` and body together), bytes */
  readonly maxQueryBytes: number;
  /** queries running at once; more are refused (503), not queued */
  readonly maxConcurrent: number;
}

export const DEFAULT_CLICKHOUSE_LIMITS: ClickHouseLimits = {
  maxExecutionSeconds: 30,
  maxResultRows: 100_000,
  maxResultBytes: 64 * 1024 * 1024,
  maxRowsToRead: 200_000_000,
  maxMemoryBytes: 1024 * 1024 * 1024,
  maxThreads: 2,
  maxBodyBytes: 1024 * 1024,
  maxQueryBytes: 256 * 1024,
  maxConcurrent: 4,
};

export function checkLimits(l: ClickHouseLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new Error(`clickhouse endpoint: limits.${k} must be a positive number, not ${JSON.stringify(v)}`);
    if (k !== 'maxExecutionSeconds' && !Number.isInteger(v)) throw new Error(`clickhouse endpoint: limits.${k} must be a whole number, not ${v}`);
  }
}

/** The parsed URL parameters of one request. */
export interface RequestParams {
  readonly query?: string;
  readonly database?: string;
  readonly defaultFormat?: string;
  readonly queryId?: string;
  /** `param_<name>` values as sent (Escaped text) */
  readonly params: Map<string, string>;
  /** enable_http_compression=1 */
  readonly compressResponse: boolean;
  readonly compressionLevel: number;
  /** max_execution_time in effect, seconds */
  readonly executionSeconds: number;
  /** the SETTINGS clause body: the user's allowed settings, then ours (the last one wins) */
  readonly settings: string;
}

type Setting = (name: string, value: string) => string;

const bool: Setting = (name, v) => {
  if (!/^(0|1|true|false)$/i.test(v)) throw bad(name, v, '0 or 1');
  return /^(1|true)$/i.test(v) ? '1' : '0';
};
const oneOf = (...allowed: string[]): Setting => (name, v) => {
  if (!allowed.includes(v)) throw bad(name, v, allowed.join(', '));
  return `'${v}'`;
};
const oneChar: Setting = (name, v) => {
  if (!/^[!-~]$/.test(v) || v === "'" || v === '\\') throw bad(name, v, 'one printable character other than quote and backslash');
  return `'${v}'`;
};

function bad(name: string, v: string, want: string): ClickHouseHttpError {
  return ClickHouseHttpError.of(CH.BAD_QUERY_PARAMETER, `setting ${name}: ${JSON.stringify(v.slice(0, 100))} is not valid (want ${want})`, 400);
}

/** Settings that only change how the result is written. */
const OUTPUT_SETTINGS: Record<string, Setting> = {
  output_format_json_quote_64bit_integers: bool,
  output_format_json_quote_64bit_floats: bool,
  output_format_json_quote_decimals: bool,
  output_format_json_quote_denormals: bool,
  output_format_json_named_tuples_as_objects: bool,
  output_format_json_validate_utf8: bool,
  output_format_json_escape_forward_slashes: bool,
  output_format_json_array_of_rows: bool,
  output_format_write_statistics: bool,
  output_format_decimal_trailing_zeros: bool,
  output_format_tsv_crlf_end_of_line: bool,
  output_format_csv_crlf_end_of_line: bool,
  output_format_native_encode_types_in_binary_format: bool,
  format_csv_delimiter: oneChar,
  date_time_output_format: oneOf('simple', 'iso', 'unix_timestamp'),
  date_time_input_format: oneOf('basic', 'best_effort', 'best_effort_us'),
  interval_output_format: oneOf('kusto', 'numeric'),
  extremes: bool,
  join_use_nulls: bool,
};

/**
 * Limits of the query's complexity that only ever make it fail sooner (Grafana and clickhouse-go
 * may send some of them): passed through, before ours.
 */
const RESTRICTING = new Set([
  'max_bytes_to_read', 'max_columns_to_read', 'max_rows_to_group_by', 'max_rows_to_sort', 'max_bytes_to_sort',
  'max_rows_in_set', 'max_bytes_in_set', 'max_rows_in_join', 'max_bytes_in_join', 'max_rows_in_distinct', 'max_bytes_in_distinct',
  'max_rows_to_transfer', 'max_bytes_to_transfer', 'max_temporary_columns', 'max_subquery_depth', 'max_pipeline_depth',
  'max_ast_depth', 'max_ast_elements', 'max_expanded_ast_elements',
]);

/** Limits a client may lower (never raise): the smaller of its value and ours runs. */
const LOWERABLE: Record<string, keyof ClickHouseLimits> = {
  max_execution_time: 'maxExecutionSeconds',
  max_result_rows: 'maxResultRows',
  max_result_bytes: 'maxResultBytes',
  max_rows_to_read: 'maxRowsToRead',
  max_memory_usage: 'maxMemoryBytes',
  max_threads: 'maxThreads',
};

const OVERFLOW_MODES = ['result_overflow_mode', 'timeout_overflow_mode', 'read_overflow_mode'] as const;

/**
 * Sent by clients for the HTTP transport of a real server (sessions, progress headers, buffering,
 * quota keys); nothing here depends on them: ignored. Sessions are harmless to ignore since SET,
 * and CREATE TEMPORARY TABLE, which a session would keep, are refused anyway.
 */
const IGNORED = new Set([
  'session_id', 'session_timeout', 'session_check', 'quota_key', 'buffer_size', 'wait_end_of_query', 'http_wait_end_of_query',
  'send_progress_in_http_headers', 'http_headers_progress_interval_ms', 'cancel_http_readonly_queries_on_client_close',
  'http_response_buffer_size', 'log_comment', 'max_query_size', 'role', 'client_protocol_version', 'user', 'password',
  'http_native_compression_disable_checksumming_on_decompress', 'log_queries', 'use_client_time_zone',
]);

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

export function parseRequestParams(sp: URLSearchParams, limits: ClickHouseLimits): RequestParams {
  const params = new Map<string, string>();
  const user: string[] = [];
  const eff: Record<keyof ClickHouseLimits, number> = { ...limits };
  const modes: Record<string, string> = { result_overflow_mode: 'throw', timeout_overflow_mode: 'throw', read_overflow_mode: 'throw' };
  let query: string | undefined;
  let database: string | undefined;
  let defaultFormat: string | undefined;
  let queryId: string | undefined;
  let compressResponse = false;
  let compressionLevel = 3;
  const seen = new Set<string>();
  for (const [name, value] of sp) {
    if (seen.has(name)) throw ClickHouseHttpError.of(CH.BAD_QUERY_PARAMETER, `URL parameter ${name} given more than once`, 400);
    seen.add(name);
    if (name.startsWith('param_')) {
      const p = name.slice(6);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) throw ClickHouseHttpError.of(CH.BAD_QUERY_PARAMETER, `${name}: not a valid parameter name`, 400);
      params.set(p, value);
      continue;
    }
    switch (name) {
      case 'query': query = value; continue;
      case 'database': database = value; continue;
      case 'default_format':
        if (!NAME.test(value)) throw bad(name, value, 'a format name');
        defaultFormat = value; continue;
      case 'query_id':
        if (!/^[!-~]{1,128}$/.test(value)) throw bad(name, value, 'up to 128 printable ASCII characters');
        queryId = value; continue;
      case 'enable_http_compression': compressResponse = bool(name, value) === '1'; continue;
      case 'http_zlib_compression_level':
        if (!/^[1-9]$/.test(value)) throw bad(name, value, '1 to 9');
        compressionLevel = Number(value); continue;
      case 'readonly':
        // every query runs with readonly = 1 whatever is asked; asking for writes is refused
        if (value !== '1' && value !== '2') throw ClickHouseHttpError.of(CH.READONLY, `Cannot modify 'readonly' setting in readonly mode (this endpoint only reads)`);
        continue;
      case 'compress':
      case 'decompress':
        // ClickHouse's own block compression of the body or the response (clickhouse-go's LZ4/ZSTD)
        if (value !== '0') throw ClickHouseHttpError.of(CH.NOT_IMPLEMENTED, `${name}=${value}: ClickHouse block compression is not supported here; use no compression, or HTTP compression (enable_http_compression=1 with Accept-Encoding: gzip)`);
        continue;
    }
    if (IGNORED.has(name)) continue;
    const out = OUTPUT_SETTINGS[name];
    if (out) { user.push(`${name} = ${out(name, value)}`); continue; }
    if (RESTRICTING.has(name)) {
      if (!/^\d{1,18}$/.test(value)) throw bad(name, value, 'a whole number');
      // 0 means "no limit" there too, which is what not sending it means
      if (value !== '0') user.push(`${name} = ${value}`);
      continue;
    }
    const limit = LOWERABLE[name];
    if (limit) {
      if (!/^\d+(\.\d+)?$/.test(value) || (limit !== 'maxExecutionSeconds' && value.includes('.'))) throw bad(name, value, 'a non-negative number');
      const n = Number(value);
      // 0 is "no limit" in ClickHouse: ours stays
      if (n > 0 && n < eff[limit]) eff[limit] = n;
      continue;
    }
    if ((OVERFLOW_MODES as readonly string[]).includes(name)) {
      oneOf('throw', 'break')(name, value);
      modes[name] = value;
      continue;
    }
    if (!NAME.test(name)) throw ClickHouseHttpError.of(CH.UNKNOWN_SETTING, `Unknown setting ${JSON.stringify(name.slice(0, 100))}`);
    throw ClickHouseHttpError.of(CH.READONLY, `Cannot modify '${name}' setting in readonly mode (this endpoint takes only the output settings listed in docs/api.md)`);
  }
  // ours last: in one SETTINGS clause the last assignment of a name wins
  const ours = [
    'readonly = 1',
    `max_execution_time = ${eff.maxExecutionSeconds}`,
    `timeout_overflow_mode = '${modes.timeout_overflow_mode}'`,
    `max_result_rows = ${eff.maxResultRows}`,
    `max_result_bytes = ${eff.maxResultBytes}`,
    `result_overflow_mode = '${modes.result_overflow_mode}'`,
    `max_rows_to_read = ${eff.maxRowsToRead}`,
    `read_overflow_mode = '${modes.read_overflow_mode}'`,
    `max_memory_usage = ${eff.maxMemoryBytes}`,
    `max_threads = ${eff.maxThreads}`,
    // the X-ClickHouse-Timezone we announce; DateTime columns without a zone are written in it
    `session_timezone = 'UTC'`,
  ];
  return {
    ...(query !== undefined ? { query } : {}),
    ...(database !== undefined ? { database } : {}),
    ...(defaultFormat !== undefined ? { defaultFormat } : {}),
    ...(queryId !== undefined ? { queryId } : {}),
    params, compressResponse, compressionLevel, executionSeconds: eff.maxExecutionSeconds,
    settings: [...user, ...ours].join(', '),
  };
}
