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

static __always_inline int weir_policy_hit(struct weir_policy_key *k, __u32 peer, __u8 proto,
					   __u16 port, struct weir_decision *d)
{
	struct weir_policy_value *v;

	k->peer_identity = peer;
	k->proto = proto;
	k->port = port;
	v = bpf_map_lookup_elem(&weir_policy_v1, k);
	if (!v)
		return 0;
	d->rule_id = v->rule_id;
	d->reason = WEIR_R_ALLOW_POLICY;
	d->verdict = WEIR_VERDICT_ALLOW;
	return 1;
}

/* The first hit of, in order: {peer, proto, dport} {peer, proto, 0} {peer, 0, 0}
 * {ANY, proto, dport} {ANY, proto, 0} {ANY, 0, 0}. The proto-specific keys only exist for
 * TCP/UDP/SCTP (the protocols a NetworkPolicy port can name), so {6, 0} never matches UDP and
 * other protocols only match rules without ports. dport 0 (a later fragment) skips the port key:
 * only rules covering every port of the protocol can match it. */
static __always_inline int weir_policy_lookup(struct weir_policy_key *k, __u32 peer,
					      const struct weir_pkt *p, struct weir_decision *d)
{
	__u8 proto = p->tuple.proto;
	__u16 dport = p->tuple.dport;

	if (weir_ports_matter(proto)) {
		if (dport && weir_policy_hit(k, peer, proto, dport, d))
			return 1;
		if (weir_policy_hit(k, peer, proto, 0, d))
			return 1;
	}
	return weir_policy_hit(k, peer, WEIR_PROTO_ANY, 0, d);
}

static __always_inline void weir_policy_decide(const struct weir_endpoint *ep, __u8 direction,
					       __u32 peer, const struct weir_pkt *p,
					       struct weir_decision *d)
{
	const int ingress = direction == WEIR_DIR_INGRESS;
	__u32 isolated = ingress ? WEIR_EP_ISOLATED_INGRESS : WEIR_EP_ISOLATED_EGRESS;
	__u32 peer_rules = ingress ? WEIR_EP_PEER_RULES_INGRESS : WEIR_EP_PEER_RULES_EGRESS;
	__u32 any_rules = ingress ? WEIR_EP_ANY_RULES_INGRESS : WEIR_EP_ANY_RULES_EGRESS;
	struct weir_policy_key k = {
		.identity = ep->identity,
		.direction = direction,
	};

	if (!(ep->flags & isolated)) {
		d->rule_id = 0;
		d->reason = WEIR_R_ALLOW_NOT_ISOLATED;
		d->verdict = WEIR_VERDICT_ALLOW;
		return;
	}
	/* NetworkPolicy never isolates a pod from its own node (kubelet probes, node-local agents):
	 * user space writes no keys for the host identity, the datapath allows it here. */
	if (peer == WEIR_ID_HOST) {
		d->rule_id = 0;
		d->reason = WEIR_R_ALLOW_HOST;
		d->verdict = WEIR_VERDICT_ALLOW;
		return;
	}
	/* The rule-summary flags say which kinds of keys this identity has in this direction, so
	 * lookups that cannot hit are skipped (a default deny with no rules makes none at all). */
	if ((ep->flags & peer_rules) && weir_policy_lookup(&k, peer, p, d))
		return;
	if ((ep->flags & any_rules) && peer != WEIR_ID_ANY && weir_policy_lookup(&k, WEIR_ID_ANY, p, d))
		return;
	d->rule_id = 0;
	if (ep->flags & WEIR_EP_AUDIT) {
		/* audit mode: the flow passes, but every record says it would have been denied */
		d->reason = WEIR_R_AUDIT;
		d->verdict = WEIR_VERDICT_AUDIT;
	} else {
		d->reason = WEIR_R_DENY_DEFAULT;
		d->verdict = WEIR_VERDICT_DENY;
	}
}

#endif /* WEIR_POLICY_H */
