// The CustomResourceDefinitions of HostEndpoint and GlobalNetworkPolicy, generated from the zod
// schemas the agent validates with (host-schema.ts), so the API server and the agent refuse the
// same objects. `npm run gen:crds` writes them to charts/weir/crds/; a test fails when the
// checked-in files differ from what this module generates.
//
// z.toJSONSchema gives the shape (types, enums, required fields, regexes); the rules zod keeps in
// refine() callbacks are invisible to it, so REFINEMENTS below restates each one in OpenAPI terms,
// by field path. The result is made *structural* as Kubernetes requires (every field typed, no
// $ref, no additionalProperties beside properties, nothing but value validations inside
// anyOf/allOf/not, metadata restricted to its name) and checked with structuralProblems() before
// it is returned. What OpenAPI cannot say (a range's end after its start, ...) is listed in
// AGENT_ONLY_RULES and in the chart's README; the agent refuses those objects with an Event.
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Document, Scalar, parse, visit } from 'yaml';
import { globalNetworkPolicySchema, hostEndpointSchema } from './host-schema.js';
import { repoRoot } from '../paths.js';
import { WATCHED_RESOURCES, WEIR_API_GROUP, WEIR_API_VERSION } from './kubernetes/resources.js';

/** An OpenAPI v3 schema node, as it appears in a CRD (JSONSchemaProps). */
export type Schema = { [key: string]: unknown };

// ---- the rules zod keeps in refine() callbacks, restated (patterns are RE2 and JS alike) ----

const LABEL_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
const DNS_SUBDOMAIN = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';
/** 1-65535, leading zeros allowed (the agent reads "080:090" as 80-90) */
const PORT_DIGITS = '0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
/** IANA_SVC_NAME without lookahead: digits-and-single-hyphens, then the first letter, then
 * letters/digits with single inner hyphens. */
const IANA_SVC_NAME = '([0-9]+-?)*[a-z]([a-z0-9]|-[a-z0-9])*';
/** JavaScript's \s, spelled out: Go's RE2 \s is ASCII only, so the two engines would disagree. The
 * ASCII ones as escapes both engines read; the others literal, as RE2 and JS write \u escapes
 * differently. */
const JS_WHITESPACE = '\\t\\n\\v\\f\\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff';
const IFNAME_CHAR = `[^/:${JS_WHITESPACE}]`;
const IFNAME_FIRST = `[^./:${JS_WHITESPACE}]`;
const PORTED_PROTOCOLS = ['TCP', 'UDP', 'SCTP', 6, 17, 132];

interface Refinement {
  /** field paths, spec.ingress[].source.ports[] style ([] an array item, {} a map value) */
  readonly at: RegExp;
  /** what host-schema.ts checks in code */
  readonly rule: string;
  readonly apply: (node: Schema) => Schema;
}

const labelValue = (n: Schema): Schema => ({ ...n, maxLength: 63, pattern: `^(${LABEL_NAME})?$` });
const emptyList = { maxItems: 0 };

