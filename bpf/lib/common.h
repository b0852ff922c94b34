/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Includes, helpers and the maps shared by every lib/ header. Only bpf/weir.c includes this chain,
 * so the maps below are defined exactly once per object. */
#ifndef WEIR_COMMON_H
#define WEIR_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "weir_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define NSEC_PER_SEC 1000000000ULL

/* Every timestamp Weir writes: CLOCK_MONOTONIC at tick resolution (1-4 ms). Conntrack lifetimes
 * and the DENY rate limit count in seconds, and the coarse clock costs a fraction of
 * bpf_ktime_get_ns() (measured ~15 ns vs ~33 ns per packet in a VM), on every packet. */
static __always_inline __u64 weir_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* TCP flag bits as in byte 13 of the TCP header. */
#define WEIR_TCP_FIN 0x01
#define WEIR_TCP_SYN 0x02
#define WEIR_TCP_RST 0x04
#define WEIR_TCP_PSH 0x08
#define WEIR_TCP_ACK 0x10

/* ---- maps: every one pinned by name, so the agent can reuse them across restarts. The _vN
 * suffix is the layout version of weir_abi.h (see the rules at its top). --------------------- */

/* The policy state, in two slots (weir_abi.h: WEIR_SLOTS): endpoints, policy keys, CIDR classes.
 * A packet reads the generation once and judges from its slot only. */
#define WEIR_ENDPOINTS_MAP(name)                                                                   \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 65536);                                                        \
		__type(key, struct weir_ip_key);                                                   \
		__type(value, struct weir_endpoint);                                               \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_POLICY_MAP(name)                                                                      \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 1 << 20);                                                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_policy_key);                                               \
		__type(value, struct weir_policy_value);                                           \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_PRANGE_MAP(name)                                                                      \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                               \
		__uint(max_entries, 1 << 20);                                                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_prange_key);                                               \
		__type(value, struct weir_policy_value);                                           \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_IPCACHE_MAP(name)                                                                     \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                               \
		__uint(max_entries, 65536);                                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_ipcache_key);                                              \
		__type(value, struct weir_ipcache_value);                                          \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")

/* Host protection (weir_abi.h): host interfaces, global tiers, global rules, sets, port sets. */
#define WEIR_HOSTIF_MAP(name)                                                                      \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 1024);                                                         \
		__type(key, __u32);                                                                \
		__type(value, struct weir_host_iface);                                             \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_GTIER_MAP(name)                                                                       \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 65536);                                                        \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_gtier_key);                                                \
		__type(value, struct weir_gtier_value);                                            \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_GRULES_MAP(name)                                                                      \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__uint(max_entries, 65536);                                                        \
		__type(key, __u32);                                                                \
		__type(value, struct weir_grule);                                                  \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_GSET_MAP(name)                                                                        \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_HASH);                                                   \
		__uint(max_entries, 1 << 20);                                                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_gset_key);                                                 \
		__type(value, __u32);                                                              \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")
#define WEIR_GPORT_MAP(name)                                                                       \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                                               \
		__uint(max_entries, 1 << 18);                                                      \
		__uint(map_flags, BPF_F_NO_PREALLOC);                                              \
		__type(key, struct weir_gport_key);                                                \
		__type(value, __u32);                                                              \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                               \
	} name SEC(".maps")

WEIR_ENDPOINTS_MAP(weir_endpoints_v3_0);
WEIR_ENDPOINTS_MAP(weir_endpoints_v3_1);
WEIR_POLICY_MAP(weir_policy_v3_0);
WEIR_POLICY_MAP(weir_policy_v3_1);
WEIR_PRANGE_MAP(weir_prange_v1_0);
WEIR_PRANGE_MAP(weir_prange_v1_1);
WEIR_IPCACHE_MAP(weir_ipcache_v1_0);
WEIR_IPCACHE_MAP(weir_ipcache_v1_1);
WEIR_HOSTIF_MAP(weir_hostif_v1_0);
WEIR_HOSTIF_MAP(weir_hostif_v1_1);
WEIR_GTIER_MAP(weir_gtier_v1_0);
WEIR_GTIER_MAP(weir_gtier_v1_1);
WEIR_GRULES_MAP(weir_grules_v1_0);
WEIR_GRULES_MAP(weir_grules_v1_1);
WEIR_GSET_MAP(weir_gset_v1_0);
WEIR_GSET_MAP(weir_gset_v1_1);
WEIR_GPORT_MAP(weir_gport_v1_0);
WEIR_GPORT_MAP(weir_gport_v1_1);

