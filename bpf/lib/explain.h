/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* `weir policy explain`: the policy decisions the pod hooks would make for one packet, computed by
 * the same code (weir_parse, the endpoint lookups, weir_policy_decide) over the same maps, but
 * with no side effect at all: no conntrack entry, no deny cache, no ring-buffer record, no
 * counter. User space runs it with BPF_PROG_TEST_RUN on a crafted first packet of a flow and
 * reads the answers back from the context's cb[] (ctx_out). Never attached to an interface.
 *
 * The answer is struct weir_explain_result (weir_abi.h), written over cb[0..4]. Return value: 0,
 * or WEIR_EXPLAIN_NON_IP / WEIR_EXPLAIN_MALFORMED when the packet did not parse (then the result
 * says nothing). A side that is not a local pod reads 0 (not applicable). */
#ifndef WEIR_EXPLAIN_H
#define WEIR_EXPLAIN_H

#include "common.h"
#include "parse.h"
#include "policy.h"

static __always_inline __u32 weir_explain_word(const struct weir_decision *d)
{
	return WEIR_EXPLAIN_APPLIES | ((__u32)d->reason << 8) | d->verdict;
}

/* The context cannot be written as a struct: store the result field by field, in its order. */
static __always_inline void weir_explain_store(struct __sk_buff *skb, const struct weir_explain_result *res)
{
	_Static_assert(sizeof(*res) == sizeof(skb->cb), "weir_explain_result is cb[0..4]");
	skb->cb[0] = res->egress;
	skb->cb[1] = res->egress_rule_id;
	skb->cb[2] = res->ingress;
	skb->cb[3] = res->ingress_rule_id;
	skb->cb[4] = res->generation;
}

static __always_inline int weir_explain(struct __sk_buff *skb)
{
	const struct weir_endpoint *sep, *dep;
	struct weir_explain_result res = {};
	struct weir_gtier_walk *w;
	struct weir_decision d;
	struct weir_pkt p;
	__u32 gen;
	int r;

	__builtin_memset(&p, 0, sizeof(p));
	weir_explain_store(skb, &res);
	r = weir_parse(skb, &p);
	if (r == WEIR_PARSE_NON_IP)
		return WEIR_EXPLAIN_NON_IP;
	if (r != WEIR_PARSE_OK)
		return WEIR_EXPLAIN_MALFORMED;

	/* One generation for every lookup, as at the hooks: both answers come from one policy set. */
	gen = weir_generation();
	res.generation = gen;
	sep = WEIR_SLOT_LOOKUP(weir_endpoints_v3, gen, p.tuple.saddr);
	dep = WEIR_SLOT_LOOKUP(weir_endpoints_v3, gen, p.tuple.daddr);

	/* FROM_POD polices only a local source (anything else is dropped there as spoofed, which
	 * explain does not model: the crafted packet uses the pod's own address); the peer is the
	 * destination's identity, or WORLD for an address no endpoint holds (weir_ids_from_eps). */
	if (sep && (sep->flags & WEIR_EP_LOCAL)) {
		w = weir_gwalk_init(gen, &p);
		if (!w)
			return WEIR_EXPLAIN_MALFORMED;
		weir_policy_decide(w, sep, WEIR_DIR_EGRESS, dep ? dep->identity : WEIR_ID_WORLD, &d);
		res.egress = weir_explain_word(&d);
		res.egress_rule_id = d.rule_id;
	}
	/* TO_POD polices only a local destination (weir_local_dst). */
	if (dep && (dep->flags & WEIR_EP_LOCAL)) {
		w = weir_gwalk_init(gen, &p);
		if (!w)
			return WEIR_EXPLAIN_MALFORMED;
		weir_policy_decide(w, dep, WEIR_DIR_INGRESS, sep ? sep->identity : WEIR_ID_WORLD, &d);
		res.ingress = weir_explain_word(&d);
		res.ingress_rule_id = d.rule_id;
	}
	weir_explain_store(skb, &res);
	return 0;
}

#endif /* WEIR_EXPLAIN_H */