export const REFINEMENTS: readonly Refinement[] = [
  {
    at: /^metadata$/,
    rule: 'metadata.name is a DNS subdomain (labels, annotations and namespace: the API server and the agent, see AGENT_ONLY_RULES)',
    // Kubernetes allows a CRD to restrict metadata.name and generateName, nothing else.
    apply: () => ({ type: 'object', properties: { name: { type: 'string', maxLength: 253, pattern: `^${DNS_SUBDOMAIN}$` } } }),
  },
  {
    at: /selector\.matchLabels\{\}$|selector\.matchExpressions\[\]\.values\[\]$/i,
    rule: 'label values: empty, or up to 63 characters [A-Za-z0-9-_.] starting and ending alphanumeric',
    apply: labelValue,
  },
  {
    at: /selector\.matchExpressions\[\]\.key$/i,
    rule: 'label keys: a qualified name (optional DNS subdomain prefix and "/", then a name of up to 63 characters)',
    apply: (n) => ({ ...n, maxLength: 317, pattern: `^(${DNS_SUBDOMAIN}/)?${LABEL_NAME}$` }),
  },
  {
    at: /selector\.matchExpressions\[\]$/i,
    rule: 'In and NotIn need values; Exists and DoesNotExist take none',
    apply: (n) => ({
      ...n,
      anyOf: [
        { properties: { operator: { enum: ['In', 'NotIn'] }, values: { minItems: 1 } }, required: ['values'] },
        { properties: { operator: { enum: ['Exists', 'DoesNotExist'] }, values: emptyList } },
      ],
    }),
  },
  {
    at: /^spec\.interfaceName$/,
    rule: '"*", or an interface name as Linux accepts it: 1-15 characters, not "." or "..", no "/", ":" or whitespace',
    apply: (n) => ({
      ...n,
      pattern: `^(\\*|\\.\\.${IFNAME_CHAR}{1,13}|\\.[^./:${JS_WHITESPACE}]${IFNAME_CHAR}{0,13}|${IFNAME_FIRST}${IFNAME_CHAR}{0,14})$`,
    }),
  },
  {
    at: /^spec\.expectedIPs\[\]$/,
    rule: 'an IPv4 or IPv6 address',
    apply: (n) => ({ ...n, anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }] }),
  },
  {
    at: /\.(nets|notNets)\[\]$/,
    rule: 'a CIDR or a bare address',
    apply: (n) => ({ ...n, anyOf: [{ format: 'cidr' }, { format: 'ipv4' }, { format: 'ipv6' }] }),
  },
  {
    at: /\.(ports|notPorts)\[\]$/,
    rule: 'a port 1-65535, a range "lo:hi" of such ports, {port, endPort} with both 1-65535, or an IANA_SVC_NAME port name',
    // An integer, a string or an object: no structural type covers all three, so the node keeps
    // unknown fields and is checked by value validations that each apply to one JSON type only.
    apply: () => ({
      'x-kubernetes-preserve-unknown-fields': true,
      minimum: 1, maximum: 65535, multipleOf: 1,
      maxLength: 15, pattern: `^(${PORT_DIGITS}:${PORT_DIGITS}|${IANA_SVC_NAME})$`,
      required: ['port'],
      properties: {
        port: { type: 'integer', minimum: 1, maximum: 65535 },
        endPort: { type: 'integer', minimum: 1, maximum: 65535 },
      },
    }),
  },
  {
    at: /^spec\.(ingress|egress)\[\]\.protocol$/,
    rule: 'TCP, UDP, SCTP, ICMP, ICMPv6 or a protocol number 1-255',
    apply: () => ({
      'x-kubernetes-int-or-string': true,
      anyOf: [{ type: 'integer' }, { type: 'string' }],
      minimum: 1, maximum: 255, pattern: '^(TCP|UDP|SCTP|ICMP|ICMPv6)$',
    }),
  },
  {
    at: /^spec\.(ingress|egress)\[\]$/,
    rule: 'ports and notPorts need the rule\'s protocol to be TCP, UDP or SCTP (by name or number)',
    apply: (n) => {
      const noPorts = { properties: { ports: emptyList, notPorts: emptyList } };
      return {
        ...n,
        anyOf: [
          { properties: { protocol: { enum: PORTED_PROTOCOLS } }, required: ['protocol'] },
          { properties: { source: noPorts, destination: noPorts } },
        ],
      };
    },
  },
  {
    at: /^spec$/,
    rule: 'GlobalNetworkPolicy: ingress (egress) rules need spec.types to be unset, empty or to include Ingress (Egress)',
    apply: (n) => {
      if (!(n.properties as Schema).types) return n; // HostEndpoint's spec
      // "includes Ingress" = not every item is Egress (items are Ingress or Egress); [] is allowed
      const allows = (list: string, other: string) => ({
        anyOf: [
          { properties: { [list]: emptyList } },
          { not: { required: ['types'] } },
          { properties: { types: emptyList } },
          { properties: { types: { not: { items: { enum: [other] } } } } },
        ],
      });
      return { ...n, allOf: [allows('ingress', 'Egress'), allows('egress', 'Ingress')] };
    },
  },
];

