// The API's OpenAPI 3.1 document, served at /api/v1/openapi.json. Written by hand;
// test/api/openapi.test.ts checks that every route the server has and every parameter params.ts
// accepts is described here.
import { DEFAULT_LIMIT, MAX_LIMIT } from '../store/filter.js';
import { MIN_BUCKETS_PER_RANGE } from '../store/summary.js';
import { DEFAULT_GROUP_BY, DEFAULT_SUMMARY_LIMIT, GROUP_KEYS, MAX_SUMMARY_LIMIT, PROTOCOL_NUMBERS, VERDICTS } from './params.js';

type Json = Record<string, unknown>;

const list = (description: string, schema: Json = { type: 'string' }): { description: string; schema: Json; explode: boolean } =>
  ({ description: `${description} Repeat the parameter for alternatives (OR).`, schema: { type: 'array', items: schema }, explode: true });

const SIDE_PARAMS: Record<string, { description: string; schema: Json; explode?: boolean }> = {
  namespace: list('Kubernetes namespace.', { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 }),
  pod: list('Pod as NAMESPACE/NAME, or NAME in any namespace.'),
  label: list('Label match: `key=value`, `key!=value` (also when the label is absent), `key` (exists) or `!key` (does not exist). '
    + 'Keys and values have Kubernetes label syntax. All label matches must hold.'),
  ip: list('Exact address, IPv4 or IPv6 (IPv4 also matches its IPv4-mapped IPv6 form).'),
  cidr: list('Address prefix, e.g. 10.0.0.0/8 or fd00::/64. `ip` and `cidr` of one side are alternatives: any listed address or prefix matches.'),
};

function filterParameters(): Json[] {
  const out: Json[] = [];
  for (const [prefix, side] of [['', 'either side (all of this side-less filter on the source, or all of it on the destination)'], ['src_', 'the source'], ['dst_', 'the destination']] as const) {
    for (const [name, p] of Object.entries(SIDE_PARAMS)) {
      out.push({ name: `${prefix}${name}`, in: 'query', required: false, style: 'form', explode: true, description: `${p.description} Matches ${side}.`, schema: p.schema });
    }
  }
  out.push(
    { name: 'port', in: 'query', style: 'form', explode: true, description: 'Port on either side (as Hubble\'s --port). Repeatable (OR).', schema: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 65535 } } },
    { name: 'protocol', in: 'query', style: 'form', explode: true, description: `IP protocol: ${Object.keys(PROTOCOL_NUMBERS).join(', ')} or a number 0-255. Repeatable (OR).`,
      schema: { type: 'array', items: { type: 'string' } } },
    { name: 'verdict', in: 'query', style: 'form', explode: true, description: 'Verdict. Repeatable (OR).', schema: { type: 'array', items: { type: 'string', enum: [...VERDICTS] } } },
    { name: 'policy', in: 'query', style: 'form', explode: true, description: 'Substring of any of the row\'s rule texts (deciding, egress, ingress, forward), e.g. `api/allow-frontend` or `gnp/deny-ssh`. Repeatable (OR).',
      schema: { type: 'array', items: { type: 'string', maxLength: 256 } } },
    { name: 'since', in: 'query', description: 'Rows at or after this time: RFC 3339 (`2026-01-02T15:04:05Z`) or a duration before now (`15m`, `2h`, `7d`, `1h30m`).', schema: { type: 'string' } },
    { name: 'until', in: 'query', description: 'Rows before this time, same syntax as `since`; must be after `since`.', schema: { type: 'string' } },
  );
  return out;
}

const errorResponse = (description: string): Json => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const side = { $ref: '#/components/schemas/Side' };
/** a group_by entry: a column, or one label of one side (the key checked as a Kubernetes label key) */
const groupKey: Json = { type: 'string', anyOf: [{ enum: [...GROUP_KEYS] }, { pattern: '^(src|dst)_label:([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$' }] };

