// Stable numeric ids for what the datapath names by number: label-set identities, endpoints and
// policy rules. Ids are never reused while the allocator's state is kept (the lab persists it), so
// a flow event recorded before a change still resolves to what it meant when the packet flowed.
import { Identity } from '../datapath/abi.js';

export interface RuleInfo {
  readonly kind: 'NetworkPolicy';
  /** "namespace/name" of the policy */
  readonly policy: string;
  readonly direction: 'Ingress' | 'Egress';
  /** index of the rule within spec.ingress / spec.egress */
  readonly index: number;
}

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
    const key = `${info.kind}|${info.policy}|${info.direction}|${info.index}`;
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
