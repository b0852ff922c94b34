/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The global tier (GlobalNetworkPolicy) and host endpoints: ordered rules with Allow, Deny, Pass and
 * Log, first match deciding, evaluated before the NetworkPolicy tier; failsafe ports and the host
 * endpoint's default. The semantics are those of src/policy/host-reference.ts (docs/policy.md,
 * "Host protection"); test/datapath/global-differential.test.ts compares the two.
 *
 * Unlike NetworkPolicy's allow-lists, which fold into a few keyed lookups, an ordered first-match
 * list with negations (notNets, notPorts) does not fold without blowing up, so the rules are
 * interpreted: user space copies the rules of the policies selecting a subject, in order, into a
 * contiguous run of weir_grules, and bpf_loop walks it. Each condition is one set lookup. Only new
 * flows (and denied packets past the deny cache) get here; established packets never do. */
#ifndef WEIR_GLOBAL_H
#define WEIR_GLOBAL_H

#include "common.h"
#include "parse.h"

#define WEIR_GLOBAL_MAX_LOGS 4

/* One side's policy decision (pod or host endpoint). */
struct weir_decision {
	__u32 rule_id; /* 0 when no rule decided */
	__u16 reason;  /* enum weir_reason */
	__u8 verdict;  /* ALLOW, AUDIT or DENY */
	__u8 pad;
};

/* The outcome of one walk over a subject's list. */
enum weir_gtier_outcome {
	WEIR_GT_NOT_SELECTED = 0, /* no list: no global policy selects the subject this way */
	WEIR_GT_ALLOW = 1,
	WEIR_GT_DENY = 2,
	WEIR_GT_PASS = 3,
	WEIR_GT_END = 4, /* selected, no rule decided or passed: end-of-tier deny */
};

/* What the rules look at on one side of the packet, looked up when a rule first needs it. */
struct weir_gside {
	__u32 sel;   /* sel_identity of the address's endpoint, 0 = none */
	__u32 cls;   /* CIDR class of the address, 0 = none */
	__u8 sel_done;
	__u8 cls_done;
	__u8 pad[6];
};

/* bpf_loop's context: the packet's facts, the walk's state and its answer. */
struct weir_gtier_walk {
	struct weir_ct_key t; /* addresses, ports (0 = none: not TCP/UDP/SCTP, or a later fragment), proto */
	struct weir_gside side[2]; /* 0: source, 1: destination */
	__u32 gen;
	__u32 first;
	__u32 rule_id;  /* the deciding (or passing) rule */
	__u8 outcome;   /* enum weir_gtier_outcome */
	__u8 has_ports;
	__u8 collect_logs;
	__u8 nlogs;
	__u32 logs[WEIR_GLOBAL_MAX_LOGS]; /* Log rules that matched, in order (the first few) */
	__u32 decision_rule; /* the rule of the last weir_*_decide_run */
	__u32 np_rule;       /* the rule of the last weir_np_decide_run */
	/* lookup keys, built here rather than on the stack (the loop body's frame counts towards
	 * the programs' 512 bytes) */
	struct weir_gset_key sk;
	struct weir_gport_key pk;
	struct weir_ipcache_key ik;
};

/* A decision as a global function returns it. */
#define WEIR_DECISION_PACK(verdict, reason) ((int)(verdict) | ((int)(reason) << 8))

static __always_inline void weir_decision_unpack(const struct weir_gtier_walk *w, int r, struct weir_decision *d)
{
	d->verdict = r & 0xff;
	d->reason = (r >> 8) & 0xffff;
	d->rule_id = w->decision_rule;
}

/* The walk is too big for the programs' 512-byte stack next to everything else, so it lives in a
 * per-CPU scratch map: a program runs to completion on its CPU, and no Weir program runs nested in
 * another, so one slot per CPU is never shared by two packets at once. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weir_gtier_walk);
} weir_gwalk_scratch SEC(".maps");

static __always_inline struct weir_gtier_walk *weir_gwalk(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&weir_gwalk_scratch, &zero);
}

/* A fresh walk for the packet, judged under generation gen (NULL: cannot happen, the map has one
 * entry per CPU; callers still check, for the verifier). */
