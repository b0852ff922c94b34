/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters: one reason per packet (weir_stats_v2) and the event/conntrack counters
 * (weir_counters_v1). Per-CPU, so plain increments without atomics are exact. */
#ifndef WEIR_STATS_H
#define WEIR_STATS_H

#include "common.h"

static __always_inline void weir_count(__u32 counter)
{
	__u64 *v = bpf_map_lookup_elem(&weir_counters_v1, &counter);

	if (v)
		*v += 1;
}

/* Counts the packet under its reason; every hook invocation calls this exactly once, through
 * weir_verdict(), so the per-reason totals add up to the packets the programs saw. */
static __always_inline void weir_stat(__u32 reason, __u32 len)
{
	struct weir_stat *s = bpf_map_lookup_elem(&weir_stats_v2, &reason);

	if (s) {
		s->packets += 1;
		s->bytes += len;
	}
}

#endif /* WEIR_STATS_H */