/** What the CRDs cannot express; the agent refuses these (tested in test/charts/crd.test.ts). */
export const AGENT_ONLY_RULES: readonly string[] = [
  'a port range "lo:hi" must have hi >= lo, and {port, endPort} must have endPort >= port (comparing two values)',
  'a {port, endPort} entry must have no other keys, and a port entry must not be true, false, a list or null (the entry keeps unknown fields to allow three JSON types)',
  'matchLabels keys must be qualified names (OpenAPI v3.0 cannot constrain map keys); a label key prefix is at most 253 characters (the CRD checks only the whole key, at most 317)',
  'metadata: the value of the policy.weir.dev/audit annotation must be "true" or "false", labels must be valid (the API server checks these itself for every object), and namespace must not be set (the API server drops it on cluster-scoped objects)',
];

// ---- zod's JSON Schema -> a structural schema ----

const SAFE_INT = Number.MAX_SAFE_INTEGER;

function isNull(s: Schema): boolean {
  return s.type === 'null';
}

/** One node of zod's draft-2020-12 output, made structural, with refinements applied. */
function convert(node: Schema, at: string, used: Set<Refinement>): Schema {
  let out: Schema;
  if (Array.isArray(node.anyOf)) {
    const branches = (node.anyOf as Schema[]).filter((b) => !isNull(b));
    const nullable = branches.length < (node.anyOf as Schema[]).length;
    if (branches.length === 1) {
      out = convert(branches[0]!, at, used);
      if (nullable) out = { ...out, nullable: true };
      return out; // refinements were applied by the inner call
    }
    // unions of several types are left to the REFINEMENTS of their path (ports, protocol)
    out = { anyOfTypes: branches.map((b) => b.type) };
  } else {
    out = {};
    for (const [key, value] of Object.entries(node)) {
      switch (key) {
        case '$schema': break;
        case 'type':
          // zod writes a nullable scalar as type: [T, "null"]; OpenAPI v3.0 says nullable
          if (Array.isArray(value) && value.length === 2 && value.includes('null')) {
            out.type = value.find((t) => t !== 'null');
            out.nullable = true;
          } else out.type = value;
          break;
        case 'const': out.enum = [value]; break;
        case 'properties': {
          const props: Schema = {};
          for (const [name, sub] of Object.entries(value as Record<string, Schema>)) {
            props[name] = convert(sub, at ? `${at}.${name}` : name, used);
          }
          out.properties = props;
          break;
        }
        case 'items': out.items = convert(value as Schema, `${at}[]`, used); break;
        case 'additionalProperties':
          // false (strict objects): Kubernetes drops unknown fields and kubectl refuses them
          // (strict field validation), so properties alone say it. {} (loose objects): the same.
          if (typeof value === 'object' && value !== null && Object.keys(value).length > 0 && !node.properties) {
            out.additionalProperties = convert(value as Schema, `${at}{}`, used);
          }
          break;
        case 'propertyNames': break; // not in OpenAPI v3.0: map keys are checked by the agent
        case 'minimum': if (value !== -SAFE_INT) out.minimum = value; break;
        case 'maximum': if (value !== SAFE_INT) out.maximum = value; break;
        default: out[key] = value;
      }
    }
  }
  for (const r of REFINEMENTS) {
    if (r.at.test(at)) {
      out = r.apply(out);
      used.add(r);
    }
  }
  if ('anyOfTypes' in out) throw new Error(`crd: ${at}: a union of ${JSON.stringify(out.anyOfTypes)} has no structural form; add a REFINEMENTS entry for it`);
  return out;
}