static __always_inline struct weir_gtier_walk *weir_gwalk_init(__u32 gen, const struct weir_pkt *p)
{
	struct weir_gtier_walk *w = weir_gwalk();

	if (!w)
		return 0;
	__builtin_memset(w, 0, sizeof(*w));
	w->t = p->tuple;
	w->gen = gen;
	w->has_ports = weir_ports_matter(p->tuple.proto) && !p->later_fragment;
	return w;
}

static __always_inline int weir_gset_has(struct weir_gtier_walk *w, __u32 set, __u32 member, __u32 port)
{
	w->sk.set = set;
	w->sk.member = member;
	w->sk.port = port;
	return WEIR_SLOT_LOOKUP(weir_gset_v1, w->gen, &w->sk) != 0;
}

static __always_inline __u32 weir_gside_sel(struct weir_gtier_walk *w, int dst)
{
	struct weir_gside *s = &w->side[dst ? 1 : 0];

	if (!s->sel_done) {
		const struct weir_endpoint *ep =
			WEIR_SLOT_LOOKUP(weir_endpoints_v3, w->gen, dst ? w->t.daddr : w->t.saddr);

		s->sel = ep ? ep->sel_identity : 0;
		s->sel_done = 1;
	}
	return s->sel;
}

static __always_inline __u32 weir_gside_cls(struct weir_gtier_walk *w, int dst)
{
	struct weir_gside *s = &w->side[dst ? 1 : 0];

	if (!s->cls_done) {
		const struct weir_ipcache_value *v;

		w->ik.prefixlen = 128;
		__builtin_memcpy(w->ik.addr, dst ? w->t.daddr : w->t.saddr, 16);
		v = WEIR_SLOT_LOOKUP(weir_ipcache_v1, w->gen, &w->ik);
		s->cls = v ? v->class_id : 0;
		s->cls_done = 1;
	}
	return s->cls;
}

/* Is the side's port in port set `set`: a block of numbers, or a named port of the side's endpoint. */
static __always_inline int weir_gport_in(struct weir_gtier_walk *w, __u32 set, int dst)
{
	__u16 port = dst ? w->t.dport : w->t.sport;

	w->pk.prefixlen = WEIR_GPORT_PREFIX_SET + 16;
	w->pk.set = set;
	w->pk.port = bpf_htons(port);
	w->pk.pad = 0;
	if (WEIR_SLOT_LOOKUP(weir_gport_v1, w->gen, &w->pk))
		return 1;
	return weir_gset_has(w, set, weir_gside_sel(w, dst), ((__u32)w->t.proto << 16) | port);
}

/* One side of a rule: selector, nets, notNets, ports, notPorts (0 = no condition). */
static __always_inline int weir_gside_matches(struct weir_gtier_walk *w, int dst, __u32 sel, __u32 nets,
					      __u32 not_nets, __u32 ports, __u32 not_ports)
{
	if (sel && !weir_gset_has(w, sel, weir_gside_sel(w, dst), 0))
		return 0;
	if (nets && !weir_gset_has(w, nets, weir_gside_cls(w, dst), 0))
		return 0;
	if (not_nets && weir_gset_has(w, not_nets, weir_gside_cls(w, dst), 0))
		return 0;
	if (ports && (!w->has_ports || !weir_gport_in(w, ports, dst)))
		return 0;
	if (not_ports && w->has_ports && weir_gport_in(w, not_ports, dst))
		return 0;
	return 1;
}

