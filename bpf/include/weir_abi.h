/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Weir's ABI between the BPF programs and user space: the one source of truth for every map key,
 * map value and ring-buffer record. The TypeScript codecs in src/datapath/abi.ts are checked
 * against the BTF that clang emits for these structs (test/datapath/abi-btf.test.ts), so a change
 * here that is not mirrored there fails the test suite instead of silently misreading memory.
 *
 * Rules for editing:
 *  - Every struct is naturally aligned with explicit padding; sizes are _Static_asserted.
 *  - A layout change bumps the map's version suffix (WEIR_MAP_VERSION / the _vN in map names), so an
 *    upgraded agent never misreads a map pinned by an older one, and WEIR_EVENT_VERSION for records.
 *  - Addresses are always 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
 *    (::ffff:a.b.c.d), so one key type serves both families.
 */
#ifndef WEIR_ABI_H
#define WEIR_ABI_H

#include <linux/types.h>

#define WEIR_EVENT_VERSION 2

/* Reserved identities. Identities >= WEIR_ID_FIRST_DYNAMIC are label-set identities that user
 * space allocates, one per distinct (namespace, namespace labels, pod labels). */
#define WEIR_ID_ANY 0   /* wildcard peer in policy keys; never an endpoint's identity */
#define WEIR_ID_HOST 1  /* this node (any address configured on it) */
#define WEIR_ID_WORLD 2 /* an address no endpoint holds */
#define WEIR_ID_FIRST_DYNAMIC 256

enum weir_event_type {
	WEIR_EV_FLOW_START = 1, /* a new flow was allowed (or audited) by a policy decision */
	WEIR_EV_DENY = 2,       /* denied packet(s) of a flow; rate-limited per flow, see count */
	WEIR_EV_FLOW_END = 3,   /* a tracked flow ended: FIN both ways, RST, or conntrack expiry */
	WEIR_EV_LOST = 4,       /* ring-buffer reservations that failed since the last LOST record */
	WEIR_EV_LOG = 5,        /* a Log rule of a global policy matched a new flow (the rule is in
	                           the rule id of the record's direction; verdict and reason: that
	                           side's decision) */
};

enum weir_verdict {
	WEIR_VERDICT_NONE = 0,
	WEIR_VERDICT_ALLOW = 1,
	WEIR_VERDICT_DENY = 2,
	WEIR_VERDICT_AUDIT = 3, /* would have been denied, passed because of audit mode */
};

/* Direction of a policy decision, relative to the endpoint whose policy decided. */
enum weir_direction {
	WEIR_DIR_INGRESS = 0,
	WEIR_DIR_EGRESS = 1,
	WEIR_DIR_BOTH = 2, /* flow-end records: they close the flow, not one decision */
};

/* Which program saw the packet. */
enum weir_hook {
	WEIR_HOOK_NONE = 0,
	WEIR_HOOK_FROM_POD = 1, /* tc ingress on the host side of a pod veth: the pod's egress */
	WEIR_HOOK_TO_POD = 2,   /* tc egress on the host side of a pod veth: the pod's ingress */
	WEIR_HOOK_FROM_HOST_DEV = 3, /* tc ingress on a host device: traffic entering the node */
	WEIR_HOOK_TO_HOST_DEV = 4,   /* tc egress on a host device: traffic leaving the node */
	WEIR_HOOK_GC = 5,       /* the conntrack garbage collector (flow-end by expiry) */
};

/* Why a packet got its verdict. Every packet a Weir program sees is counted under exactly one
 * reason in the per-CPU weir_stats map (packets and bytes); user space names them in metrics. */
