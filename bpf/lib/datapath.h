/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The per-packet pipeline of the pod hooks (parse, endpoints, conntrack, policy, records) and of
 * the host-device hooks. Each SEC() program in weir.c calls one of these with its hook as a
 * compile-time constant, so the verifier and the optimiser drop the other hook's branches.
 * docs/datapath.md describes the semantics; the comments here say why each branch exists. */
#ifndef WEIR_DATAPATH_H
#define WEIR_DATAPATH_H

#include "common.h"
#include "stats.h"
#include "parse.h"
#include "events.h"
#include "policy.h"
#include "conntrack.h"

/* One packet at one hook. */
struct weir_ctx {
	struct weir_pkt p;
	struct weir_flow_ids ids; /* filled on the slow paths only (records) */
	__u64 now;
	__u32 len;
	__u32 ifindex;
	__u32 gen; /* policy generation, read once (weir_read_gen) before the lookups a verdict
		    * rests on; its parity is the slot of every endpoint and policy lookup */
	__u8 gen_read;
	__u8 hook;
	__u8 dir; /* direction this hook polices: EGRESS at FROM_POD and TO_HOST_DEV, INGRESS at
		   * TO_POD and FROM_HOST_DEV */
	struct weir_gtier_walk *w; /* the global tier's walk (slow paths only; weir_gwalk_init) */
};

/* The packet's policy generation, read at most once: every endpoint, CIDR-class and policy
 * lookup of the packet uses its slot, so no packet mixes two policy sets. */
static __always_inline void weir_read_gen(struct weir_ctx *c)
{
	if (!c->gen_read) {
		c->gen = weir_generation();
		c->gen_read = 1;
	}
}

/* The endpoint holding addr, in the packet's slot (weir_read_gen must have run). */
static __always_inline const struct weir_endpoint *weir_ep(const struct weir_ctx *c, const __u8 *addr)
{
	return WEIR_SLOT_LOOKUP(weir_endpoints_v3, c->gen, addr);
}

/* The single exit of every packet: count it under its reason, return the tc action. */
static __always_inline int weir_verdict(const struct weir_ctx *c, __u32 reason, int action)
{
	weir_stat(reason, c->len);
	return action;
}

static __always_inline void weir_ids_from_eps(struct weir_ctx *c, const struct weir_endpoint *sep,
					      const struct weir_endpoint *dep)
{
	c->ids.src_ep = sep ? sep->id : 0;
	c->ids.src_identity = sep ? sep->identity : WEIR_ID_WORLD;
	c->ids.dst_ep = dep ? dep->id : 0;
	c->ids.dst_identity = dep ? dep->identity : WEIR_ID_WORLD;
	c->ids.egress_rule_id = 0;
	c->ids.ingress_rule_id = 0;
	c->ids.forward_rule_id = 0;
}

static __always_inline void weir_ids_from_ct(struct weir_ctx *c, const struct weir_ct_entry *e)
{
	c->ids.src_ep = e->src_ep;
	c->ids.dst_ep = e->dst_ep;
	c->ids.src_identity = e->src_identity;
	c->ids.dst_identity = e->dst_identity;
	c->ids.egress_rule_id = e->egress_rule_id;
	c->ids.ingress_rule_id = e->ingress_rule_id;
	c->ids.forward_rule_id = e->forward_rule_id;
}

/* The rule of one side's decision, in the record field of its direction. */
static __always_inline void weir_ids_set_rule(struct weir_ctx *c, __u8 direction, __u32 rule_id)
{
	if (direction == WEIR_DIR_EGRESS)
		c->ids.egress_rule_id = rule_id;
	else
		c->ids.ingress_rule_id = rule_id;
}

static __always_inline void weir_emit_packet(const struct weir_ctx *c, __u8 type, __u8 verdict,
					     __u16 reason, __u32 count)
{
	struct weir_flow_meta m = {
		.now = c->now,
		.start_ns = c->now,
		.ifindex = c->ifindex,
		.count = count,
		.reason = reason,
		.type = type,
		.family = c->p.family,
		.direction = c->dir,
		.verdict = verdict,
		.hook = c->hook,
		.tcp_flags = c->p.tcp_flags,
	};

	weir_emit_flow(&c->p.tuple, &c->ids, &m, 0);
}

/* A LOG record for every Log rule the last enforced walk matched (c->w->logs), the rule in the
 * field of the deciding side's direction, with that side's verdict and reason. A subprogram: one copy of the record code, however many
 * call sites. */
