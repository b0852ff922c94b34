/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Policy decision for one endpoint, one direction, one peer identity. Allow-list semantics of
 * Kubernetes NetworkPolicy: an endpoint no policy isolates in a direction allows everything that
 * way; an isolated one allows what some rule allows, and denies (or, in audit mode, passes and
 * marks) the rest. */
#ifndef WEIR_POLICY_H
#define WEIR_POLICY_H

#include "common.h"
#include "parse.h"
#include "global.h"

/* The lookups of one peer kind, most specific first (user space folded into every key the best
 * rule of every key covering it, so the first hit is this kind's best rule): exact port, the
 * range blocks holding it (only when the identity has range keys), the whole protocol, every
 * protocol. Keeps the lower-ranked of this kind's rule and what an earlier kind found. */
static __always_inline void weir_policy_try(__u32 gen, struct weir_policy_key *k,
					    struct weir_prange_key *rk, __u32 peer, int ranges,
					    const struct weir_ct_key *t, struct weir_decision *d,
					    __u32 *best)
{
	struct weir_policy_value *v = 0;
	__u8 proto = t->proto;
	__u16 dport = t->dport;

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

/* The subject of a decision: a pod endpoint's identity and flags. */
struct weir_subject {
	__u32 identity;
	__u32 flags;
};

/* The NetworkPolicy tier's decision for endpoint ep in direction, the other side being identity
 * peer at peer_addr (16 bytes), judged from the maps of generation gen's slot. */
static __always_inline void weir_np_decide(__u32 gen, const struct weir_subject *ep,
					       __u8 direction, __u32 peer, const __u8 *peer_addr,
					       const struct weir_ct_key *t, struct weir_decision *d)
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
		.proto = t->proto,
		.port = bpf_htons(t->dport),
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
		weir_policy_try(gen, &k, &rk, peer, ranges, t, d, &best);
	if (ep->flags & cidr_rules) {
		/* ipBlocks match by address, pod addresses included */
		struct weir_ipcache_key ik = { .prefixlen = 128 };
		const struct weir_ipcache_value *cls;

		__builtin_memcpy(ik.addr, peer_addr, 16);
		cls = WEIR_SLOT_LOOKUP(weir_ipcache_v1, gen, &ik);
		if (cls)
			weir_policy_try(gen, &k, &rk, cls->class_id, ranges, t, d, &best);
	}
	if (ep->flags & any_rules)
		weir_policy_try(gen, &k, &rk, WEIR_ID_ANY, ranges, t, d, &best);
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

/* weir_np_decide as a global function over the per-CPU walk (see weir_pod_decide_run). */
__attribute__((noinline)) int weir_np_decide_run(__u32 identity, __u32 flags, __u32 direction, __u32 peer)
{
	struct weir_gtier_walk *w = weir_gwalk();
	struct weir_subject ep = { .identity = identity, .flags = flags };
	struct weir_decision d;

	if (!w)
		return 0;
	weir_np_decide(w->gen, &ep, direction, peer, direction == WEIR_DIR_EGRESS ? w->t.daddr : w->t.saddr,
		       &w->t, &d);
	w->np_rule = d.rule_id;
	return WEIR_DECISION_PACK(d.verdict, d.reason);
}

/* A pod's decision in direction: its global tier (w: the packet's walk, its generation), then,
 * unless that decided, the NetworkPolicy tier; audit as in weir_host_decide. The Log rules of the
 * enforced walk are left in w->logs. */
static __always_inline void weir_pod_decide(struct weir_gtier_walk *w, const struct weir_subject *ep,
					    __u8 direction, __u32 peer, const __u8 *peer_addr,
					    const struct weir_ct_key *t, struct weir_decision *d)
{
	const int ingress = direction == WEIR_DIR_INGRESS;
	const __u32 global = ingress ? WEIR_EP_GLOBAL_INGRESS : WEIR_EP_GLOBAL_EGRESS;
	const __u32 gaudit = ingress ? WEIR_EP_GAUDIT_INGRESS : WEIR_EP_GAUDIT_EGRESS;
	struct weir_decision np = {};
	int decided = 0;

	w->nlogs = 0;
	d->rule_id = 0;
	d->reason = 0;
	d->verdict = 0;
	if (ep->flags & global) {
		__u8 verdict = 0;
		__u16 reason = 0;

		w->collect_logs = 1;
		weir_gtier(w, ep->identity, direction, 0);
		w->collect_logs = 0;
		decided = weir_gtier_decided(w, &verdict, &reason);
		d->verdict = verdict;
		d->reason = reason;
		d->rule_id = w->rule_id;
	}
	/* one call site: the NetworkPolicy tier is needed when the global tier did not decide, and
	 * for the audit walk, which may pass where the enforced one decided */
	if (!decided || (ep->flags & gaudit)) {
		int r = weir_np_decide_run(ep->identity, ep->flags, direction, peer);

		np.verdict = r & 0xff;
		np.reason = (r >> 8) & 0xffff;
		np.rule_id = w->np_rule;
	}
	if (!decided)
		*d = np;
	if (d->verdict == WEIR_VERDICT_DENY) {
		if (ep->flags & WEIR_EP_AUDIT_ALL) {
			d->verdict = WEIR_VERDICT_AUDIT;
			d->reason = WEIR_R_AUDIT;
		}
		return;
	}
	if (d->verdict == WEIR_VERDICT_ALLOW && (ep->flags & gaudit)) {
		__u8 verdict = np.verdict;
		__u16 reason = 0;
		__u32 would = np.rule_id;

		weir_gtier(w, ep->identity, direction, WEIR_GT_WITH_AUDIT);
		if (weir_gtier_decided(w, &verdict, &reason))
			would = w->rule_id;
		if (verdict == WEIR_VERDICT_DENY) {
			/* the record names what would deny it: the audit-mode rule (0: a default) */
			d->verdict = WEIR_VERDICT_AUDIT;
			d->reason = WEIR_R_AUDIT;
			d->rule_id = would;
		}
	}
}

/* weir_pod_decide as a global function over the per-CPU walk (weir_gwalk_init ran): the verifier
 * checks it once, and its callers see one unknown answer instead of a state per reason, which
 * kept the pod programs far below the verifier's limits. Returns WEIR_DECISION_PACK; the rule is
 * left in w->decision_rule. The peer's address is the walk's destination at egress, else its
 * source. */
__attribute__((noinline)) int weir_pod_decide_run(__u32 identity, __u32 flags, __u32 direction, __u32 peer)
{
	struct weir_gtier_walk *w = weir_gwalk();
	struct weir_subject ep = { .identity = identity, .flags = flags };
	struct weir_decision d;

	if (!w)
		return 0;
	weir_pod_decide(w, &ep, direction, peer, direction == WEIR_DIR_EGRESS ? w->t.daddr : w->t.saddr,
			&w->t, &d);
	w->decision_rule = d.rule_id;
	return WEIR_DECISION_PACK(d.verdict, d.reason);
}

/* The decision of pod endpoint ep in direction (the walk prepared for the packet). */
static __always_inline void weir_policy_decide(struct weir_gtier_walk *w, const struct weir_endpoint *ep,
					       __u8 direction, __u32 peer, struct weir_decision *d)
{
	int r = weir_pod_decide_run(ep->identity, ep->flags, direction, peer);

	weir_decision_unpack(w, r, d);
}

#endif /* WEIR_POLICY_H */