static long weir_gtier_step(__u32 i, void *unused)
{
	struct weir_gtier_walk *w = weir_gwalk();
	const struct weir_grule *r;
	__u32 idx;

	if (!w)
		return 1;
	idx = w->first + i;
	r = WEIR_SLOT_LOOKUP(weir_grules_v1, w->gen, &idx);
	if (!r)
		return 1;
	if (r->proto && r->proto != w->t.proto)
		return 0;
	if (!weir_gside_matches(w, 0, r->src_sel, r->src_nets, r->src_not_nets, r->src_ports, r->src_not_ports))
		return 0;
	if (!weir_gside_matches(w, 1, r->dst_sel, r->dst_nets, r->dst_not_nets, r->dst_ports, r->dst_not_ports))
		return 0;
	switch (r->action) {
	case WEIR_GACT_LOG:
		if (w->collect_logs && w->nlogs < WEIR_GLOBAL_MAX_LOGS) {
			__u8 n = w->nlogs;

			if (n < WEIR_GLOBAL_MAX_LOGS) /* (again, for the verifier) */
				w->logs[n] = r->rule_id;
			w->nlogs = n + 1;
		}
		return 0;
	case WEIR_GACT_ALLOW:
		w->outcome = WEIR_GT_ALLOW;
		break;
	case WEIR_GACT_DENY:
		w->outcome = WEIR_GT_DENY;
		break;
	default:
		w->outcome = WEIR_GT_PASS;
		break;
	}
	w->rule_id = r->rule_id;
	return 1;
}

/* Walks the list of subject `identity` in `direction` (variant WEIR_GT_*) over the per-CPU walk,
 * which weir_gwalk_init prepared. A global function: the verifier checks it, and the loop body,
 * once, not at every one of its call sites. Returns the outcome (also in w->outcome). */
__attribute__((noinline)) int weir_gtier_run(__u32 identity, __u32 direction, __u32 variant)
{
	struct weir_gtier_key k = { .identity = identity, .direction = direction, .variant = variant };
	struct weir_gtier_walk *w = weir_gwalk();
	const struct weir_gtier_value *v;

	if (!w)
		return WEIR_GT_NOT_SELECTED;
	v = WEIR_SLOT_LOOKUP(weir_gtier_v1, w->gen, &k);
	w->rule_id = 0;
	if (!v) {
		w->outcome = WEIR_GT_NOT_SELECTED;
		return WEIR_GT_NOT_SELECTED;
	}
	w->first = v->first;
	w->outcome = WEIR_GT_END;
	bpf_loop(v->count, weir_gtier_step, 0, 0);
	return w->outcome;
}

static __always_inline __u8 weir_gtier(struct weir_gtier_walk *w, __u32 identity, __u8 direction, __u8 variant)
{
	return weir_gtier_run(identity, direction, variant);
}

/* A global tier's decision, when it decided: verdict, reason, rule. Returns 0 when the next tier
 * decides (not selected, or Pass). */
static __always_inline int weir_gtier_decided(const struct weir_gtier_walk *w, __u8 *verdict, __u16 *reason)
{
	switch (w->outcome) {
	case WEIR_GT_ALLOW:
		*verdict = WEIR_VERDICT_ALLOW;
		*reason = WEIR_R_ALLOW_GLOBAL;
		return 1;
	case WEIR_GT_DENY:
		*verdict = WEIR_VERDICT_DENY;
		*reason = WEIR_R_DENY_POLICY;
		return 1;
	case WEIR_GT_END:
		*verdict = WEIR_VERDICT_DENY;
		*reason = WEIR_R_DENY_END_OF_TIER;
		return 1;
	default:
		return 0;
	}
}

/* A failsafe port of the host's own traffic in `direction` (checked before any policy). */
static __always_inline int weir_failsafe(struct weir_gtier_walk *w, __u8 direction)
{
	if (!w->has_ports)
		return 0;
	return weir_gset_has(w, direction == WEIR_DIR_INGRESS ? WEIR_GSET_FAILSAFE_IN : WEIR_GSET_FAILSAFE_OUT,
			     0, ((__u32)w->t.proto << 16) | w->t.dport);
}

/* The decision of a host endpoint for the host's own traffic (forwarded = 0) or traffic forwarded
 * through it, without audit: failsafes, its global tier, its default. */