static __noinline void weir_emit_logs(const struct weir_ctx *c, __u8 direction, __u8 verdict, __u16 reason)
{
	struct weir_flow_ids ids = c->ids;
	struct weir_flow_meta m = {
		.now = c->now,
		.start_ns = c->now,
		.ifindex = c->ifindex,
		.count = 1,
		.reason = reason,
		.type = WEIR_EV_LOG,
		.family = c->p.family,
		.direction = direction,
		.verdict = verdict,
		.hook = c->hook,
		.tcp_flags = c->p.tcp_flags,
	};
	__u32 i, n = c->w->nlogs;

#pragma clang loop unroll(disable)
	for (i = 0; i < WEIR_GLOBAL_MAX_LOGS; i++) {
		if (i >= n)
			break;
		if (direction == WEIR_DIR_EGRESS)
			ids.egress_rule_id = c->w->logs[i];
		else
			ids.ingress_rule_id = c->w->logs[i];
		weir_emit_flow(&c->p.tuple, &ids, &m, 0);
	}
}

/* A DENY record of this flow was written less than deny_event_interval_ns ago
 * (last > now: another CPU just wrote one). */
static __always_inline int weir_deny_recent(const struct weir_ctx *c, const struct weir_deny_rl *rl)
{
	__u64 last = rl->last_event_ns;

	return last > c->now || c->now - last < deny_event_interval_ns;
}

/* Drops the packet. Every denied packet is represented in the records: per flow key at most one
 * DENY record per deny_event_interval_ns, the packets in between counted into the next one.
 * The entry also caches the verdict (reason, generation, hook, interface) for the fast path in
 * weir_pod_hook. Not cached: DROP_CT_FULL (the next packet may find room), and the verdicts of
 * later fragments, judged without conntrack: their ports-0 tuple is also that of ICMP errors,
 * which conntrack may let through as replies. */
static __always_inline int weir_deny(struct weir_ctx *c, __u16 reason)
{
	struct weir_deny_rl *rl = bpf_map_lookup_elem(&weir_deny_rl_v2, &c->p.tuple);
	__u16 cached = reason == WEIR_R_DROP_CT_FULL || c->p.later_fragment ? 0 : reason;
	__u32 count = 1;

	if (rl) {
		rl->generation = c->gen;
		rl->ifindex = c->ifindex;
		rl->reason = cached;
		rl->hook = c->hook;
		if (weir_deny_recent(c, rl)) {
			__sync_fetch_and_add(&rl->suppressed, 1);
			weir_count(WEIR_C_DENY_SUPPRESSED);
			return weir_verdict(c, reason, TC_ACT_SHOT);
		}
		count += rl->suppressed;
		rl->suppressed = 0;
		rl->last_event_ns = c->now;
	} else {
		struct weir_deny_rl n = {
			.last_event_ns = c->now,
			.generation = c->gen,
			.ifindex = c->ifindex,
			.reason = cached,
			.hook = c->hook,
		};

		bpf_map_update_elem(&weir_deny_rl_v2, &c->p.tuple, &n, BPF_ANY);
	}
	weir_emit_packet(c, WEIR_EV_DENY, WEIR_VERDICT_DENY, reason, count);
	return weir_verdict(c, reason, TC_ACT_SHOT);
}

/* The entry of a new flow is built here, not on the stack: the pod programs' stack, with the global
 * tier's calls on top of it, would not fit the verifier's 512 bytes. One per CPU (see weir_gwalk). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weir_ct_entry);
} weir_ct_scratch_map SEC(".maps");

/* A zeroed entry to fill (NULL: cannot happen; for the verifier). */
static __always_inline struct weir_ct_entry *weir_ct_scratch(void)
{
	__u32 zero = 0;
	struct weir_ct_entry *n = bpf_map_lookup_elem(&weir_ct_scratch_map, &zero);

	if (n)
		__builtin_memset(n, 0, sizeof(*n));
	return n;
}

/* The entry of a new flow (in the scratch slot, to be inserted by the caller): the packet's ids,
 * times and interface, the given flags and reply veth, and the first packet counted when this hook
 * counts the flow (each flow is counted at one hook). NULL: cannot happen (for the verifier). */
static __always_inline struct weir_ct_entry *weir_ct_new_entry(const struct weir_ctx *c, __u16 flags,
							       __u32 rev_ifindex, int counts)
{
	struct weir_ct_entry *n = weir_ct_scratch();

	if (!n)
		return 0;
	n->created_ns = c->now;
	n->last_seen_ns = c->now;
	n->src_ep = c->ids.src_ep;
	n->dst_ep = c->ids.dst_ep;
	n->src_identity = c->ids.src_identity;
	n->dst_identity = c->ids.dst_identity;
	n->egress_rule_id = c->ids.egress_rule_id;
	n->ingress_rule_id = c->ids.ingress_rule_id;
	n->forward_rule_id = c->ids.forward_rule_id;
	n->ifindex = c->ifindex;
	n->rev_ifindex = rev_ifindex;
	n->flags = flags;
	if (counts) {
		n->packets_fwd = 1;
		n->bytes_fwd = c->len;
		n->tcp_flags_fwd = c->p.tcp_flags;
		if (c->p.tuple.proto == WEIR_PROTO_TCP) {
			/* a stray RST/FIN opening a "flow": let the short timeout collect it */
			if (c->p.tcp_flags & WEIR_TCP_RST)
				n->flags |= WEIR_CT_RST;
			if (c->p.tcp_flags & WEIR_TCP_FIN)
				n->flags |= WEIR_CT_FIN_FWD;
		}
	}
	return n;
}

