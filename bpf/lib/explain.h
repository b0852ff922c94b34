/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* `weir policy explain`: the policy decisions the pod hooks would make for one packet, computed by
 * the same code (weir_parse, the endpoint lookups, weir_policy_decide) over the same maps, but
 * with no side effect at all: no conntrack entry, no deny cache, no ring-buffer record, no
 * counter. User space runs it with BPF_PROG_TEST_RUN on a crafted first packet of a flow and
 * reads the answers back from the context's cb[] (ctx_out). Never attached to an interface.
 *
 * Results in struct __sk_buff cb[] (src/policy/explain.ts decodes them):
 *   cb[0] source's egress:       verdict | reason << 8 | WEIR_EXPLAIN_APPLIES (source is local)
 *   cb[1] source's egress rule id (0 = none)
 *   cb[2] destination's ingress:  same encoding (destination is local)
 *   cb[3] destination's ingress rule id
 *   cb[4] the policy generation the decisions were made under
 * Return value: 0, or WEIR_EXPLAIN_NON_IP / WEIR_EXPLAIN_MALFORMED when the packet did not parse
 * (then cb[] says nothing). A side that is not a local pod reads 0 (not applicable). */
#ifndef WEIR_EXPLAIN_H
#define WEIR_EXPLAIN_H

#include "common.h"
#include "parse.h"
#include "policy.h"

#define WEIR_EXPLAIN_APPLIES (1u << 31)
#define WEIR_EXPLAIN_NON_IP 1
#define WEIR_EXPLAIN_MALFORMED 2

static __always_inline __u32 weir_explain_word(const struct weir_decision *d)
{
	return WEIR_EXPLAIN_APPLIES | ((__u32)d->reason << 8) | d->verdict;
}

static __always_inline int weir_explain(struct __sk_buff *skb)
{
	const struct weir_endpoint *sep, *dep;
	struct weir_decision d;
	struct weir_pkt p;
	__u32 gen;
	int r;

	__builtin_memset(&p, 0, sizeof(p));
	skb->cb[0] = 0;
	skb->cb[1] = 0;
	skb->cb[2] = 0;
	skb->cb[3] = 0;
	skb->cb[4] = 0;
	r = weir_parse(skb, &p);
	if (r == WEIR_PARSE_NON_IP)
		return WEIR_EXPLAIN_NON_IP;
	if (r != WEIR_PARSE_OK)
		return WEIR_EXPLAIN_MALFORMED;

	/* One generation for every lookup, as at the hooks: both answers come from one policy set. */
	gen = weir_generation();
	skb->cb[4] = gen;
	sep = WEIR_SLOT_LOOKUP(weir_endpoints_v2, gen, p.tuple.saddr);
	dep = WEIR_SLOT_LOOKUP(weir_endpoints_v2, gen, p.tuple.daddr);

	/* FROM_POD polices only a local source (anything else is dropped there as spoofed, which
	 * explain does not model: the crafted packet uses the pod's own address); the peer is the
	 * destination's identity, or WORLD for an address no endpoint holds (weir_ids_from_eps). */
	if (sep && (sep->flags & WEIR_EP_LOCAL)) {
		weir_policy_decide(gen, sep, WEIR_DIR_EGRESS, dep ? dep->identity : WEIR_ID_WORLD,
				   p.tuple.daddr, &p, &d);
		skb->cb[0] = weir_explain_word(&d);
		skb->cb[1] = d.rule_id;
	}
	/* TO_POD polices only a local destination (weir_local_dst). */
	if (dep && (dep->flags & WEIR_EP_LOCAL)) {
		weir_policy_decide(gen, dep, WEIR_DIR_INGRESS, sep ? sep->identity : WEIR_ID_WORLD,
				   p.tuple.saddr, &p, &d);
		skb->cb[2] = weir_explain_word(&d);
		skb->cb[3] = d.rule_id;
	}
	return 0;
}

#endif /* WEIR_EXPLAIN_H */
