// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A program the verifier rejects: it reads packet data without a bounds check. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int unchecked_read(struct __sk_buff *skb)
{
	return *(__u32 *)(long)skb->data;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