/* A flow denied moments ago, judged under the current policy generation (weir_read_gen must have
 * run) at this hook and interface: its reason, and the packet is counted into the next DENY
 * record; it is dropped without being judged again (every lookup would give the same answer).
 * The packet that makes that record due takes the full path. 0: judge it. */
static __always_inline __u16 weir_deny_cached(const struct weir_ctx *c)
{
	struct weir_deny_rl *rl = bpf_map_lookup_elem(&weir_deny_rl_v2, &c->p.tuple);
	__u16 reason;

	if (!rl)
		return 0;
	reason = rl->reason;
	if (reason && rl->generation == c->gen && rl->ifindex == c->ifindex && rl->hook == c->hook &&
	    weir_deny_recent(c, rl) &&
	    /* a bare SYN may reopen a closed flow whose reply this was */
	    !(reason == WEIR_R_DROP_UNAPPROVED_REPLY && weir_is_bare_syn(c->p.tuple.proto, c->p.tcp_flags))) {
		__sync_fetch_and_add(&rl->suppressed, 1);
		weir_count(WEIR_C_DENY_SUPPRESSED);
		return reason;
	}
	return 0;
}

/* The destination endpoint at TO_POD, if it is a local pod (else nobody's ingress to police). */
static __always_inline const struct weir_endpoint *weir_local_dst(const struct weir_ctx *c)
{
	const struct weir_endpoint *dep = weir_ep(c, c->p.tuple.daddr);

	return dep && (dep->flags & WEIR_EP_LOCAL) ? dep : 0;
}

/* Anti-spoofing, the full check at FROM_POD: a pod may only send from its own addresses, through
 * its own veth (an endpoint ifindex of 0 means "any interface"). Sets *sepp to the source
 * endpoint (or NULL); returns non-zero when the packet is spoofed. */
static __always_inline int weir_spoofed(const struct weir_ctx *c, const struct weir_endpoint **sepp)
{
	const struct weir_endpoint *sep = weir_ep(c, c->p.tuple.saddr);

	*sepp = sep;
	return !sep || !(sep->flags & WEIR_EP_LOCAL) || (sep->ifindex && sep->ifindex != c->ifindex);
}

static __always_inline int weir_drop_spoofed(struct weir_ctx *c, const struct weir_endpoint *sep)
{
	const struct weir_endpoint *dep = weir_ep(c, c->p.tuple.daddr);

	weir_ids_from_eps(c, sep, dep);
	return weir_deny(c, WEIR_R_DROP_SPOOFED);
}

/* The veth a local destination's address may legitimately send from, as the full check would
 * accept it: its endpoint's ifindex, or (endpoint ifindex 0: any interface) the veth the packet
 * is being delivered through at TO_POD. 0 = unknown. */
static __always_inline __u32 weir_dst_veth(const struct weir_ctx *c, const struct weir_endpoint *dep)
{
	if (dep->ifindex)
		return dep->ifindex;
	return c->hook == WEIR_HOOK_TO_POD ? c->ifindex : 0;
}

/* A packet in the initiator's direction of a tracked flow. ep is the policed endpoint when the
 * caller has it (always at FROM_POD); at TO_POD it is looked up only if policy must run. */
