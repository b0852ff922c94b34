/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing: Ethernet (up to two VLAN tags), IPv4 (options, fragments), IPv6 (extension
 * headers), then the L4 ports / ICMP fields. Reads go through weir_load(), so headers in
 * paged (non-linear) skb data parse the same as linear ones; nothing is ever written. */
#ifndef WEIR_PARSE_H
#define WEIR_PARSE_H

#include "common.h"

enum weir_parse_result {
	WEIR_PARSE_OK = 0,
	WEIR_PARSE_NON_IP = 1,    /* ARP, LLDP, ...: not ours to judge */
	WEIR_PARSE_MALFORMED = 2, /* truncated or inconsistent headers */
};

#define WEIR_MAX_VLAN 2
#define WEIR_MAX_IPV6_EXT 8

#define WEIR_ETH_P_IP 0x0800
#define WEIR_ETH_P_IPV6 0x86DD
#define WEIR_ETH_P_8021Q 0x8100
#define WEIR_ETH_P_8021AD 0x88A8

#define WEIR_IPV6_HOPOPTS 0
#define WEIR_IPV6_ROUTING 43
#define WEIR_IPV6_FRAGMENT 44
#define WEIR_IPV6_AH 51
#define WEIR_IPV6_DSTOPTS 60

/* Largest header offset we read at; bounds the verifier's view of variable offsets. */
#define WEIR_MAX_HDR_OFF 1024

/* The packet being parsed: its linear data, read from the skb once (clang would otherwise be
 * free to re-derive skb->data from a modified context pointer, which the verifier rejects). */
struct weir_cursor {
	struct __sk_buff *skb;
	void *data;
	void *end;
	__u32 len; /* where headers may be read up to: skb->len (the whole frame, linear or not),
		    * then, once the IP header is checked, the end of the IP datagram: bytes past its
		    * length field (link padding) belong to no header */
};

/* Copies len bytes (a constant) at off into to (4-byte aligned): straight from the linear skb
 * data when it is there, in 4-byte loads (x86 and arm64 allow unaligned packet loads), else
 * through bpf_skb_load_bytes, which also reaches paged data. The direct path saves a helper
 * call per header, most of the parsing cost. Non-zero when the packet is too short. */
static __always_inline int weir_load(const struct weir_cursor *cur, __u32 off, void *to, const __u32 len)
{
	void *from = cur->data + off;
	__u32 i;

	/* a header that does not fit in the datagram is truncated, whatever follows in the frame */
	if (off + len > cur->len)
		return -1;
	if (off <= WEIR_MAX_HDR_OFF && from + len <= cur->end) {
#pragma unroll
		for (i = 0; i + 4 <= len; i += 4)
			*(__u32 *)(to + i) = *(const __u32 *)(from + i);
		if (len & 2)
			*(__u16 *)(to + (len & ~3u)) = *(const __u16 *)(from + (len & ~3u));
		return 0;
	}
	return bpf_skb_load_bytes(cur->skb, off, to, len);
}

#define WEIR_BUF(name, n) __u8 name[n] __attribute__((aligned(4)))

/* What the policy and conntrack code needs of a packet. */
struct weir_pkt {
	struct weir_ct_key tuple; /* as sent: saddr/daddr (v4 mapped), ports host order, proto */
	__u8 family;              /* 4 or 6 */
	__u8 tcp_flags;           /* byte 13 of the TCP header; 0 for other protocols */
	__u8 later_fragment;      /* a non-first fragment: no L4 header, ports are 0 */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pad[3];
};

static __always_inline int weir_is_ndp(const struct weir_pkt *p)
{
	/* Link-local control that must always flow: 133 router solicitation .. 137 redirect (NDP),
	 * and multicast listener discovery (130-132 MLDv1, 143 MLDv2 report), which a pod's kernel
	 * sends from its link-local address as soon as eth0 comes up. */
	/* ICMPv6 in IPv6 only: protocol 58 in IPv4 is nobody's NDP, and must not pass unjudged */
	return p->family == 6 && p->tuple.proto == WEIR_PROTO_ICMPV6 && !p->later_fragment &&
	       ((p->icmp_type >= 133 && p->icmp_type <= 137) ||
		(p->icmp_type >= 130 && p->icmp_type <= 132) || p->icmp_type == 143);
}