export function openApiDocument(): Json {
  const filters = filterParameters();
  const common = { 400: errorResponse('A bad parameter (named in `error.parameter`).'), 401: errorResponse('Missing or wrong bearer token (when the server has one).'), 500: errorResponse('The store failed.') };
  return {
    openapi: '3.1.0',
    info: { title: 'Weir flow API', version: '1', description: 'Flows stored by the Weir agent: query, summarize and follow them. Every filter is validated; bad ones get a 400 that names the parameter.' },
    servers: [{ url: 'http://127.0.0.1:9470' }],
    security: [{ bearer: [] }],
    paths: {
      '/api/v1/flows': {
        get: {
          operationId: 'listFlows', summary: 'Flows matching the filters, newest first, a page at a time.',
          parameters: [
            ...filters,
            { name: 'limit', in: 'query', description: `Rows per page (default ${DEFAULT_LIMIT}).`, schema: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT } },
            { name: 'cursor', in: 'query', description: 'The `nextCursor` of the previous page: continue with older rows.', schema: { type: 'string' } },
          ],
          responses: {
            200: { description: 'A page of rows.', content: { 'application/json': { schema: { type: 'object', required: ['rows'], properties: {
              rows: { type: 'array', items: { $ref: '#/components/schemas/FlowRow' } },
              nextCursor: { type: 'string', description: 'Absent on the last page.' },
            } } } } },
            ...common,
          },
        },
      },
      '/api/v1/flows/summary': {
        get: {
          operationId: 'summarizeFlows', summary: 'Flows grouped, with counts, packets and bytes; the largest (top talkers) first.',
          parameters: [
            ...filters,
            { name: 'group_by', in: 'query', description: `Comma-separated group keys (default ${DEFAULT_GROUP_BY.join(',')}): columns, or \`src_label:KEY\` / \`dst_label:KEY\` `
                + 'for the value of one label of that side (read from the raw rows; null in `key` for rows without the label). Grouped by source '
                + '(`src_namespace,src_pod`), the groups are the top talkers by bytes.', style: 'form', explode: false,
              schema: { type: 'array', items: groupKey } },
            { name: 'limit', in: 'query', description: `Groups (default ${DEFAULT_SUMMARY_LIMIT}).`, schema: { type: 'integer', minimum: 1, maximum: MAX_SUMMARY_LIMIT, default: DEFAULT_SUMMARY_LIMIT } },
          ],
          responses: {
            200: { description: 'Groups, largest first.', content: { 'application/json': { schema: { type: 'object', required: ['groupBy', 'groups', 'total', 'source'], properties: {
              groupBy: { type: 'array', items: groupKey },
              limit: { type: 'integer' },
              groups: { type: 'array', items: { type: 'object', required: ['key', 'flows', 'packets', 'bytes'], properties: {
                key: { type: 'object', description: 'One entry per group_by entry; null for a label the rows do not have.', additionalProperties: { type: ['string', 'integer', 'null'] } },
                flows: { type: 'integer', description: 'Rows (aggregated flows, denied/audit/log records).' },
                packets: { type: 'integer', description: 'Both directions.' }, bytes: { type: 'integer', description: 'Both directions.' },
              } } },
              total: { type: 'object', description: 'Over every matching row, not only the groups returned.', properties: { flows: { type: 'integer' }, packets: { type: 'integer' }, bytes: { type: 'integer' } } },
              source: { type: 'object', required: ['table', 'resolutionSeconds', 'retentionDays', 'reason'],
                description: 'The table the answer was read from: the per-hour or per-minute rollup when every filter and group_by column is in it, else the raw rows. '
                  + `A rollup is read when since and until fall on its buckets (exact), or when its bucket is at most 1/${MIN_BUCKETS_PER_RANGE} of the range; `
                  + 'then the edges are widened outward to whole buckets (since/until here are the edges used).',
                properties: {
                  table: { type: 'string', enum: ['flows', 'flows_1m', 'flows_1h'] },
                  resolutionSeconds: { type: 'number', description: '3600, 60, or 0.001 for raw rows (millisecond times: exact edges).' },
                  retentionDays: { type: 'integer', description: 'How long that table keeps rows.' },
                  since: { type: 'integer', description: 'UTC ms: the start the answer covers (absent without since).' },
                  until: { type: 'integer', description: 'UTC ms: the end the answer covers, exclusive (absent without until).' },
                  reason: { type: 'string', description: 'Why this table, in words.' },
                } },
            } } } } },
            ...common,
          },
        },
      },
      '/api/v1/flows/stream': {
        get: {
          operationId: 'streamFlows', summary: 'Server-Sent Events: one `flow` event (data: a FlowRow as JSON) per new row matching the filters.',
          parameters: filters,
          responses: {
            200: { description: 'An event stream; `: keepalive` comments when idle; an `error` event if the store fails.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
            ...common,
          },
        },
      },
      '/api/v1/stats': {
        get: { operationId: 'stats', summary: 'The agent\'s counters: rows written, events lost at each stage (404 when the server does not run in an agent).',
          responses: { 200: { description: 'counters', content: { 'application/json': { schema: { type: 'object', additionalProperties: true } } } }, 401: common[401], 404: errorResponse('Not an agent.') } },
      },
      '/api/v1/openapi.json': {
        get: { operationId: 'openApi', summary: 'This document.', responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } }, 401: common[401] } },
      },
      '/healthz': {
        get: { operationId: 'health', summary: 'The server is up (no token needed).', security: [], responses: { 200: { description: 'ok', content: { 'application/json': { schema: { type: 'object' } } } } } },
      },
      '/readyz': {
        get: { operationId: 'ready', summary: 'The store answers (no token needed).', security: [],
          responses: { 200: { description: 'ready', content: { 'application/json': { schema: { type: 'object' } } } }, 503: errorResponse('The store does not answer.') } },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Only when the server is started with a token.' } },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['message'], properties: { parameter: { type: 'string' }, message: { type: 'string' } } } } },
        Side: { type: 'object', properties: {
          kind: { type: 'string', enum: ['pod', 'host', 'world', ''] }, ip: { type: 'string', description: 'IPv6 text, IPv4 mapped; `::` when not kept' }, port: { type: 'integer' },
          namespace: { type: 'string' }, pod: { type: 'string' }, labels: { type: 'object', additionalProperties: { type: 'string' } },
          workloadKind: { type: 'string' }, workload: { type: 'string' }, serviceAccount: { type: 'string' }, node: { type: 'string' }, hostEndpoint: { type: 'string' }, name: { type: 'string' },
        } },
        FlowRow: { type: 'object', description: 'One stored row (docs/flows.md). Times are UTC milliseconds.', properties: {
          ts: { type: 'integer' }, start: { type: 'integer' }, kind: { type: 'string', enum: ['flow', 'denied', 'audit', 'log', 'lost'] },
          verdict: { type: 'string', enum: [...VERDICTS, ''] }, reason: { type: 'string' }, direction: { type: 'string', enum: ['ingress', 'egress', 'both', ''] },
          protocol: { type: 'integer' }, src: side, dst: side, policy: { type: 'string' }, egressPolicy: { type: 'string' }, ingressPolicy: { type: 'string' }, forwardPolicy: { type: 'string' },
          packetsFwd: { type: 'integer' }, bytesFwd: { type: 'integer' }, packetsRev: { type: 'integer' }, bytesRev: { type: 'integer' },
          connectionsStarted: { type: 'integer' }, connectionsCompleted: { type: 'integer' }, connectionsLive: { type: 'integer' }, count: { type: 'integer' }, reporter: { type: 'string' },
        } },
      },
    },
  };
}