static __always_inline int weir_ct_forward(struct weir_ctx *c, struct weir_ct_entry *e,
					   const struct weir_endpoint *ep)
{
	const int from_pod = c->hook == WEIR_HOOK_FROM_POD;
	const __u16 need = from_pod ? WEIR_CT_NEED_EGRESS : WEIR_CT_NEED_INGRESS;
	const __u16 ok = from_pod ? WEIR_CT_EGRESS_OK : WEIR_CT_INGRESS_OK;
	__u32 reason = WEIR_R_ALLOW_ESTABLISHED;

	if ((e->flags & need) && !(e->flags & ok)) {
		/* This side has not approved the flow yet (e.g. pod-to-pod: the source's egress
		 * allowed it at FROM_POD, now the destination's ingress decides at TO_POD). */
		struct weir_decision d;
		__u32 peer = from_pod ? e->dst_identity : e->src_identity;

		weir_read_gen(c);
		if (!ep) /* TO_POD skips the lookup for established packets; FROM_POD when conntrack
			  * vouched for the source (then EGRESS_OK is set and this is not reached) */
			ep = from_pod ? weir_ep(c, c->p.tuple.saddr) : weir_local_dst(c);
		if (!ep) /* the destination stopped being a local pod */
			return weir_verdict(c, WEIR_R_ALLOW_UNPOLICED, TC_ACT_OK);
		c->w = weir_gwalk_init(c->gen, &c->p);
		if (!c->w)
			return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
		weir_policy_decide(c->w, ep, c->dir, peer, &d);
		weir_ids_from_ct(c, e);
		weir_ids_set_rule(c, c->dir, d.rule_id);
		if (c->w->nlogs)
			weir_emit_logs(c, c->dir, d.verdict, d.reason);
		if (d.verdict == WEIR_VERDICT_DENY)
			return weir_deny(c, d.reason);
		if (from_pod) {
			e->egress_rule_id = d.rule_id;
		} else {
			e->ingress_rule_id = d.rule_id;
			/* the destination's replies through this veth need no endpoint lookup */
			e->rev_ifindex = weir_dst_veth(c, ep);
		}
		e->flags |= ok | (d.verdict == WEIR_VERDICT_AUDIT ? WEIR_CT_AUDITED : 0);
		/* its replies may have been denied as unapproved until now */
		weir_ct_forget_reply_deny(&c->p.tuple);
		weir_emit_packet(c, WEIR_EV_FLOW_START, d.verdict, d.reason, 1);
		reason = d.reason;
	}
	/* Count each packet at one hook only: pod-to-pod packets are counted leaving the source
	 * pod, never again entering the destination pod. */
	if (from_pod || !(e->flags & WEIR_CT_NEED_EGRESS))
		weir_ct_account(&c->p.tuple, e, 0, c->len, c->p.tcp_flags, c->hook, c->ifindex, c->now);
	return weir_verdict(c, reason, TC_ACT_OK);
}

/* A packet in the responder's direction: no policy, but only for flows every side approved. */
static __always_inline int weir_ct_reply(struct weir_ctx *c, struct weir_ct_entry *e,
					 const struct weir_ct_key *fwd_key)
{
	if (!weir_ct_approved(e)) {
		/* e.g. the destination's ingress denied the request: its answer must not pass */
		weir_ids_from_ct(c, e);
		return weir_deny(c, WEIR_R_DROP_UNAPPROVED_REPLY);
	}
	/* the reply's source is the flow's destination: local (counted leaving it) or not */
	if (c->hook == WEIR_HOOK_FROM_POD || !(e->flags & WEIR_CT_NEED_INGRESS))
		weir_ct_account(fwd_key, e, 1, c->len, c->p.tcp_flags, c->hook, c->ifindex, c->now);
	return weir_verdict(c, WEIR_R_ALLOW_ESTABLISHED, TC_ACT_OK);
}

/* The conntrack map is an LRU hash: when it is full the kernel evicts the least recently used
 * entry to make room, without telling us. The loss shows when the evicted flow's next packet
 * comes: a TCP segment without SYN that no entry answers. It is judged as a new flow (so an
 * evicted flow passes again only if policy allows it now); count it, so a conntrack map that is
 * too small is visible (docs/reliability.md: Resource limits). */
static __always_inline void weir_count_ct_miss(const struct weir_ctx *c)
{
	if (!c->p.later_fragment && c->p.tuple.proto == WEIR_PROTO_TCP && !(c->p.tcp_flags & WEIR_TCP_SYN))
		weir_count(WEIR_C_CT_MISS_MIDSTREAM);
}

