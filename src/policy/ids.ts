// Stable numeric ids for what the datapath names by number: label-set identities, endpoints and
// policy rules. Ids are never reused while the allocator's state is kept (the lab persists it), so
// a flow event recorded before a change still resolves to what it meant when the packet flowed.
//
// Lifetimes: an id stays while something uses it. A long-running user (the node agent) marks the
// ids one compile uses (beginUse ... releaseUnused); an identity or endpoint key no compile has
// used for a grace period is forgotten, so the state stays as large as the live cluster however
// many pods come and go. A forgotten key that comes back gets a new number (numbers are not
// reused), and identity numbers stop below FIRST_CIDR_CLASS, where CIDR class ids begin.
import { FIRST_CIDR_CLASS, Identity } from '../datapath/abi.js';

export type RuleInfo =
  | {
    readonly kind: 'NetworkPolicy';
    /** "namespace/name" of the policy */
    readonly policy: string;
    readonly direction: 'Ingress' | 'Egress';
    /** index of the rule within spec.ingress / spec.egress */
    readonly index: number;
  }
  | {
    readonly kind: 'GlobalNetworkPolicy';
    /** the policy's name (cluster-scoped) */
    readonly policy: string;
    readonly direction: 'Ingress' | 'Egress';
    /** index of the rule within spec.ingress / spec.egress */
    readonly index: number;
    readonly action: 'Allow' | 'Deny' | 'Pass' | 'Log';
  };

export interface IdState {
  identities: Record<string, number>;
  endpoints: Record<string, number>;
  rules: Record<string, number>;
  ruleInfo: Record<string, RuleInfo>;
  next: { identity: number; endpoint: number; rule: number };
  /** when a key was first seen unused (ms since the epoch): forgotten once the grace has passed */
  unused?: { identities: Record<string, number>; endpoints: Record<string, number> };
}

/** Thrown when identity numbers run into the CIDR class ids (FIRST_CIDR_CLASS). */
export class IdentitySpaceExhausted extends Error {
  constructor(readonly labelSetKey: string) {
    super(`identity: no number left below ${FIRST_CIDR_CLASS} (the CIDR class ids) for label set ${labelSetKey}; `
      + 'identities unused for the grace period are released, so this means that many live label sets');
    this.name = 'IdentitySpaceExhausted';
  }
}

/** What releaseUnused() did. */
export interface ReleaseResult {
  readonly identities: number;
  readonly endpoints: number;
}

/** Ids below this are reserved (0 = no rule). */
const FIRST_RULE_ID = 16;

export class IdAllocator {
  private readonly state: IdState;
  /** keys used since beginUse() (undefined: not tracking) */
  private used?: { identities: Set<string>; endpoints: Set<string> };
  /** identity allocations refused at FIRST_CIDR_CLASS (a counter for metrics) */
  private refused = 0;

  constructor(state?: IdState) {
    this.state = state ? structuredClone(state) : {
      identities: {},
      endpoints: {},
      rules: {},
      ruleInfo: {},
      next: { identity: Identity.FIRST_DYNAMIC, endpoint: 1, rule: FIRST_RULE_ID },
    };
  }

  toJSON(): IdState {
    return structuredClone(this.state);
  }

  identity(labelSetKey: string): number {
    let id = this.state.identities[labelSetKey];
    if (id === undefined) {
      // a CIDR class and an identity must never share a number: the datapath tells them apart by it
      if (this.state.next.identity >= FIRST_CIDR_CLASS) {
        this.refused++;
        throw new IdentitySpaceExhausted(labelSetKey);
      }
      id = this.state.next.identity++;
      this.state.identities[labelSetKey] = id;
    }
    this.used?.identities.add(labelSetKey);
    return id;
  }

  /** Identity allocations refused so far (identity numbers exhausted). */
  get identitiesRefused(): number {
    return this.refused;
  }

  /** Starts recording which identities and endpoints are used (one compile). */
  beginUse(): void {
    this.used = { identities: new Set(), endpoints: new Set() };
  }

  /**
   * Ends the record begun by beginUse(): identities and endpoints it did not use are forgotten
   * once unused for graceMs (measured from the first record that did not use them; a use in
   * between starts over). The grace lets flow records of a pod that just went, still in the ring
   * or in conntrack, carry its numbers while they mean it.
   */
  releaseUnused(nowMs: number, graceMs: number): ReleaseResult {
    if (!Number.isFinite(nowMs)) throw new Error(`releaseUnused: nowMs ${nowMs} is not a time`);
    if (!(graceMs >= 0)) throw new Error(`releaseUnused: graceMs ${graceMs} is not a duration >= 0`);
    const used = this.used;
    if (!used) throw new Error('releaseUnused: beginUse() was not called');
    this.used = undefined;
    const unused = (this.state.unused ??= { identities: {}, endpoints: {} });
    const sweep = (ids: Record<string, number>, since: Record<string, number>, live: Set<string>): number => {
      let released = 0;
      for (const key of Object.keys(since)) if (live.has(key) || ids[key] === undefined) delete since[key];
      for (const key of Object.keys(ids)) {
        if (live.has(key)) continue;
        const at = (since[key] ??= nowMs);
        if (nowMs - at >= graceMs) {
          delete ids[key];
          delete since[key];
          released++;
        }
      }
      return released;
    };
    return {
      identities: sweep(this.state.identities, unused.identities, used.identities),
      endpoints: sweep(this.state.endpoints, unused.endpoints, used.endpoints),
    };
  }

  /** How many identities and endpoints are held now (live and in their grace). */
  sizes(): { identities: number; endpoints: number } {
    return { identities: Object.keys(this.state.identities).length, endpoints: Object.keys(this.state.endpoints).length };
  }

  /** An endpoint id for a live endpoint; release() it when the endpoint goes, so a re-created pod
   * of the same name is a new endpoint. */
  endpoint(endpointKey: string): number {
    let id = this.state.endpoints[endpointKey];
    if (id === undefined) {
      id = this.state.next.endpoint++;
      this.state.endpoints[endpointKey] = id;
    }
    this.used?.endpoints.add(endpointKey);
    return id;
  }

  releaseEndpoint(endpointKey: string): void {
    delete this.state.endpoints[endpointKey];
    if (this.state.unused) delete this.state.unused.endpoints[endpointKey];
  }

  rule(info: RuleInfo): number {
    // A global rule's action is part of its key: a record keeps naming the action that decided.
    const key = info.kind === 'NetworkPolicy'
      ? `${info.kind}|${info.policy}|${info.direction}|${info.index}`
      : `${info.kind}|${info.policy}|${info.direction}|${info.index}|${info.action}`;
    let id = this.state.rules[key];
    if (id === undefined) {
      id = this.state.next.rule++;
      this.state.rules[key] = id;
      this.state.ruleInfo[id] = info;
    }
    return id;
  }

  ruleInfo(id: number): RuleInfo | undefined {
    return this.state.ruleInfo[id];
  }
}