enum weir_reason {
	WEIR_R_UNKNOWN = 0,
	WEIR_R_ALLOW_POLICY = 1,         /* new flow, a policy rule allowed it */
	WEIR_R_ALLOW_NOT_ISOLATED = 2,   /* new flow, no policy isolates the endpoint this way */
	WEIR_R_ALLOW_ESTABLISHED = 3,    /* packet of a flow already allowed (either direction) */
	WEIR_R_ALLOW_UNPOLICED = 4,      /* no Weir endpoint to police here (e.g. host device
	                                    without a host endpoint) */
	WEIR_R_PASS_NON_IP = 5,          /* ARP and other non-IP frames */
	WEIR_R_PASS_NDP = 6,             /* IPv6 neighbour/router discovery and MLD */
	WEIR_R_DENY_DEFAULT = 7,         /* isolated endpoint, no rule allowed the flow */
	WEIR_R_DENY_POLICY = 8,          /* an explicit deny rule (global policies) */
	WEIR_R_DROP_MALFORMED = 9,       /* truncated or inconsistent headers */
	WEIR_R_DROP_SPOOFED = 10,        /* source address does not belong to the sending pod */
	WEIR_R_DROP_UNAPPROVED_REPLY = 11, /* reply direction of a flow that was never allowed */
	WEIR_R_AUDIT = 12,               /* would be denied; passed because of audit mode */
	WEIR_R_DROP_CT_FULL = 13,        /* new flow could not be tracked (conntrack map full) */
	WEIR_R_ALLOW_HOST = 14,          /* new flow between a pod and its own node: NetworkPolicy
	                                    always allows it */
	WEIR_R_ALLOW_FAILSAFE = 15,      /* host endpoint: a failsafe port (before any policy) */
	WEIR_R_ALLOW_GLOBAL = 16,        /* an Allow rule of a global policy */
	WEIR_R_DENY_END_OF_TIER = 17,    /* global policies selected the endpoint this way, none of
	                                    their rules decided or passed */
	WEIR_R_DENY_HOST_DEFAULT = 18,   /* host endpoint, the host's own traffic, no global rule
	                                    allowed it: default deny */
	WEIR_R_ALLOW_FORWARDED = 19,     /* traffic forwarded through a host endpoint that no
	                                    applyOnForward policy decided: allowed by default */
	WEIR_R_MAX = 24,
};

/* Per-CPU counters that are not per-packet reasons (map weir_counters, indexed by these). */
enum weir_counter {
	WEIR_C_EVENTS_LOST = 0,       /* ring-buffer reserve failures (records never written) */
	WEIR_C_EVENTS_SENT = 1,       /* records committed to the ring buffer */
	WEIR_C_DENY_SUPPRESSED = 2,   /* denied packets folded into a later DENY record (rate limit) */
	WEIR_C_CT_CREATED = 3,
	WEIR_C_CT_EXPIRED = 4,        /* entries removed by the collector */
	WEIR_C_CT_CREATE_FAILED = 5,
	WEIR_C_CT_MISS_MIDSTREAM = 6, /* a TCP packet without SYN that no entry answered either way:
	                                 its entry was evicted (the LRU conntrack map was full) or
	                                 expired, or the flow predates the datapath. It is judged by
	                                 policy as a new flow, never passed as established. */
	WEIR_C_MAX = 8,
};

/* IP protocol numbers used in keys (0 = any in policy keys). */
#define WEIR_PROTO_ANY 0
#define WEIR_PROTO_ICMP 1
#define WEIR_PROTO_TCP 6
#define WEIR_PROTO_UDP 17
#define WEIR_PROTO_ICMPV6 58
#define WEIR_PROTO_SCTP 132

/* ---- maps ---------------------------------------------------------------------------------- */

/* The policy state comes in two copies, slot 0 and slot 1 (maps weir_endpoints_v3_0/_1,
 * weir_policy_v3_0/_1, weir_prange_v1_0/_1, weir_ipcache_v1_0/_1). The programs judge a packet from the slot of the
 * policy generation they read once per packet (weir_config.generation & 1); user space fills the
 * other slot completely, then bumps the generation, which flips every map at once
 * (docs/datapath.md: atomic updates). */
#define WEIR_SLOTS 2