/* A packet no flow knows: this hook's policy decides, and an allowed flow is tracked. */
static __always_inline int weir_new_flow(struct weir_ctx *c, const struct weir_endpoint *sep,
					 const struct weir_endpoint *dep)
{
	const int from_pod = c->hook == WEIR_HOOK_FROM_POD;
	const struct weir_endpoint *ep, *peer;
	const struct weir_host_iface *hif = 0;
	struct weir_ct_entry *e;
	struct weir_decision d, hd;
	int src_local, dst_local, counts;
	__u32 zero = 0;

	weir_count_ct_miss(c);
	/* the policed endpoint was looked up by the caller; the peer only now */
	if (from_pod)
		dep = weir_ep(c, c->p.tuple.daddr);
	else
		sep = weir_ep(c, c->p.tuple.saddr);
	weir_ids_from_eps(c, sep, dep);
	ep = from_pod ? sep : dep;
	peer = from_pod ? dep : sep;
	if (!ep) /* cannot happen: the caller checked; keeps the verifier sure */
		return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_OK);
	c->w = weir_gwalk_init(c->gen, &c->p);
	if (!c->w)
		return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
	/* Traffic between a pod and its own node crosses no host interface: the node's "*" host
	 * endpoint (weir_hostif key 0) covers it, judged here, the host's side first when it sends. */
	if (peer && peer->identity == WEIR_ID_HOST)
		hif = WEIR_SLOT_LOOKUP(weir_hostif_v1, c->gen, &zero);
	hd.verdict = WEIR_VERDICT_ALLOW;
	hd.reason = 0;
	if (hif && !from_pod) {
		c->w->nlogs = 0;
		weir_host_decide(c->w, hif, WEIR_DIR_EGRESS, 0, &hd);
		c->ids.egress_rule_id = hd.rule_id;
		if (c->w->nlogs)
			weir_emit_logs(c, WEIR_DIR_EGRESS, hd.verdict, hd.reason);
		if (hd.verdict == WEIR_VERDICT_DENY) {
			c->dir = WEIR_DIR_EGRESS;
			return weir_deny(c, hd.reason);
		}
	}
	weir_policy_decide(c->w, ep, c->dir, from_pod ? c->ids.dst_identity : c->ids.src_identity, &d);
	weir_ids_set_rule(c, c->dir, d.rule_id);
	if (c->w->nlogs)
		weir_emit_logs(c, c->dir, d.verdict, d.reason);
	if (d.verdict == WEIR_VERDICT_DENY)
		return weir_deny(c, d.reason);
	if (hif && from_pod) {
		c->w->nlogs = 0;
		weir_host_decide(c->w, hif, WEIR_DIR_INGRESS, 0, &hd);
		c->ids.ingress_rule_id = hd.rule_id;
		if (c->w->nlogs)
			weir_emit_logs(c, WEIR_DIR_INGRESS, hd.verdict, hd.reason);
		if (hd.verdict == WEIR_VERDICT_DENY) {
			c->dir = WEIR_DIR_INGRESS;
			return weir_deny(c, hd.reason);
		}
	}
	/* one verdict for the flow: audit if either side only passed because of audit mode; the
	 * host endpoint's reason when there is one (host protection is what decided it) */
	if (hif)
		d.reason = hd.reason;
	if (hd.verdict == WEIR_VERDICT_AUDIT || d.verdict == WEIR_VERDICT_AUDIT) {
		d.verdict = WEIR_VERDICT_AUDIT;
		d.reason = WEIR_R_AUDIT;
	}

	/* Later fragments carry no ports: judged one by one, never tracked (docs: Fragments). */
	if (c->p.later_fragment)
		return weir_verdict(c, d.reason, TC_ACT_OK);

	src_local = sep && (sep->flags & WEIR_EP_LOCAL);
	dst_local = dep && (dep->flags & WEIR_EP_LOCAL);
	counts = from_pod || !src_local;
	{
		/* At FROM_POD the source passed anti-spoofing on this veth (the caller checked):
		 * further packets of the flow through it need not look the endpoint up again. */
		struct weir_ct_entry *n = weir_ct_new_entry(
			c, (src_local ? WEIR_CT_NEED_EGRESS : 0) | (dst_local ? WEIR_CT_NEED_INGRESS : 0) |
				   (from_pod ? WEIR_CT_EGRESS_OK | WEIR_CT_SRC_VETH : WEIR_CT_INGRESS_OK) |
				   (d.verdict == WEIR_VERDICT_AUDIT ? WEIR_CT_AUDITED : 0),
			dst_local ? weir_dst_veth(c, dep) : 0, counts);

		if (!n)
			return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
		if (bpf_map_update_elem(&weir_ct_v3, &c->p.tuple, n, BPF_NOEXIST)) {
			/* Another CPU created it in the meantime: carry on as one of its packets. */
			e = bpf_map_lookup_elem(&weir_ct_v3, &c->p.tuple);
			if (e)
				return weir_ct_forward(c, e, ep);
			weir_count(WEIR_C_CT_CREATE_FAILED);
			return weir_deny(c, WEIR_R_DROP_CT_FULL);
		}
	}
	weir_count(WEIR_C_CT_CREATED);
	/* a reply of this flow must never be answered from a deny cached before it existed */
	weir_ct_forget_reply_deny(&c->p.tuple);
	weir_emit_packet(c, WEIR_EV_FLOW_START, d.verdict, d.reason, 1);
	return weir_verdict(c, d.reason, TC_ACT_OK);
}

