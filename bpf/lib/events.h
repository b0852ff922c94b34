/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ring-buffer records. Every record goes through weir_event_reserve(), which keeps the invariant
 * records offered == EVENTS_SENT + EVENTS_LOST, and reports losses in-band: the first reservation
 * on a CPU after a failure first writes a LOST record carrying that CPU's pending count. */
#ifndef WEIR_EVENTS_H
#define WEIR_EVENTS_H

#include "common.h"
#include "stats.h"
#include "parse.h"

/* Endpoint ids, identities and deciding rules of a flow, as in struct weir_ct_entry and struct
 * weir_flow_event. */
struct weir_flow_ids {
	__u32 src_ep;
	__u32 dst_ep;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 egress_rule_id;
	__u32 ingress_rule_id;
	__u32 forward_rule_id;
	__u32 pad;
};

static __always_inline void weir_event_hdr(struct weir_event_hdr *h, __u8 type, __u16 len)
{
	h->version = WEIR_EVENT_VERSION;
	h->type = type;
	h->len = len;
	h->cpu = bpf_get_smp_processor_id();
}

/* Reserves a record of `size` bytes (a compile-time constant), NULL when the ring is full. */
static __always_inline void *weir_event_reserve(__u32 size)
{
	__u32 zero = 0;
	__u64 *pend = bpf_map_lookup_elem(&weir_lost_pend_v1, &zero);
	void *rec;

	if (pend && *pend) {
		struct weir_lost_event *l = bpf_ringbuf_reserve(&weir_events_v2, sizeof(*l), 0);

		/* If even the LOST record does not fit, the count stays pending for next time. */
		if (l) {
			weir_event_hdr(&l->hdr, WEIR_EV_LOST, sizeof(*l));
			l->ts_ns = weir_now();
			l->lost = *pend;
			*pend = 0;
			bpf_ringbuf_submit(l, 0);
			weir_count(WEIR_C_EVENTS_SENT);
		}
	}
	rec = bpf_ringbuf_reserve(&weir_events_v2, size, 0);
	if (!rec) {
		if (pend)
			*pend += 1;
		weir_count(WEIR_C_EVENTS_LOST);
	}
	return rec;
}

static __always_inline void weir_event_submit(void *rec)
{
	bpf_ringbuf_submit(rec, 0);
	weir_count(WEIR_C_EVENTS_SENT);
}

/* What a flow record says besides the tuple and ids. */
struct weir_flow_meta {
	__u64 now;
	__u64 start_ns;
	__u32 ifindex;
	__u32 count;
	__u16 reason;
	__u8 type;
	__u8 family;
	__u8 direction;
	__u8 verdict;
	__u8 hook;
	__u8 tcp_flags;
};

/* One flow record (FLOW_START, DENY, FLOW_END). ct, when given, supplies the flow's counters. */
static __always_inline void weir_emit_flow(const struct weir_ct_key *t, const struct weir_flow_ids *ids,
					   const struct weir_flow_meta *m, const struct weir_ct_entry *ct)
{
	struct weir_flow_event *e = weir_event_reserve(sizeof(*e));

	if (!e)
		return;
	weir_event_hdr(&e->hdr, m->type, sizeof(*e));
	e->ts_ns = m->now;
	e->start_ns = m->start_ns;
	__builtin_memcpy(e->saddr, t->saddr, 16);
	__builtin_memcpy(e->daddr, t->daddr, 16);
	e->sport = t->sport;
	e->dport = t->dport;
	e->proto = t->proto;
	e->family = m->family;
	e->direction = m->direction;
	e->verdict = m->verdict;
	e->reason = m->reason;
	e->hook = m->hook;
	e->tcp_flags = m->tcp_flags;
	e->ifindex = m->ifindex;
	e->src_ep = ids->src_ep;
	e->dst_ep = ids->dst_ep;
	e->src_identity = ids->src_identity;
	e->dst_identity = ids->dst_identity;
	e->egress_rule_id = ids->egress_rule_id;
	e->ingress_rule_id = ids->ingress_rule_id;
	e->count = m->count;
	e->forward_rule_id = ids->forward_rule_id;
	if (ct) {
		e->packets_fwd = ct->packets_fwd;
		e->bytes_fwd = ct->bytes_fwd;
		e->packets_rev = ct->packets_rev;
		e->bytes_rev = ct->bytes_rev;
	} else {
		e->packets_fwd = 0;
		e->bytes_fwd = 0;
		e->packets_rev = 0;
		e->bytes_rev = 0;
	}
	weir_event_submit(e);
}

static __always_inline __u8 weir_family_of(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;

	return (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff)) ? 4 : 6;
}

/* FLOW_END for a tracked flow: the key is the initiator's tuple, the counters are the flow's. */
static __always_inline void weir_emit_flow_end(const struct weir_ct_key *key,
					       const struct weir_ct_entry *ct, __u8 hook,
					       __u32 ifindex, __u64 now)
{
	struct weir_flow_ids ids = {
		.src_ep = ct->src_ep,
		.dst_ep = ct->dst_ep,
		.src_identity = ct->src_identity,
		.dst_identity = ct->dst_identity,
		.egress_rule_id = ct->egress_rule_id,
		.ingress_rule_id = ct->ingress_rule_id,
		.forward_rule_id = ct->forward_rule_id,
	};
	struct weir_flow_meta m = {
		.now = now,
		.start_ns = ct->created_ns,
		.ifindex = ifindex,
		.count = 1,
		.reason = WEIR_R_ALLOW_ESTABLISHED,
		.type = WEIR_EV_FLOW_END,
		.family = weir_family_of(key->saddr),
		.direction = WEIR_DIR_BOTH,
		.verdict = WEIR_VERDICT_ALLOW,
		.hook = hook,
		.tcp_flags = ct->tcp_flags_fwd | ct->tcp_flags_rev,
	};

	weir_emit_flow(key, &ids, &m, ct);
}

#endif /* WEIR_EVENTS_H */