/* weir_endpoints_v3_N (hash): which endpoint holds an address. Key: a 16-byte address. */
struct weir_ip_key {
	__u8 addr[16];
};

#define WEIR_EP_LOCAL (1u << 0)            /* a pod on this node: its veth carries our programs */
#define WEIR_EP_ISOLATED_INGRESS (1u << 1) /* some policy selects it for ingress */
#define WEIR_EP_ISOLATED_EGRESS (1u << 2)  /* some policy selects it for egress */
/* Audit mode per direction: a default deny passes with verdict AUDIT. Set for a pod (or namespace)
 * in audit mode, or where only audit-mode policies isolate the pod in that direction. */
#define WEIR_EP_AUDIT_INGRESS (1u << 3)
#define WEIR_EP_AUDIT_EGRESS (1u << 12)
/* Summary of the identity's rules, so the datapath skips lookups that cannot hit: */
#define WEIR_EP_PEER_RULES_INGRESS (1u << 4) /* some ingress key names a peer identity */
#define WEIR_EP_ANY_RULES_INGRESS (1u << 5)  /* some ingress key has peer WEIR_ID_ANY */
#define WEIR_EP_PEER_RULES_EGRESS (1u << 6)
#define WEIR_EP_ANY_RULES_EGRESS (1u << 7)
#define WEIR_EP_CIDR_RULES_INGRESS (1u << 8) /* some ingress key names a CIDR class */
#define WEIR_EP_CIDR_RULES_EGRESS (1u << 9)
#define WEIR_EP_RANGE_RULES_INGRESS (1u << 10) /* some ingress key is a port-range block */
#define WEIR_EP_RANGE_RULES_EGRESS (1u << 11)
/* (bit 12: WEIR_EP_AUDIT_EGRESS, above) */
/* The global tier (GlobalNetworkPolicy): a weir_gtier list exists for this identity ... */
#define WEIR_EP_GLOBAL_INGRESS (1u << 13) /* ... for ingress, audit-mode policies left out */
#define WEIR_EP_GLOBAL_EGRESS (1u << 14)
#define WEIR_EP_GAUDIT_INGRESS (1u << 15) /* ... for ingress with audit-mode policies (some select it) */
#define WEIR_EP_GAUDIT_EGRESS (1u << 16)
/* The pod or its namespace (or, on a weir_host_iface, the host endpoint) is in audit mode: every
 * denial on that side, global ones included, passes with verdict AUDIT. */
#define WEIR_EP_AUDIT_ALL (1u << 17)

struct weir_endpoint {
	__u32 id;       /* endpoint id, stable for the endpoint's life, 0 = none */
	__u32 identity; /* label-set identity; WEIR_ID_HOST for this node's addresses, WEIR_ID_WORLD
	                   for another node's host-endpoint addresses */
	__u32 ifindex;  /* host-side veth of a local pod; 0 = do not check the sending interface */
	__u32 flags;    /* WEIR_EP_* */
	__u32 sel_identity; /* what global-policy selectors see at this address: a pod's identity, or
	                       the identity of the host endpoints whose expectedIPs list it; 0 = none */
	__u32 pad;
};

/* CIDR classes: every distinct prefix the policy set's ipBlocks (cidr and except) name gets a
 * class id >= WEIR_ID_FIRST_CIDR_CLASS. An address's class is its longest listed prefix
 * (weir_ipcache_v1_N); an ipBlock covers a class iff its cidr contains the class's prefix and no
 * except does, so one policy key per class stands for "every address of the class". */
#define WEIR_ID_FIRST_CIDR_CLASS (1u << 24)

/* weir_ipcache_v1_N (LPM trie): address -> CIDR class. IPv4 as ::ffff:a.b.c.d, prefix + 96. */
struct weir_ipcache_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct weir_ipcache_value {
	__u32 class_id;
	__u32 pad;
};