static __always_inline int weir_pod_hook(struct __sk_buff *skb, const __u8 hook)
{
	struct weir_ctx c;
	const struct weir_endpoint *sep = 0, *dep = 0;
	struct weir_ct_entry *e;
	struct weir_ct_key rkey;
	int r;

	__builtin_memset(&c.p, 0, sizeof(c.p));
	c.len = skb->len;
	c.ifindex = skb->ifindex;
	c.hook = hook;
	c.gen = 0;
	c.gen_read = 0;
	c.dir = hook == WEIR_HOOK_FROM_POD ? WEIR_DIR_EGRESS : WEIR_DIR_INGRESS;

	r = weir_parse(skb, &c.p);
	if (r == WEIR_PARSE_NON_IP)
		return weir_verdict(&c, WEIR_R_PASS_NON_IP, TC_ACT_OK);
	if (r != WEIR_PARSE_OK)
		return weir_verdict(&c, WEIR_R_DROP_MALFORMED, TC_ACT_SHOT);
	/* neighbour discovery from link-local addresses: no endpoint holds them, never police */
	if (weir_is_ndp(&c.p))
		return weir_verdict(&c, WEIR_R_PASS_NDP, TC_ACT_OK);
	c.now = weir_now();

	/* At FROM_POD, anti-spoofing (a pod may only send from its own addresses, through its own
	 * veth) runs after the conntrack lookup, so that an entry can vouch for the source and spare
	 * the endpoint lookup; without such an entry it runs in full before anything else is done
	 * with the packet (in particular before a port-reuse delete).
	 * At TO_POD the destination endpoint is only needed when policy runs: established packets
	 * skip that lookup (the flow was approved; a later change of the endpoint does not
	 * re-judge it, as with any conntrack). */

	if (c.p.later_fragment)
		goto new_flow;

	e = bpf_map_lookup_elem(&weir_ct_v3, &c.p.tuple);
	if (e) {
		/* vouched: the flow was created at FROM_POD on this very veth, after its source
		 * address passed the full check there */
		if (hook == WEIR_HOOK_FROM_POD &&
		    !((e->flags & WEIR_CT_SRC_VETH) && e->ifindex == c.ifindex)) {
			weir_read_gen(&c);
			if (weir_spoofed(&c, &sep))
				return weir_drop_spoofed(&c, sep);
		}
		if (!weir_ct_is_reuse(e, c.p.tuple.proto, c.p.tcp_flags))
			return weir_ct_forward(&c, e, sep);
		/* port reuse after a close: forget the old flow, judge the new one afresh */
		weir_ct_delete(&c.p.tuple);
	} else {
		__u16 cached;

		weir_read_gen(&c);
		cached = weir_deny_cached(&c);
		if (cached)
			return weir_verdict(&c, cached, TC_ACT_SHOT);
		weir_ct_reverse(&rkey, &c.p.tuple);
		e = bpf_map_lookup_elem(&weir_ct_v3, &rkey);
		if (e) {
			/* a reply comes from the flow's destination pod, through its veth */
			if (hook == WEIR_HOOK_FROM_POD && e->rev_ifindex != c.ifindex) {
				if (weir_spoofed(&c, &sep))
					return weir_drop_spoofed(&c, sep);
				/* it passed here: later replies through this veth are vouched */
				e->rev_ifindex = c.ifindex;
			}
			if (!weir_ct_is_reuse(e, c.p.tuple.proto, c.p.tcp_flags))
				return weir_ct_reply(&c, e, &rkey);
			weir_ct_delete(&rkey);
		}
	}

new_flow:
	/* what follows is judged under this generation (a port reuse or a later fragment may get
	 * here without it; read once, so lookups made before it and after it share one slot) */
	weir_read_gen(&c);
	/* not yet checked (a later fragment, or vouched by an entry that was just forgotten) */
	if (hook == WEIR_HOOK_FROM_POD && !sep && weir_spoofed(&c, &sep))
		return weir_drop_spoofed(&c, sep);
	if (hook == WEIR_HOOK_TO_POD) {
		dep = weir_local_dst(&c);
		/* not addressed to a local endpoint (e.g. routed through): nobody's ingress to police */
		if (!dep)
			return weir_verdict(&c, WEIR_R_ALLOW_UNPOLICED, TC_ACT_OK);
	}
	return weir_new_flow(&c, sep, dep);
}

/* ---- host devices ------------------------------------------------------------------------ */

/* Is this packet the host's own traffic at this host device (to a node address entering, from one
 * leaving), rather than traffic forwarded through the node? */
static __always_inline int weir_host_own(const struct weir_ctx *c, const struct weir_endpoint *sep,
					 const struct weir_endpoint *dep)
{
	const struct weir_endpoint *host = c->hook == WEIR_HOOK_FROM_HOST_DEV ? dep : sep;

	return host && host->identity == WEIR_ID_HOST;
}

/* The host endpoint's decision at this device; its rule goes in the record field of its side: the
 * host's ingress (entering) or egress (leaving), or forward_rule_id for forwarded traffic.
 * Returns 0 only when the walk is unavailable (cannot happen). */