/** The openAPIV3Schema of one kind; throws if it is not structural. */
export function openApiSchemaOf(zodSchema: z.ZodType, used = new Set<Refinement>()): Schema {
  const json = z.toJSONSchema(zodSchema, { io: 'input', reused: 'inline', unrepresentable: 'throw' }) as Schema;
  const schema = convert(json, '', used);
  // apiVersion, kind and metadata are the API server's to require; the spec is ours
  schema.required = ((schema.required as string[] | undefined) ?? []).filter((k) => k === 'spec');
  const problems = structuralProblems(schema);
  if (problems.length > 0) throw new Error(`crd: the generated schema is not structural:\n  ${problems.join('\n  ')}`);
  return schema;
}

// ---- what Kubernetes requires of a CRD schema ----

const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);
/** the formats the API server validates (others are refused by our own check, to stay portable) */
const FORMATS = new Set(['ipv4', 'ipv6', 'cidr', 'date-time', 'int32', 'int64', 'hostname', 'uri', 'uuid', 'byte']);
const NOT_IN_K8S = ['$ref', '$schema', '$defs', 'definitions', 'const', 'propertyNames', 'patternProperties', 'prefixItems',
  'additionalItems', 'contains', 'if', 'then', 'else', 'dependentRequired', 'unevaluatedProperties', 'exclusiveMinimum', 'exclusiveMaximum'];
const JUNCTORS = ['anyOf', 'allOf', 'oneOf', 'not'] as const;
/** not allowed inside junctors (Kubernetes' "structural" rule), apart from the int-or-string pattern */
const NOT_IN_JUNCTORS = ['type', 'description', 'title', 'default', 'additionalProperties', 'nullable',
  'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-int-or-string', 'x-kubernetes-embedded-resource'];

function isIntOrStringPattern(list: unknown): boolean {
  return JSON.stringify(list) === JSON.stringify([{ type: 'integer' }, { type: 'string' }]);
}

/** Every way `schema` breaks Kubernetes' rules for CRD schemas (apiextensions' structural schema
 * and OpenAPI validation), as "path: problem". Empty when the API server would accept it. */