/* Policy keys: allow rules, compiled per (subject identity, direction, peer). The peer is a
 * label-set identity, a CIDR class or WEIR_ID_ANY. For one peer kind the datapath looks up, first
 * hit deciding: the exact port {proto, dport} (weir_policy_v3_N, hash), the port-range blocks
 * holding dport (weir_prange_v1_N, LPM trie; only for identities with range rules), the whole
 * protocol {proto, 0}, every protocol {0, 0} (hash). Every key carries the best rule (rank) of
 * every key that covers it (user space folds them), so the first hit of a kind is that kind's
 * best rule; the datapath then takes the lowest rank over the peer kinds (identity, CIDR class,
 * ANY): the rule the reference evaluator names (first by policy "namespace/name", then index).
 * Hash lookups for the common exact ports and "all" rules keep the cost independent of the
 * number of keys; only ranges pay an LPM walk. */
struct weir_policy_key {
	__u32 identity; /* the policed endpoint's identity */
	__u32 peer;     /* the other side's identity or CIDR class, or WEIR_ID_ANY */
	__u16 port;     /* destination port, host byte order; 0 = every port of proto */
	__u8 proto;     /* WEIR_PROTO_* (TCP, UDP, SCTP); 0 = a rule without ports */
	__u8 direction; /* enum weir_direction: INGRESS or EGRESS */
};

/* weir_prange_v1_N (LPM trie): a port range, split into aligned power-of-two blocks; a block of
 * 2^k ports has prefix WEIR_PRANGE_PREFIX_PROTO + 16 - k. The port comes last and big-endian, so
 * a prefix of the key is a block of ports. */
struct weir_prange_key {
	__u32 prefixlen;
	__u32 identity;
	__u32 peer;
	__u8 direction;
	__u8 proto;
	__be16 port;
};

#define WEIR_PRANGE_PREFIX_PROTO 80 /* identity, peer, direction, proto */

struct weir_policy_value {
	__u32 rule_id; /* names policy + direction + rule index in user space's rule table */
	__u32 rank;    /* the rule's position in the reference order; lower wins */
};

/* ---- host protection (docs/policy.md "Host protection") ------------------------------------ */

/* weir_hostif_v1_N (hash, key __u32 ifindex): the host endpoint covering a host interface of this
 * node that carries weir_from_host_dev/weir_to_host_dev (a HostEndpoint naming it, else the
 * node's "*" endpoint). Key 0 is the node's "*" endpoint itself, which also covers traffic between
 * the host and its own pods (judged at the pod hooks). No entry: the interface is not policed. */
struct weir_host_iface {
	__u32 id;       /* the host endpoint's endpoint id (records) */
	__u32 identity; /* its identity: the subject of its weir_gtier lists */
	__u32 flags;    /* WEIR_EP_AUDIT_ALL */
	__u32 pad;
};

/* weir_gtier_v1_N (hash): the global tier of one subject (pod identity or host endpoint identity)
 * in one direction: the rules of the global policies selecting it, in evaluation order, stored
 * contiguously in weir_grules_v1_N. No entry = no global policy selects it that way. */
#define WEIR_GT_FORWARDED 1u  /* for forwarded traffic: applyOnForward policies only */
#define WEIR_GT_WITH_AUDIT 2u /* audit-mode policies included (for the audit verdict only) */

struct weir_gtier_key {
	__u32 identity;
	__u8 direction; /* enum weir_direction: INGRESS or EGRESS */
	__u8 variant;   /* WEIR_GT_* */
	__u16 pad;
};

struct weir_gtier_value {
	__u32 first; /* index of the first rule in weir_grules_v1_N */
	__u32 count; /* 0: selected, no rules (end-of-tier deny) */
};

/* weir_grules_v1_N (array): compiled global rules. Every condition is a set id, 0 = no condition:
 *  - *_sel: weir_gset {set, sel_identity of that side's address, 0} (selector, namespaceSelector)
 *  - *_nets, *_not_nets: weir_gset {set, CIDR class of that side's address, 0}
 *  - *_ports, *_not_ports: weir_gport {set, port} blocks, or weir_gset {set, sel_identity of that
 *    side, proto << 16 | port} for named ports. Ports only exist for TCP, UDP and SCTP: for other
 *    protocols (and later fragments) a ports condition never matches, a notPorts one always. */