static __always_inline int weir_ports_matter(__u8 proto)
{
	return proto == WEIR_PROTO_TCP || proto == WEIR_PROTO_UDP || proto == WEIR_PROTO_SCTP;
}

/* L4 header at off: ports for TCP/UDP/SCTP, type/code (and echo id as both ports) for ICMP. */
static __always_inline int weir_parse_l4(const struct weir_cursor *cur, __u32 off, struct weir_pkt *p)
{
	WEIR_BUF(buf, 20);

	switch (p->tuple.proto) {
	case WEIR_PROTO_TCP:
		/* The fixed 20-byte header must be there; doff below 5 is nonsense. */
		if (weir_load(cur, off, buf, 20))
			return WEIR_PARSE_MALFORMED;
		if ((buf[12] >> 4) < 5)
			return WEIR_PARSE_MALFORMED;
		p->tcp_flags = buf[13];
		break;
	case WEIR_PROTO_UDP:
		if (weir_load(cur, off, buf, 8))
			return WEIR_PARSE_MALFORMED;
		break;
	case WEIR_PROTO_SCTP:
		/* common header: ports, verification tag, checksum */
		if (weir_load(cur, off, buf, 12))
			return WEIR_PARSE_MALFORMED;
		break;
	case WEIR_PROTO_ICMP:
	case WEIR_PROTO_ICMPV6:
		/* Every ICMP message has at least type, code, checksum and 4 more bytes. */
		if (weir_load(cur, off, buf, 8))
			return WEIR_PARSE_MALFORMED;
		p->icmp_type = buf[0];
		p->icmp_code = buf[1];
		/* Echo request and reply carry the same identifier: putting it in both ports makes
		 * the reply's reversed tuple equal the request's tuple. Other ICMP: ports 0. */
		if ((p->tuple.proto == WEIR_PROTO_ICMP && (buf[0] == 8 || buf[0] == 0)) ||
		    (p->tuple.proto == WEIR_PROTO_ICMPV6 && (buf[0] == 128 || buf[0] == 129))) {
			__u16 id = ((__u16)buf[4] << 8) | buf[5];

			p->tuple.sport = id;
			p->tuple.dport = id;
		}
		return WEIR_PARSE_OK;
	default:
		/* ESP, GRE, ...: no ports we understand */
		return WEIR_PARSE_OK;
	}
	p->tuple.sport = ((__u16)buf[0] << 8) | buf[1];
	p->tuple.dport = ((__u16)buf[2] << 8) | buf[3];
	return WEIR_PARSE_OK;
}

static __always_inline int weir_parse_ipv4(struct weir_cursor *cur, __u32 off, struct weir_pkt *p)
{
	WEIR_BUF(h, 20);
	__u32 *w = (__u32 *)p->tuple.saddr;
	__u32 *v = (__u32 *)p->tuple.daddr;
	__u32 ihl, tot_len;
	__u16 frag;

	if (weir_load(cur, off, h, 20))
		return WEIR_PARSE_MALFORMED;
	ihl = (__u32)(h[0] & 0x0f) * 4;
	tot_len = ((__u32)h[2] << 8) | h[3];
	if ((h[0] >> 4) != 4 || ihl < 20 || tot_len < ihl || off + tot_len > cur->len)
		return WEIR_PARSE_MALFORMED;
	cur->len = off + tot_len;

	p->family = 4;
	p->tuple.proto = h[9];
	/* ::ffff:a.b.c.d, the one address form of every key */
	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	__builtin_memcpy(&w[3], &h[12], 4);
	v[0] = 0;
	v[1] = 0;
	v[2] = bpf_htonl(0x0000ffff);
	__builtin_memcpy(&v[3], &h[16], 4);

	frag = (((__u16)h[6] << 8) | h[7]) & 0x1fff;
	if (frag) {
		/* Only the first fragment carries the L4 header; later ones are judged without ports
		 * (see docs/datapath.md, "Fragments"). */
		p->later_fragment = 1;
		return WEIR_PARSE_OK;
	}
	return weir_parse_l4(cur, off + ihl, p);
}

