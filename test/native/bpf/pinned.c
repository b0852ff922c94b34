// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-only program for test/native: a map pinned by name, for the pinRoot test. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Pinned by name under the object's pinRoot: shared between two opens. Kept out of progs.c, whose
 * objects load without a pinRoot all over the tests (libbpf would pin this under /sys/fs/bpf). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared SEC(".maps");

/* not pinned: each open has its own */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* writes `shared`[0] += mark, returns the new value's low 32 bits */
SEC("tc")
int add_shared(struct __sk_buff *skb)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&shared, &zero);
	if (!v)
		return -1;
	*v += skb->mark;
	return (int)*v;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
