// Stable numeric ids for what the datapath names by number: label-set identities, endpoints and
// policy rules. Ids are never reused while the allocator's state is kept (the lab persists it), so
// a flow event recorded before a change still resolves to what it meant when the packet flowed.
import { Identity } from '../datapath/abi.js';

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
}

/** Ids below this are reserved (0 = no rule). */
const FIRST_RULE_ID = 16;

export class IdAllocator {
  private readonly state: IdState;

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
      id = this.state.next.identity++;
      this.state.identities[labelSetKey] = id;
    }
    return id;
  }

  /** An endpoint id for a live endpoint; release() it when the endpoint goes, so a re-created pod
   * of the same name is a new endpoint. */
  endpoint(endpointKey: string): number {
    let id = this.state.endpoints[endpointKey];
    if (id === undefined) {
      id = this.state.next.endpoint++;
      this.state.endpoints[endpointKey] = id;
    }
    return id;
  }

  releaseEndpoint(endpointKey: string): void {
    delete this.state.endpoints[endpointKey];
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
