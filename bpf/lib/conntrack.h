/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking: one weir_ct_v3 entry per flow, keyed by the initiator's tuple; a reply is
 * found under the reversed tuple. The entry remembers which policy sides the flow needed and
 * which approved it, so established packets skip policy, and counts the flow both ways. */
#ifndef WEIR_CONNTRACK_H
#define WEIR_CONNTRACK_H

#include "common.h"
#include "stats.h"
#include "events.h"

static __always_inline void weir_ct_reverse(struct weir_ct_key *r, const struct weir_ct_key *k)
{
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->pad[0] = 0;
	r->pad[1] = 0;
	r->pad[2] = 0;
}

/* The conntrack state a cached deny verdict of the reversed tuple may rest on (an unapproved
 * reply; a tuple judged as a new flow because no entry answered it) changed with this entry: the
 * entry was created, approved or deleted. Make that tuple's next packet be judged afresh. */
static __always_inline void weir_ct_forget_reply_deny(const struct weir_ct_key *key)
{
	struct weir_ct_key r;

	weir_ct_reverse(&r, key);
	weir_deny_forget(&r);
}

static __always_inline long weir_ct_delete(const struct weir_ct_key *key)
{
	long err = bpf_map_delete_elem(&weir_ct_v3, key);

	weir_ct_forget_reply_deny(key);
	return err;
}

static __always_inline int weir_ct_approved(const struct weir_ct_entry *e)
{
	__u16 f = e->flags;

	return (!(f & WEIR_CT_NEED_EGRESS) || (f & WEIR_CT_EGRESS_OK)) &&
	       (!(f & WEIR_CT_NEED_INGRESS) || (f & WEIR_CT_INGRESS_OK)) &&
	       !(f & (WEIR_CT_HOSTDEV_IN_DENIED | WEIR_CT_HOSTDEV_OUT_DENIED));
}

static __always_inline int weir_is_bare_syn(__u8 proto, __u8 tcp_flags)
{
	return proto == WEIR_PROTO_TCP && (tcp_flags & (WEIR_TCP_SYN | WEIR_TCP_ACK)) == WEIR_TCP_SYN;
}

/* A bare SYN on a flow that already ended: the tuple is being reused for a new connection. */
static __always_inline int weir_ct_is_reuse(const struct weir_ct_entry *e, __u8 proto, __u8 tcp_flags)
{
	return (e->flags & WEIR_CT_ENDED) && weir_is_bare_syn(proto, tcp_flags);
}

/* Counts one packet of the flow (at the flow's single counting hook, see docs/datapath.md) and
 * follows the TCP teardown: RST, or FIN both ways, ends the flow with a FLOW_END record. The entry
 * itself stays until the collector removes it, so the last ACKs still find it. */
static __always_inline void weir_ct_account(const struct weir_ct_key *key, struct weir_ct_entry *e,
					    int reply, __u32 len, __u8 tcp_flags, __u8 hook,
					    __u32 ifindex, __u64 now)
{
	__u16 f = e->flags, nf;

	e->last_seen_ns = now;
	if (!reply) {
		__sync_fetch_and_add(&e->packets_fwd, 1);
		__sync_fetch_and_add(&e->bytes_fwd, len);
	} else {
		__sync_fetch_and_add(&e->packets_rev, 1);
		__sync_fetch_and_add(&e->bytes_rev, len);
	}
	if (key->proto != WEIR_PROTO_TCP) {
		if (reply && !(f & WEIR_CT_SEEN_REPLY))
			e->flags = f | WEIR_CT_SEEN_REPLY;
		return;
	}

	/* TCP: flags and state words are only written when they change (keeps the line clean) */
	if (!reply) {
		if ((e->tcp_flags_fwd | tcp_flags) != e->tcp_flags_fwd)
			e->tcp_flags_fwd |= tcp_flags;
	} else {
		if ((e->tcp_flags_rev | tcp_flags) != e->tcp_flags_rev)
			e->tcp_flags_rev |= tcp_flags;
	}
	nf = f;
	if (reply)
		nf |= WEIR_CT_SEEN_REPLY;
	if (tcp_flags & WEIR_TCP_RST)
		nf |= WEIR_CT_RST;
	if (tcp_flags & WEIR_TCP_FIN)
		nf |= reply ? WEIR_CT_FIN_REV : WEIR_CT_FIN_FWD;
	if (!(nf & WEIR_CT_ENDED) &&
	    ((nf & WEIR_CT_RST) ||
	     (nf & (WEIR_CT_FIN_FWD | WEIR_CT_FIN_REV)) == (WEIR_CT_FIN_FWD | WEIR_CT_FIN_REV))) {
		nf |= WEIR_CT_ENDED;
		e->flags = nf;
		weir_emit_flow_end(key, e, hook, ifindex, now);
		return;
	}
	if (nf != f)
		e->flags = nf;
}

/* ---- the collector ------------------------------------------------------------------------- */

struct weir_gc_ctx {
	__u64 now;
	__u32 deleted;
	__u32 pad;
};

static __always_inline __u64 weir_ct_timeout(const struct weir_ct_key *k, const struct weir_ct_entry *e)
{
	if (k->proto == WEIR_PROTO_TCP) {
		if (e->flags & (WEIR_CT_ENDED | WEIR_CT_RST))
			return tcp_closed_timeout_ns;
		if (!(e->flags & WEIR_CT_SEEN_REPLY))
			return tcp_syn_timeout_ns;
		return tcp_established_timeout_ns;
	}
	if (k->proto == WEIR_PROTO_UDP)
		return udp_timeout_ns;
	return other_timeout_ns;
}

static long weir_ct_gc_one(void *map, struct weir_ct_key *key, struct weir_ct_entry *e,
			   struct weir_gc_ctx *g)
{
	/* last_seen may be a hair newer than g->now (another CPU just counted a packet) */
	if (e->last_seen_ns >= g->now || g->now - e->last_seen_ns <= weir_ct_timeout(key, e))
		return 0;
	/* A flow that ended by FIN/RST already has its FLOW_END; the others end by expiry here. */
	if (!(e->flags & WEIR_CT_ENDED))
		weir_emit_flow_end(key, e, WEIR_HOOK_GC, e->ifindex, g->now);
	if (weir_ct_delete(key) == 0) {
		g->deleted++;
		weir_count(WEIR_C_CT_EXPIRED);
	}
	return 0;
}

#endif /* WEIR_CONNTRACK_H */