static __always_inline int weir_parse_ipv6(struct weir_cursor *cur, __u32 off, struct weir_pkt *p)
{
	WEIR_BUF(h, 40);
	__u32 plen;
	__u8 nh;
	int i;

	if (weir_load(cur, off, h, 40))
		return WEIR_PARSE_MALFORMED;
	if ((h[0] >> 4) != 6)
		return WEIR_PARSE_MALFORMED;
	plen = ((__u32)h[4] << 8) | h[5];
	/* payload length 0 is a jumbogram (hop-by-hop option); otherwise it must fit the skb */
	if (plen && off + 40 + plen > cur->len)
		return WEIR_PARSE_MALFORMED;
	if (plen)
		cur->len = off + 40 + plen;
	p->family = 6;
	__builtin_memcpy(p->tuple.saddr, &h[8], 16);
	__builtin_memcpy(p->tuple.daddr, &h[24], 16);
	nh = h[6];
	off += 40;

	/* Skip extension headers, bounded: more than WEIR_MAX_IPV6_EXT is treated as malformed
	 * rather than passed unparsed, so a chain of headers cannot hide the L4 header. */
#pragma unroll
	for (i = 0; i < WEIR_MAX_IPV6_EXT; i++) {
		WEIR_BUF(e, 8);

		switch (nh) {
		case WEIR_IPV6_HOPOPTS:
		case WEIR_IPV6_ROUTING:
		case WEIR_IPV6_DSTOPTS:
			if (weir_load(cur, off, e, 2))
				return WEIR_PARSE_MALFORMED;
			nh = e[0];
			off += ((__u32)e[1] + 1) * 8;
			continue;
		case WEIR_IPV6_AH:
			/* AH counts its length in 4-byte units, minus 2 */
			if (weir_load(cur, off, e, 2))
				return WEIR_PARSE_MALFORMED;
			nh = e[0];
			off += ((__u32)e[1] + 2) * 4;
			continue;
		case WEIR_IPV6_FRAGMENT:
			if (weir_load(cur, off, e, 8))
				return WEIR_PARSE_MALFORMED;
			nh = e[0];
			off += 8;
			if ((((__u16)e[2] << 8) | e[3]) & 0xfff8) {
				p->tuple.proto = nh;
				p->later_fragment = 1;
				return WEIR_PARSE_OK;
			}
			continue;
		default:
			break;
		}
		break;
	}
	if (nh == WEIR_IPV6_HOPOPTS || nh == WEIR_IPV6_ROUTING || nh == WEIR_IPV6_DSTOPTS ||
	    nh == WEIR_IPV6_AH || nh == WEIR_IPV6_FRAGMENT)
		return WEIR_PARSE_MALFORMED;
	p->tuple.proto = nh;
	return weir_parse_l4(cur, off, p);
}

/* Fills *p from the packet. *p must be zeroed by the caller (keys are compared bytewise). */
static __always_inline int weir_parse(struct __sk_buff *skb, struct weir_pkt *p)
{
	struct weir_cursor cur = {
		.skb = skb,
		.data = (void *)(long)skb->data,
		.end = (void *)(long)skb->data_end,
		.len = skb->len,
	};
	WEIR_BUF(eth, 2);
	__u32 off = ETH_HLEN;
	__u16 proto;
	int i;

	/* the EtherType (test runs and the stack guarantee the 14-byte header) */
	if (weir_load(&cur, 12, eth, 2))
		return WEIR_PARSE_NON_IP;
	proto = ((__u16)eth[0] << 8) | eth[1];

	/* VLAN tags left in the frame (not offloaded to skb->vlan_tci): step over them */
#pragma unroll
	for (i = 0; i < WEIR_MAX_VLAN; i++) {
		WEIR_BUF(tag, 4);

		if (proto != WEIR_ETH_P_8021Q && proto != WEIR_ETH_P_8021AD)
			break;
		if (weir_load(&cur, off, tag, 4))
			return WEIR_PARSE_MALFORMED;
		proto = ((__u16)tag[2] << 8) | tag[3];
		off += 4;
	}
	/* A deeper stack of tags is malformed, not non-IP: the stack strips priority tags (VLAN id
	 * 0) it has no device for and would deliver the IP packet inside unjudged. */
	if (proto == WEIR_ETH_P_8021Q || proto == WEIR_ETH_P_8021AD)
		return WEIR_PARSE_MALFORMED;

	if (proto == WEIR_ETH_P_IP)
		return weir_parse_ipv4(&cur, off, p);
	if (proto == WEIR_ETH_P_IPV6)
		return weir_parse_ipv6(&cur, off, p);
	return WEIR_PARSE_NON_IP;
}

#endif /* WEIR_PARSE_H */