static __always_inline int weir_host_judge(struct weir_ctx *c, const struct weir_host_iface *hif,
					   const struct weir_endpoint *sep, const struct weir_endpoint *dep,
					   struct weir_decision *d)
{
	int own = weir_host_own(c, sep, dep);

	c->w = weir_gwalk_init(c->gen, &c->p);
	if (!c->w)
		return 0;
	weir_host_decide(c->w, hif, c->dir, !own, d);
	if (own)
		weir_ids_set_rule(c, c->dir, d->rule_id);
	else
		c->ids.forward_rule_id = d->rule_id;
	if (c->w->nlogs)
		weir_emit_logs(c, c->dir, d->verdict, d->reason);
	return 1;
}

/* The conntrack flags of this host-device hook: judged here, denied here. */
static __always_inline __u16 weir_hostdev_seen(const struct weir_ctx *c)
{
	return c->hook == WEIR_HOOK_FROM_HOST_DEV ? WEIR_CT_HOSTDEV_IN_SEEN : WEIR_CT_HOSTDEV_OUT_SEEN;
}

static __always_inline __u16 weir_hostdev_denied(const struct weir_ctx *c)
{
	return c->hook == WEIR_HOOK_FROM_HOST_DEV ? WEIR_CT_HOSTDEV_IN_DENIED : WEIR_CT_HOSTDEV_OUT_DENIED;
}

/* Packets of a flow in the initiator's direction: judged at this hook once (flows created
 * elsewhere, e.g. a pod's flow leaving the node, or a flow entering through another policed
 * interface, meet this host endpoint only now), or again while denied here. Counted here only
 * when no pod hook counts the flow. */
static __always_inline int weir_hostdev_forward(struct weir_ctx *c, const struct weir_host_iface *hif,
						struct weir_ct_entry *e)
{
	const __u16 seen = weir_hostdev_seen(c), denied = weir_hostdev_denied(c);
	__u32 reason = WEIR_R_ALLOW_ESTABLISHED;

	if (!(e->flags & seen) || (e->flags & denied)) {
		const struct weir_endpoint *sep = weir_ep(c, c->p.tuple.saddr);
		const struct weir_endpoint *dep = weir_ep(c, c->p.tuple.daddr);
		struct weir_decision d;

		weir_ids_from_ct(c, e);
		if (!weir_host_judge(c, hif, sep, dep, &d))
			return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
		if (d.verdict == WEIR_VERDICT_DENY) {
			/* its replies are refused from now on */
			e->flags |= seen | denied;
			return weir_deny(c, d.reason);
		}
		e->egress_rule_id = c->ids.egress_rule_id;
		e->ingress_rule_id = c->ids.ingress_rule_id;
		e->forward_rule_id = c->ids.forward_rule_id;
		e->flags = (e->flags | seen | (d.verdict == WEIR_VERDICT_AUDIT ? WEIR_CT_AUDITED : 0)) & ~denied;
		weir_ct_forget_reply_deny(&c->p.tuple);
		weir_emit_packet(c, WEIR_EV_FLOW_START, d.verdict, d.reason, 1);
		reason = d.reason;
	}
	if (!(e->flags & (WEIR_CT_NEED_EGRESS | WEIR_CT_NEED_INGRESS)))
		weir_ct_account(&c->p.tuple, e, 0, c->len, c->p.tcp_flags, c->hook, c->ifindex, c->now);
	return weir_verdict(c, reason, TC_ACT_OK);
}

static __always_inline int weir_hostdev_reply(struct weir_ctx *c, struct weir_ct_entry *e,
					      const struct weir_ct_key *fwd_key)
{
	if (!weir_ct_approved(e)) {
		weir_ids_from_ct(c, e);
		return weir_deny(c, WEIR_R_DROP_UNAPPROVED_REPLY);
	}
	if (!(e->flags & (WEIR_CT_NEED_EGRESS | WEIR_CT_NEED_INGRESS)))
		weir_ct_account(fwd_key, e, 1, c->len, c->p.tcp_flags, c->hook, c->ifindex, c->now);
	return weir_verdict(c, WEIR_R_ALLOW_ESTABLISHED, TC_ACT_OK);
}

