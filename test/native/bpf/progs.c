// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-only programs for test/native: small tc programs exercising each part of the binding. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* hash: key = packet length, value = times seen */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* per-CPU array: slot 0 counts runs on each CPU; 12-byte values check the 8-byte rounding */
struct pcpu_val {
	__u32 runs;
	__u32 last_len;
	__u32 magic;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct pcpu_val);
} pcpu SEC(".maps");

/* resized by the tests through maxEntries */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u32);
} resizable SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct test_record {
	__u32 seq;
	__u32 total;
	__u32 mark;
	__u32 len;
};

/* returns a constant */
SEC("tc")
int ret_const(struct __sk_buff *skb)
{
	return 7;
}

/* counts the packet by length in `counts` and per CPU in `pcpu` */
SEC("tc")
int count_len(struct __sk_buff *skb)
{
	__u32 len = skb->len, zero = 0;
	__u64 one = 1, *v = bpf_map_lookup_elem(&counts, &len);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &len, &one, BPF_ANY);
	struct pcpu_val *p = bpf_map_lookup_elem(&pcpu, &zero);
	if (p) {
		p->runs++;
		p->last_len = len;
		p->magic = 0xfeedf00d;
	}
	return TC_ACT_OK;
}

/* returns the mark from the context and sets mark = mark + 1 */
SEC("tc")
int bump_mark(struct __sk_buff *skb)
{
	__u32 m = skb->mark;
	skb->mark = m + 1;
	return m;
}

/* overwrites the destination MAC with ff:ff:ff:ff:ff:ff and returns the ethertype byte 12 */
SEC("tc")
int rewrite_dst(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u8 *p = data;
	if (data + 14 > end)
		return TC_ACT_SHOT;
	for (int i = 0; i < 6; i++)
		p[i] = 0xff;
	return p[12];
}

/* emits `mark` records (at most 64) into the ring buffer; returns how many were written */
SEC("tc")
int emit(struct __sk_buff *skb)
{
	__u32 n = skb->mark, written = 0;
	for (__u32 i = 0; i < 64; i++) {
		if (i >= n)
			break;
		struct test_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
		if (!r)
			break;
		r->seq = i;
		r->total = n;
		r->mark = skb->mark;
		r->len = skb->len;
		bpf_ringbuf_submit(r, 0);
		written++;
	}
	return written;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* a device map: the kernel has no batch operations for it, so lookupBatch iterates */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} devs SEC(".maps");