enum weir_gaction {
	WEIR_GACT_ALLOW = 1,
	WEIR_GACT_DENY = 2,
	WEIR_GACT_PASS = 3, /* ends the global tier: the NetworkPolicy tier (or host default) decides */
	WEIR_GACT_LOG = 4,  /* records the match (WEIR_EV_LOG) and goes on */
};

struct weir_grule {
	__u32 rule_id;
	__u8 action; /* enum weir_gaction */
	__u8 proto;  /* 0 = any */
	__u16 pad;
	__u32 src_sel;
	__u32 dst_sel;
	__u32 src_nets;
	__u32 dst_nets;
	__u32 src_not_nets;
	__u32 dst_not_nets;
	__u32 src_ports;
	__u32 dst_ports;
	__u32 src_not_ports;
	__u32 dst_not_ports;
};

/* weir_gset_v1_N (hash, value __u32 1): set membership. Sets 1 and 2 are the failsafe ports
 * (inbound, outbound: member 0, port proto << 16 | port); compiled sets start at 16. */
#define WEIR_GSET_FAILSAFE_IN 1
#define WEIR_GSET_FAILSAFE_OUT 2
#define WEIR_GSET_FIRST_DYNAMIC 16

struct weir_gset_key {
	__u32 set;
	__u32 member;
	__u32 port;
};

/* weir_gport_v1_N (LPM trie, value __u32 1): port blocks of a port set; an aligned block of 2^k
 * ports has prefixlen WEIR_GPORT_PREFIX_SET + 16 - k. */
struct weir_gport_key {
	__u32 prefixlen;
	__u32 set;
	__be16 port;
	__u16 pad;
};

#define WEIR_GPORT_PREFIX_SET 32

/* weir_ct_v3 (LRU hash): one entry per connection, keyed by the tuple of its first packet
 * (the initiator's direction). Replies are found by looking up the reversed tuple. */
struct weir_ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host byte order; ICMP echo: the identifier in both ports */
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

#define WEIR_CT_NEED_EGRESS (1u << 0)  /* source is a local pod: its egress policy must allow */
#define WEIR_CT_NEED_INGRESS (1u << 1) /* destination is a local pod: its ingress must allow */
#define WEIR_CT_EGRESS_OK (1u << 2)
#define WEIR_CT_INGRESS_OK (1u << 3)
#define WEIR_CT_FIN_FWD (1u << 4)      /* FIN seen from the initiator */
#define WEIR_CT_FIN_REV (1u << 5)      /* FIN seen from the responder */
#define WEIR_CT_RST (1u << 6)
#define WEIR_CT_ENDED (1u << 7)        /* FLOW_END already emitted; the entry lingers briefly */
#define WEIR_CT_SEEN_REPLY (1u << 8)
#define WEIR_CT_AUDITED (1u << 9)      /* some decision passed only because of audit mode */
#define WEIR_CT_SRC_VETH (1u << 10)    /* created at FROM_POD: ifindex is the source pod's veth,
                                          where the source address passed anti-spoofing */
/* Host devices judge a flow once per hook: entering the node (IN, weir_from_host_dev) and leaving
 * it (OUT, weir_to_host_dev), so a flow forwarded from one policed interface to another meets
 * both host endpoints' forwarded policies. */
#define WEIR_CT_HOSTDEV_IN_SEEN (1u << 11)  /* judged entering: later packets there pass */
#define WEIR_CT_HOSTDEV_OUT_SEEN (1u << 12) /* judged leaving */
#define WEIR_CT_HOSTDEV_IN_DENIED (1u << 13)  /* ... and denied: replies are refused, and its next
                                                 packet there is judged again */