/* Grace-period barrier for user space, never used by the programs: updating an element of a
 * map-in-map makes the kernel wait (synchronize_rcu) until every BPF program that was running has
 * returned. Datapath.apply stores weir_config_v1 (an array of one struct weir_config, the inner
 * map shape below) in weir_sync_v1[0] before it rewrites the inactive slot, so no packet that
 * read an earlier generation can still be looking into that slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_ARRAY);
		__uint(max_entries, 1);
		__uint(key_size, sizeof(__u32));
		__uint(value_size, sizeof(struct weir_config));
	}); /* last: a flexible array */
} weir_sync_v1 SEC(".maps");

/* A lookup in the slot of generation gen (two call sites, so the verifier sees each map as a
 * constant). */
#define WEIR_SLOT_LOOKUP(map, gen, key)                                                            \
	((gen) & 1 ? bpf_map_lookup_elem(&map##_1, (key)) : bpf_map_lookup_elem(&map##_0, (key)))

/* LRU: under pressure the least recently used flows are forgotten rather than new flows refused.
 * A forgotten flow's next packet is simply re-evaluated as a new flow. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct weir_ct_key);
	__type(value, struct weir_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_ct_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weir_ct_key);
	__type(value, struct weir_deny_rl);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_deny_rl_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weir_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_config_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEIR_R_MAX);
	__type(key, __u32);
	__type(value, struct weir_stat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_stats_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WEIR_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_counters_v1 SEC(".maps");

/* Per CPU: ring-buffer reservations that failed and have not yet been reported in a LOST record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_lost_pend_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* 8 MiB, ~60k flow records: at 200k new flows/s, 0.3 s for the reader to come round (1 MiB
	 * filled in 33 ms and lost records under load: docs/performance.md, pipeline) */
	__uint(max_entries, 8 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weir_events_v2 SEC(".maps");

/* The policy generation: read once per packet, before the endpoint and policy lookups a verdict
 * rests on (they all use its slot), so a verdict cached under it is never newer than the maps it
 * was judged from. */
static __always_inline __u32 weir_generation(void)
{
	__u32 zero = 0;
	const struct weir_config *cfg = bpf_map_lookup_elem(&weir_config_v1, &zero);

	return cfg ? cfg->generation : 0;
}

/* Forgets the cached deny verdict of a tuple (its rate-limit state and pending count stay, so
 * every denied packet is still reported). Called when conntrack state that verdict may rest on
 * changes: the reversed tuple's entry is created, approved or deleted. */
static __always_inline void weir_deny_forget(const struct weir_ct_key *k)
{
	struct weir_deny_rl *rl = bpf_map_lookup_elem(&weir_deny_rl_v2, k);

	if (rl && rl->reason)
		rl->reason = 0;
}

/* ---- runtime knobs: user space may change them before load; the verifier sees constants. ---- */

/* At most one DENY record per flow key per interval; the packets in between are counted. */
const volatile __u64 deny_event_interval_ns = 1 * NSEC_PER_SEC;
/* Conntrack expiry (idle time since last_seen_ns), applied by weir_ct_gc. */
const volatile __u64 tcp_syn_timeout_ns = 30 * NSEC_PER_SEC;          /* no reply seen yet */
const volatile __u64 tcp_established_timeout_ns = 7200 * NSEC_PER_SEC;
const volatile __u64 tcp_closed_timeout_ns = 10 * NSEC_PER_SEC;       /* FIN both ways or RST */
const volatile __u64 udp_timeout_ns = 60 * NSEC_PER_SEC;
const volatile __u64 other_timeout_ns = 60 * NSEC_PER_SEC;

#endif /* WEIR_COMMON_H */
