// The flow row: what the pipeline (src/flows) hands to the store (src/store) and what the store
// keeps, one row per aggregated allowed flow per interval, per denied/audited flow record, per
// Log match, per loss report. The ClickHouse schema (src/store/schema.ts) has one column per
// field, same names; docs/flows.md documents the record.
//
// Conventions: times are UTC milliseconds since the epoch; addresses are IPv6 text, IPv4 as
// IPv4-mapped (`::ffff:10.0.0.1`), `::` when an aggregate does not keep addresses; empty strings
// (not null) for what does not apply, so every column is non-Nullable and cheap.

export type RowKind =
  /** allowed flows of one interval, aggregated per (src, dst, dst port, protocol, verdict, policy) */
  | 'flow'
  /** denied packets of one flow (full 5-tuple, original addresses) */
  | 'denied'
  /** a flow that passed only because of audit mode (full 5-tuple) */
  | 'audit'
  /** a Log rule of a global policy matched a new flow */
  | 'log'
  /** events lost before they became rows: in the ring buffer, a queue, or the spool */
  | 'lost';

export type EndpointKind = 'pod' | 'host' | 'world' | '';

/** Who one side of a flow was when the packet flowed. */
export interface SideIdentity {
  readonly kind: EndpointKind;
  /** IPv6 text (IPv4 mapped); '::' when not kept */
  readonly ip: string;
  readonly port: number;
  readonly namespace: string;
  readonly pod: string;
  readonly labels: Readonly<Record<string, string>>;
  /** owning workload: Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicaSet (no owner: '') */
  readonly workloadKind: string;
  readonly workload: string;
  readonly serviceAccount: string;
  /** the node the pod runs on, or the host's node */
  readonly node: string;
  readonly hostEndpoint: string;
  /** world: a name from the configured CIDR -> name mappings ('' if none) */
  readonly name: string;
}

export interface FlowRow {
  /** end of the aggregation interval, or the record's time for denied/audit/log rows */
  readonly ts: number;
  /** first packet the row stands for */
  readonly start: number;
  readonly kind: RowKind;
  readonly verdict: 'allowed' | 'denied' | 'audit' | '';
  /** enum weir_reason name, e.g. ALLOW_POLICY, DENY_DEFAULT; lost rows: where the loss happened
   * (ring_buffer, input_queue, invalid_record, flow_table, row_buffer, sink_queue, sink_error) */
  readonly reason: string;
  readonly direction: 'ingress' | 'egress' | 'both' | '';
  /** IP protocol number */
  readonly protocol: number;
  readonly src: SideIdentity;
  readonly dst: SideIdentity;
  /** the deciding rule as text, e.g. `x/allow-a ingress[0]`, `gnp/deny-ssh ingress[0] Deny`; '' none */
  readonly policy: string;
  readonly egressPolicy: string;
  readonly ingressPolicy: string;
  readonly forwardPolicy: string;
  readonly packetsFwd: number;
  readonly bytesFwd: number;
  readonly packetsRev: number;
  readonly bytesRev: number;
  /** flow rows: connections that started / completed in the interval, live at its end */
  readonly connectionsStarted: number;
  readonly connectionsCompleted: number;
  readonly connectionsLive: number;
  /** denied rows: packets the row stands for; flow rows: connections; audit and log rows: 1;
   * lost rows: events lost */
  readonly count: number;
  /** the node whose agent wrote the row */
  readonly reporter: string;
}