#define WEIR_CT_HOSTDEV_OUT_DENIED (1u << 14)

struct weir_ct_entry {
	__u64 created_ns;   /* first packet; like every Weir timestamp, CLOCK_MONOTONIC at tick
	                       resolution (bpf_ktime_get_coarse_ns) */
	__u64 last_seen_ns;
	__u64 packets_fwd;  /* initiator -> responder */
	__u64 bytes_fwd;
	__u64 packets_rev;  /* responder -> initiator */
	__u64 bytes_rev;
	__u32 src_ep;       /* endpoint ids at creation (0 = not an endpoint) */
	__u32 dst_ep;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 egress_rule_id;  /* rule that allowed the source's egress (0 = none needed/none) */
	__u32 ingress_rule_id; /* rule that allowed the destination's ingress */
	__u32 ifindex;      /* interface of the first packet */
	__u32 rev_ifindex;  /* the destination pod's veth, where its address passed anti-spoofing
	                       (its endpoint's ifindex, or the veth its ingress approved the flow
	                       on, or a reply's veth after a full check); 0 = unknown. A reply at
	                       FROM_POD through this veth needs no endpoint lookup. */
	__u16 flags;        /* WEIR_CT_* */
	__u8 tcp_flags_fwd; /* OR of TCP flags seen per direction */
	__u8 tcp_flags_rev;
	__u32 forward_rule_id; /* rule of a host endpoint the flow was forwarded through
	                          (applyOnForward; the last one that judged it); 0 = none */
};

/* weir_deny_rl_v2 (LRU hash, key struct weir_ct_key): rate limit of DENY records per flow, and
 * the verdict cache of denied flows. While the policy generation is unchanged and the DENY-record
 * interval has not elapsed, a packet of the tuple at the same hook and interface that misses
 * conntrack is dropped under the cached reason without being judged again (docs/datapath.md). */
struct weir_deny_rl {
	__u64 last_event_ns;
	__u32 suppressed; /* denied packets since the last DENY record */
	__u32 generation; /* weir_config.generation the cached verdict was judged under */
	__u32 ifindex;    /* interface and hook of the cached verdict */
	__u16 reason;     /* its reason (enum weir_reason); 0 = nothing cached */
	__u8 hook;
	__u8 pad;
};

/* weir_config_v1 (array, 1 entry): state user space shares with the programs. */
struct weir_config {
	__u32 generation; /* bumped by user space after every change of the endpoint or policy maps;
	                     its parity is the slot of the policy maps in force */
	__u32 pad;
};

/* weir_stats_v2 (per-CPU array, index enum weir_reason). */
struct weir_stat {
	__u64 packets;
	__u64 bytes;
};

/* weir_counters_v1 (per-CPU array of __u64, index enum weir_counter). */

/* ---- ring-buffer records (map weir_events_v2) ----------------------------------------------- */

struct weir_event_hdr {
	__u8 version; /* WEIR_EVENT_VERSION */
	__u8 type;    /* enum weir_event_type */
	__u16 len;    /* bytes of the whole record, header included */
	__u32 cpu;
};

struct weir_flow_event {
	struct weir_event_hdr hdr;
	__u64 ts_ns;       /* CLOCK_MONOTONIC (coarse: tick resolution) when the record was made */
	__u64 start_ns;    /* flow's first packet (FLOW_END); the packet's time otherwise */
	__u8 saddr[16];    /* original source: the initiator as it sent the packet, before any NAT */
	__u8 daddr[16];
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u8 proto;
	__u8 family;       /* 4 or 6 */
	__u8 direction;    /* enum weir_direction */
	__u8 verdict;      /* enum weir_verdict */
	__u16 reason;      /* enum weir_reason */
	__u8 hook;         /* enum weir_hook */
	__u8 tcp_flags;    /* flags of this packet (START/DENY) or OR of both ways (END) */
	__u32 ifindex;
	__u32 src_ep;      /* endpoint ids (0 = not an endpoint) */
	__u32 dst_ep;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 egress_rule_id;  /* deciding rules; 0 = none (default deny, not isolated, ...): the
	                          source's egress and the destination's ingress, pod or host */
	__u32 ingress_rule_id;
	__u32 count;       /* DENY: packets this record stands for (1 + suppressed); 1 otherwise */
	__u32 forward_rule_id; /* rule of a host endpoint the flow is forwarded through */
	__u64 packets_fwd; /* FLOW_END: counters of the whole flow */
	__u64 bytes_fwd;
	__u64 packets_rev;
	__u64 bytes_rev;
};

