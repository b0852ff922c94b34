/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Policy decision for one endpoint, one direction, one peer identity. Allow-list semantics of
 * Kubernetes NetworkPolicy: an endpoint no policy isolates in a direction allows everything that
 * way; an isolated one allows what some rule allows, and denies (or, in audit mode, passes and
 * marks) the rest. */
#ifndef WEIR_POLICY_H
#define WEIR_POLICY_H

#include "common.h"
#include "parse.h"

struct weir_decision {
	__u32 rule_id; /* 0 when no rule decided */
	__u16 reason;  /* ALLOW_POLICY, ALLOW_NOT_ISOLATED, ALLOW_HOST, AUDIT or DENY_DEFAULT */
	__u8 verdict;  /* ALLOW, AUDIT or DENY */
	__u8 pad;
};

/* The lookups of one peer kind, most specific first (user space folded into every key the best
 * rule of every key covering it, so the first hit is this kind's best rule): exact port, the
 * range blocks holding it (only when the identity has range keys), the whole protocol, every
 * protocol. Keeps the lower-ranked of this kind's rule and what an earlier kind found. */
static __always_inline void weir_policy_try(__u32 gen, struct weir_policy_key *k,
					    struct weir_prange_key *rk, __u32 peer, int ranges,
					    const struct weir_pkt *p, struct weir_decision *d,
					    __u32 *best)
{
	struct weir_policy_value *v = 0;
	__u8 proto = p->tuple.proto;
	__u16 dport = p->tuple.dport;

	k->peer = peer;
	/* Only TCP/UDP/SCTP keys carry a protocol, so any other protocol matches rules without ports
	 * only. dport 0 (a later fragment) matches only rules covering every port of the protocol. */
	if (weir_ports_matter(proto)) {
		k->proto = proto;
		if (dport) {
			k->port = dport;
			v = WEIR_SLOT_LOOKUP(weir_policy_v3, gen, k);
			if (!v && ranges) {
				rk->peer = peer;
				v = WEIR_SLOT_LOOKUP(weir_prange_v1, gen, rk);
			}
		}
		if (!v) {
			k->port = 0;
			v = WEIR_SLOT_LOOKUP(weir_policy_v3, gen, k);
		}
	}
	if (!v) {
		k->proto = 0;
		k->port = 0;
		v = WEIR_SLOT_LOOKUP(weir_policy_v3, gen, k);
	}
	if (v && v->rank < *best) {
		*best = v->rank;
		d->rule_id = v->rule_id;
	}
}

/* The decision for endpoint ep in direction, the other side being identity peer at peer_addr
 * (16 bytes), judged from the maps of generation gen's slot. */
static __always_inline void weir_policy_decide(__u32 gen, const struct weir_endpoint *ep,
					       __u8 direction, __u32 peer, const __u8 *peer_addr,
					       const struct weir_pkt *p, struct weir_decision *d)
{
	const int ingress = direction == WEIR_DIR_INGRESS;
	__u32 isolated = ingress ? WEIR_EP_ISOLATED_INGRESS : WEIR_EP_ISOLATED_EGRESS;
	__u32 peer_rules = ingress ? WEIR_EP_PEER_RULES_INGRESS : WEIR_EP_PEER_RULES_EGRESS;
	__u32 any_rules = ingress ? WEIR_EP_ANY_RULES_INGRESS : WEIR_EP_ANY_RULES_EGRESS;
	__u32 cidr_rules = ingress ? WEIR_EP_CIDR_RULES_INGRESS : WEIR_EP_CIDR_RULES_EGRESS;
	__u32 range_rules = ingress ? WEIR_EP_RANGE_RULES_INGRESS : WEIR_EP_RANGE_RULES_EGRESS;
	const int ranges = (ep->flags & range_rules) != 0;
	struct weir_policy_key k = {
		.identity = ep->identity,
		.direction = direction,
	};
	/* full-length key: the LPM trie answers the most specific block holding dport */
	struct weir_prange_key rk = {
		.prefixlen = WEIR_PRANGE_PREFIX_PROTO + 16,
		.identity = ep->identity,
		.direction = direction,
		.proto = p->tuple.proto,
		.port = bpf_htons(p->tuple.dport),
	};
	__u32 best = 0xffffffff;

	d->rule_id = 0;
	if (!(ep->flags & isolated)) {
		d->reason = WEIR_R_ALLOW_NOT_ISOLATED;
		d->verdict = WEIR_VERDICT_ALLOW;
		return;
	}
	/* NetworkPolicy never isolates a pod from its own node (kubelet probes, node-local agents):
	 * user space writes no keys for the host identity, the datapath allows it here. */
	if (peer == WEIR_ID_HOST) {
		d->reason = WEIR_R_ALLOW_HOST;
		d->verdict = WEIR_VERDICT_ALLOW;
		return;
	}
	/* The rule-summary flags say which kinds of keys this identity has in this direction, so
	 * lookups that cannot hit are skipped (a default deny with no rules makes none at all).
	 * Every kind that may hit is looked up: the lowest rank among the hits is the rule the
	 * reference names. A world address has no identity keys, only its CIDR class. */
	if ((ep->flags & peer_rules) && peer != WEIR_ID_WORLD)
		weir_policy_try(gen, &k, &rk, peer, ranges, p, d, &best);
	if (ep->flags & cidr_rules) {
		/* ipBlocks match by address, pod addresses included */
		struct weir_ipcache_key ik = { .prefixlen = 128 };
		const struct weir_ipcache_value *cls;

		__builtin_memcpy(ik.addr, peer_addr, 16);
		cls = WEIR_SLOT_LOOKUP(weir_ipcache_v1, gen, &ik);
		if (cls)
			weir_policy_try(gen, &k, &rk, cls->class_id, ranges, p, d, &best);
	}
	if (ep->flags & any_rules)
		weir_policy_try(gen, &k, &rk, WEIR_ID_ANY, ranges, p, d, &best);
	if (best != 0xffffffff) {
		d->reason = WEIR_R_ALLOW_POLICY;
		d->verdict = WEIR_VERDICT_ALLOW;
		return;
	}
	if (ep->flags & (direction == WEIR_DIR_INGRESS ? WEIR_EP_AUDIT_INGRESS : WEIR_EP_AUDIT_EGRESS)) {
		/* audit mode: the flow passes, but every record says it would have been denied */
		d->reason = WEIR_R_AUDIT;
		d->verdict = WEIR_VERDICT_AUDIT;
	} else {
		d->reason = WEIR_R_DENY_DEFAULT;
		d->verdict = WEIR_VERDICT_DENY;
	}
}

#endif /* WEIR_POLICY_H */