static __always_inline int weir_hostdev_new_flow(struct weir_ctx *c, const struct weir_host_iface *hif)
{
	const struct weir_endpoint *sep = weir_ep(c, c->p.tuple.saddr);
	const struct weir_endpoint *dep = weir_ep(c, c->p.tuple.daddr);
	struct weir_decision d;
	struct weir_ct_entry *e;
	int src_local, dst_local;

	weir_count_ct_miss(c);
	weir_ids_from_eps(c, sep, dep);
	if (!weir_host_judge(c, hif, sep, dep, &d))
		return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
	if (d.verdict == WEIR_VERDICT_DENY)
		return weir_deny(c, d.reason);
	if (c->p.later_fragment)
		return weir_verdict(c, d.reason, TC_ACT_OK);

	src_local = sep && (sep->flags & WEIR_EP_LOCAL);
	dst_local = dep && (dep->flags & WEIR_EP_LOCAL);
	{
		/* A local destination pod's ingress still has to approve it (at TO_POD), and counts
		 * it; otherwise this device does. (A local source pod created its entry at FROM_POD.) */
		struct weir_ct_entry *n = weir_ct_new_entry(
			c, weir_hostdev_seen(c) | (dst_local ? WEIR_CT_NEED_INGRESS : 0) |
				   (d.verdict == WEIR_VERDICT_AUDIT ? WEIR_CT_AUDITED : 0),
			dst_local ? weir_dst_veth(c, dep) : 0, !src_local && !dst_local);

		if (!n)
			return weir_verdict(c, WEIR_R_UNKNOWN, TC_ACT_SHOT);
		if (bpf_map_update_elem(&weir_ct_v3, &c->p.tuple, n, BPF_NOEXIST)) {
			e = bpf_map_lookup_elem(&weir_ct_v3, &c->p.tuple);
			if (e)
				return weir_hostdev_forward(c, hif, e);
			weir_count(WEIR_C_CT_CREATE_FAILED);
			return weir_deny(c, WEIR_R_DROP_CT_FULL);
		}
	}
	weir_count(WEIR_C_CT_CREATED);
	weir_ct_forget_reply_deny(&c->p.tuple);
	weir_emit_packet(c, WEIR_EV_FLOW_START, d.verdict, d.reason, 1);
	return weir_verdict(c, d.reason, TC_ACT_OK);
}

/* Host devices: the host endpoint covering the interface (weir_hostif) polices the host's own
 * traffic through it and, with applyOnForward policies, traffic forwarded through it, statefully.
 * An interface without one is not policed: nothing is tracked or dropped there, the packet is
 * only classified and counted (docs/datapath.md: Host devices). */
static __always_inline int weir_host_hook(struct __sk_buff *skb, const __u8 hook)
{
	struct weir_ctx c;
	const struct weir_host_iface *hif;
	struct weir_ct_entry *e;
	struct weir_ct_key rkey;
	__u16 cached;
	int r;

	__builtin_memset(&c.p, 0, sizeof(c.p));
	c.len = skb->len;
	c.ifindex = skb->ifindex;
	c.hook = hook;
	c.gen = 0;
	c.gen_read = 0;
	c.dir = hook == WEIR_HOOK_FROM_HOST_DEV ? WEIR_DIR_INGRESS : WEIR_DIR_EGRESS;

	r = weir_parse(skb, &c.p);
	if (r == WEIR_PARSE_NON_IP)
		return weir_verdict(&c, WEIR_R_PASS_NON_IP, TC_ACT_OK);
	if (r == WEIR_PARSE_OK && weir_is_ndp(&c.p))
		return weir_verdict(&c, WEIR_R_PASS_NDP, TC_ACT_OK);
	weir_read_gen(&c);
	hif = WEIR_SLOT_LOOKUP(weir_hostif_v1, c.gen, &c.ifindex);
	if (!hif)
		return weir_verdict(&c, WEIR_R_ALLOW_UNPOLICED, TC_ACT_OK);
	if (r != WEIR_PARSE_OK)
		return weir_verdict(&c, WEIR_R_DROP_MALFORMED, TC_ACT_SHOT);
	c.now = weir_now();

	if (c.p.later_fragment)
		return weir_hostdev_new_flow(&c, hif);
	e = bpf_map_lookup_elem(&weir_ct_v3, &c.p.tuple);
	if (e) {
		if (!weir_ct_is_reuse(e, c.p.tuple.proto, c.p.tcp_flags))
			return weir_hostdev_forward(&c, hif, e);
		weir_ct_delete(&c.p.tuple);
	} else {
		cached = weir_deny_cached(&c);
		if (cached)
			return weir_verdict(&c, cached, TC_ACT_SHOT);
		weir_ct_reverse(&rkey, &c.p.tuple);
		e = bpf_map_lookup_elem(&weir_ct_v3, &rkey);
		if (e) {
			if (!weir_ct_is_reuse(e, c.p.tuple.proto, c.p.tcp_flags))
				return weir_hostdev_reply(&c, e, &rkey);
			weir_ct_delete(&rkey);
		}
	}
	return weir_hostdev_new_flow(&c, hif);
}

#endif /* WEIR_DATAPATH_H */