struct weir_lost_event {
	struct weir_event_hdr hdr;
	__u64 ts_ns;
	__u64 lost; /* reservations that failed on this CPU since its previous LOST record */
};

/* ---- weir_policy_explain's answer (`weir policy explain`) ------------------------------------
 * The program writes this over struct __sk_buff cb[0..4]; user space reads it back from the
 * context BPF_PROG_TEST_RUN returns. Each side word is verdict | reason << 8, plus
 * WEIR_EXPLAIN_APPLIES when that side is a local pod (a hook polices it); 0 = not applicable. */
#define WEIR_EXPLAIN_APPLIES (1u << 31)
#define WEIR_EXPLAIN_NON_IP 1    /* return value: the packet is not IP */
#define WEIR_EXPLAIN_MALFORMED 2 /* return value: the packet did not parse */

struct weir_explain_result {
	__u32 egress;          /* the source pod's egress decision */
	__u32 egress_rule_id;
	__u32 ingress;         /* the destination pod's ingress decision */
	__u32 ingress_rule_id;
	__u32 generation;      /* the policy state the decisions were made from */
};

_Static_assert(sizeof(struct weir_explain_result) == 20, "weir_explain_result fills __sk_buff cb[5]");
_Static_assert(sizeof(struct weir_ip_key) == 16, "weir_ip_key layout");
_Static_assert(sizeof(struct weir_endpoint) == 24, "weir_endpoint layout");
_Static_assert(sizeof(struct weir_host_iface) == 16, "weir_host_iface layout");
_Static_assert(sizeof(struct weir_gtier_key) == 8, "weir_gtier_key layout");
_Static_assert(sizeof(struct weir_gtier_value) == 8, "weir_gtier_value layout");
_Static_assert(sizeof(struct weir_grule) == 48, "weir_grule layout");
_Static_assert(sizeof(struct weir_gset_key) == 12, "weir_gset_key layout");
_Static_assert(sizeof(struct weir_gport_key) == 12, "weir_gport_key layout");
_Static_assert(sizeof(struct weir_policy_key) == 12, "weir_policy_key layout");
_Static_assert(sizeof(struct weir_prange_key) == 16, "weir_prange_key layout");
_Static_assert(sizeof(struct weir_ipcache_key) == 20, "weir_ipcache_key layout");
_Static_assert(sizeof(struct weir_ipcache_value) == 8, "weir_ipcache_value layout");
_Static_assert(sizeof(struct weir_policy_value) == 8, "weir_policy_value layout");
_Static_assert(sizeof(struct weir_ct_key) == 40, "weir_ct_key layout");
_Static_assert(sizeof(struct weir_ct_entry) == 88, "weir_ct_entry layout");
_Static_assert(sizeof(struct weir_deny_rl) == 24, "weir_deny_rl layout");
_Static_assert(sizeof(struct weir_config) == 8, "weir_config layout");
_Static_assert(sizeof(struct weir_stat) == 16, "weir_stat layout");
_Static_assert(sizeof(struct weir_event_hdr) == 8, "weir_event_hdr layout");
_Static_assert(sizeof(struct weir_flow_event) == 136, "weir_flow_event layout");
_Static_assert(sizeof(struct weir_lost_event) == 24, "weir_lost_event layout");

#endif /* WEIR_ABI_H */