export function structuralProblems(schema: Schema): string[] {
  const problems: string[] = [];
  const walk = (s: Schema, at: string, level: 'root' | 'field' | 'item', nested: boolean, outside?: Schema): void => {
    const say = (msg: string) => problems.push(`${at || '<root>'}: ${msg}`);
    for (const k of NOT_IN_K8S) if (k in s) say(`"${k}" is not supported in a CRD schema`);
    if (s.uniqueItems === true) say('uniqueItems: true is forbidden');
    if (s.type !== undefined && !TYPES.has(s.type as string)) say(`type ${JSON.stringify(s.type)} is not one of ${[...TYPES].join(', ')}`);
    if (typeof s.format === 'string' && !FORMATS.has(s.format)) say(`format "${s.format}" is not validated by the API server`);
    if (typeof s.pattern === 'string' && /\(\?[=!<]|\\[1-9]|\\[pP]\{/.test(s.pattern)) say(`pattern ${s.pattern} uses lookaround, backreferences or \\p, which Go's RE2 lacks`);
    if (s.properties && s.additionalProperties !== undefined) say('additionalProperties and properties are mutually exclusive');
    if (s.additionalProperties === false) say('additionalProperties: false is forbidden (unknown fields are pruned)');
    if (s['x-kubernetes-int-or-string'] && s['x-kubernetes-preserve-unknown-fields']) say('int-or-string and preserve-unknown-fields exclude each other');
    if (!nested) {
      if (s.type === 'array' && s.items === undefined) say('an array needs items');
      if (s.type === undefined && !s['x-kubernetes-int-or-string'] && !s['x-kubernetes-preserve-unknown-fields']) say('type must be set');
      if (level === 'root') {
        if (s.type !== 'object') say('the root must be an object');
        if (s.additionalProperties !== undefined) say('additionalProperties is forbidden at the root');
        if (s.nullable) say('nullable is forbidden at the root');
        const meta = (s.properties as Record<string, Schema> | undefined)?.metadata;
        if (meta) {
          const extra = Object.keys((meta.properties as Schema | undefined) ?? {}).filter((k) => k !== 'name' && k !== 'generateName');
          const other = Object.keys(meta).filter((k) => k !== 'type' && k !== 'properties');
          if (meta.type !== 'object' || extra.length > 0 || other.length > 0) say('metadata may only restrict name and generateName');
        }
      }
    } else {
      for (const k of NOT_IN_JUNCTORS) if (k in s) say(`"${k}" must not be used inside anyOf/allOf/oneOf/not`);
      if ((s.properties as Schema | undefined)?.metadata) say('metadata must not be specified in a nested context');
      // a field or item named inside a junctor must be specified outside it too
      for (const name of Object.keys((s.properties as Schema | undefined) ?? {})) {
        if (!(outside?.properties as Schema | undefined)?.[name]) say(`property "${name}" is not specified outside the junctor`);
      }
      if (s.items && !outside?.items) say('items is not specified outside the junctor');
    }
    for (const j of JUNCTORS) {
      const v = s[j];
      if (v === undefined) continue;
      const list = j === 'not' ? [v as Schema] : (v as Schema[]);
      if (!Array.isArray(list)) { say(`${j} must be a list`); continue; }
      const skipFirst = s['x-kubernetes-int-or-string'] && ((j === 'anyOf' && isIntOrStringPattern(v))
        || (j === 'allOf' && isIntOrStringPattern((list[0] as Schema | undefined)?.anyOf)));
      if (j === 'anyOf' && skipFirst) continue;
      list.forEach((sub, i) => {
        if (j === 'allOf' && i === 0 && skipFirst) return;
        walk(sub, `${at}.${j}[${i}]`, level, true, nested ? outside : s);
      });
    }
    const outsideOf = (name: string): Schema | undefined => (outside?.properties as Record<string, Schema> | undefined)?.[name];
    for (const [name, sub] of Object.entries((s.properties as Record<string, Schema> | undefined) ?? {})) {
      walk(sub, at ? `${at}.${name}` : name, 'field', nested, nested ? outsideOf(name) : undefined);
    }
    if (s.items !== undefined) {
      if (Array.isArray(s.items) || typeof s.items !== 'object') say('items must be one schema');
      else walk(s.items as Schema, `${at}[]`, 'item', nested, nested ? (outside?.items as Schema | undefined) : undefined);
    }
    if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      walk(s.additionalProperties as Schema, `${at}{}`, 'field', nested, undefined);
    }
  };
  walk(schema, '', 'root', false);
  return problems;
}

// ---- the CRDs ----

interface KindInfo {
  readonly kind: 'HostEndpoint' | 'GlobalNetworkPolicy';
  readonly schema: z.ZodType;
  readonly singular: string;
  readonly shortNames: readonly string[];
  readonly description: string;
  readonly columns: readonly Schema[];
}

const AGE = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

const KINDS: readonly KindInfo[] = [
  {
    kind: 'HostEndpoint',
    schema: hostEndpointSchema,
    singular: 'hostendpoint',
    shortNames: ['hep', 'heps'],
    description: 'A node\'s interface (or all of its host interfaces, "*") that Weir polices with GlobalNetworkPolicies; its labels are what policies select.',
    columns: [
      { name: 'Node', type: 'string', jsonPath: '.spec.node' },
      { name: 'Interface', type: 'string', jsonPath: '.spec.interfaceName' },
      { name: 'Expected IPs', type: 'string', jsonPath: '.spec.expectedIPs', priority: 1 },
      AGE,
    ],
  },
  {
    kind: 'GlobalNetworkPolicy',
    schema: globalNetworkPolicySchema,
    singular: 'globalnetworkpolicy',
    shortNames: ['gnp', 'gnps'],
    description: 'Ordered Allow/Deny/Pass/Log rules for host endpoints and pods, evaluated before NetworkPolicies (docs/policy.md, "Host protection").',
    columns: [
      { name: 'Order', type: 'number', jsonPath: '.spec.order' },
      { name: 'Types', type: 'string', jsonPath: '.spec.types' },
      { name: 'Selector', type: 'string', jsonPath: '.spec.selector' },
      { name: 'Apply-On-Forward', type: 'boolean', jsonPath: '.spec.applyOnForward', priority: 1 },
      AGE,
    ],
  },
];

/** Both CRDs, as objects; every REFINEMENTS entry must have been used (a renamed field fails here). */
export function customResourceDefinitions(): Schema[] {
  const used = new Set<Refinement>();
  const crds = KINDS.map((k) => {
    const watched = WATCHED_RESOURCES.find((r) => r.group === WEIR_API_GROUP && r.kind === k.kind);
    if (!watched) throw new Error(`crd: ${k.kind} is not in WATCHED_RESOURCES`);
    const schema = openApiSchemaOf(k.schema, used);
    return {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: {
        name: `${watched.resource}.${WEIR_API_GROUP}`,
        labels: { 'app.kubernetes.io/part-of': 'weir' },
      },
      spec: {
        group: WEIR_API_GROUP,
        scope: watched.namespaced ? 'Namespaced' : 'Cluster',
        names: { kind: k.kind, listKind: `${k.kind}List`, plural: watched.resource, singular: k.singular, shortNames: [...k.shortNames], categories: ['weir'] },
        versions: [{
          name: WEIR_API_VERSION,
          served: true,
          storage: true,
          additionalPrinterColumns: k.columns,
          schema: { openAPIV3Schema: { description: k.description, ...schema } },
        }],
      },
    };
  });
  const unused = REFINEMENTS.filter((r) => !used.has(r));
  if (unused.length > 0) throw new Error(`crd: refinements that match no field: ${unused.map((r) => r.at).join(', ')}`);
  return crds;
}

const HEADER = '# Generated by `npm run gen:crds` from src/datastore/host-schema.ts (src/datastore/crd.ts). Do not edit.\n';

/** YAML that any parser reads alike: strings with non-ASCII characters (the whitespace class of
 * the interface name pattern) double-quoted with \\u escapes, as YAML 1.1 parsers (Go's) read
 * U+2028 as a line break and U+FEFF is not allowed in a scalar at all. */
function toYaml(value: unknown): string {
  const doc = new Document(value, { aliasDuplicateObjects: false });
  visit(doc, {
    Scalar(_, node) {
      if (typeof node.value === 'string' && /[^\x20-\x7e]/.test(node.value)) node.type = Scalar.QUOTE_DOUBLE;
    },
  });
  // only double-quoted scalars hold non-ASCII characters now, and there \uXXXX means the character
  const text = doc.toString({ lineWidth: 0 }).replace(/[^\x00-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (JSON.stringify(parse(text)) !== JSON.stringify(value)) throw new Error('crd: the YAML does not read back as the CRD');
  return text;
}

/** file name -> YAML text, as written to charts/weir/crds/ */
export function crdFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const crd of customResourceDefinitions()) {
    const name = (crd.metadata as { name: string }).name;
    files.set(`${name}.yaml`, HEADER + toYaml(crd));
  }
  return files;
}

export const CRD_DIR = path.join(repoRoot, 'charts', 'weir', 'crds');

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? CRD_DIR;
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of crdFiles()) {
    writeFileSync(path.join(dir, name), text);
    console.log(`wrote ${path.join(dir, name)}`);
  }
}