static __always_inline void weir_host_decide_once(struct weir_gtier_walk *w, const struct weir_host_iface *hif,
						  __u8 direction, int forwarded, __u8 variant,
						  struct weir_decision *d)
{
	__u8 verdict = 0;
	__u16 reason = 0;

	d->rule_id = 0;
	if (!forwarded && weir_failsafe(w, direction)) {
		d->verdict = WEIR_VERDICT_ALLOW;
		d->reason = WEIR_R_ALLOW_FAILSAFE;
		return;
	}
	weir_gtier(w, hif->identity, direction, variant | (forwarded ? WEIR_GT_FORWARDED : 0));
	d->rule_id = w->rule_id;
	if (weir_gtier_decided(w, &verdict, &reason)) {
		d->verdict = verdict;
		d->reason = reason;
		return;
	}
	/* No NetworkPolicy selects a host endpoint: its default decides (after a Pass too). */
	if (forwarded) {
		d->verdict = WEIR_VERDICT_ALLOW;
		d->reason = WEIR_R_ALLOW_FORWARDED;
	} else {
		d->verdict = WEIR_VERDICT_DENY;
		d->reason = WEIR_R_DENY_HOST_DEFAULT;
	}
}

/* The host endpoint's decision with audit: audit-mode policies are left out of what is enforced;
 * if with them the packet would be denied, an allow becomes AUDIT. A host endpoint in audit mode
 * turns every denial into AUDIT. Log rules of the enforced walk are in w->logs. */
static __always_inline void weir_host_decide_inline(struct weir_gtier_walk *w, const struct weir_host_iface *hif,
					     __u8 direction, int forwarded, struct weir_decision *d)
{
	struct weir_gtier_key ak = {
		.identity = hif->identity,
		.direction = direction,
		.variant = WEIR_GT_WITH_AUDIT | (forwarded ? WEIR_GT_FORWARDED : 0),
	};

	w->collect_logs = 1;
	weir_host_decide_once(w, hif, direction, forwarded, 0, d);
	w->collect_logs = 0;
	if (d->verdict == WEIR_VERDICT_DENY) {
		if (hif->flags & WEIR_EP_AUDIT_ALL) {
			d->verdict = WEIR_VERDICT_AUDIT;
			d->reason = WEIR_R_AUDIT;
		}
		return;
	}
	if (d->reason != WEIR_R_ALLOW_FAILSAFE && WEIR_SLOT_LOOKUP(weir_gtier_v1, w->gen, &ak)) {
		struct weir_decision all;

		weir_host_decide_once(w, hif, direction, forwarded, WEIR_GT_WITH_AUDIT, &all);
		if (all.verdict == WEIR_VERDICT_DENY) {
			/* the record names what would deny it: the audit-mode rule (0: a default) */
			d->verdict = WEIR_VERDICT_AUDIT;
			d->reason = WEIR_R_AUDIT;
			d->rule_id = all.rule_id;
		}
	}
}

/* weir_host_decide_inline as a global function (see weir_pod_decide_run for why). */
__attribute__((noinline)) int weir_host_decide_run(__u32 identity, __u32 flags, __u32 direction, __u32 forwarded)
{
	struct weir_gtier_walk *w = weir_gwalk();
	struct weir_host_iface hif = { .identity = identity, .flags = flags };
	struct weir_decision d;

	if (!w)
		return 0;
	w->nlogs = 0;
	weir_host_decide_inline(w, &hif, direction, forwarded, &d);
	w->decision_rule = d.rule_id;
	return WEIR_DECISION_PACK(d.verdict, d.reason);
}

static __always_inline void weir_host_decide(struct weir_gtier_walk *w, const struct weir_host_iface *hif,
					     __u8 direction, int forwarded, struct weir_decision *d)
{
	int r = weir_host_decide_run(hif->identity, hif->flags, direction, forwarded);

	weir_decision_unpack(w, r, d);
}

#endif /* WEIR_GLOBAL_H */
