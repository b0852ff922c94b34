// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Weir's tc programs. Each is a thin entry that names its hook; the logic is in lib/. */
#include "lib/datapath.h"
#include "lib/explain.h"

/* Host side of a pod veth, tc ingress: packets the pod sends (the pod's egress). */
SEC("tc")
int weir_from_pod(struct __sk_buff *skb)
{
	return weir_pod_hook(skb, WEIR_HOOK_FROM_POD);
}

/* Host side of a pod veth, tc egress: packets delivered to the pod (the pod's ingress). */
SEC("tc")
int weir_to_pod(struct __sk_buff *skb)
{
	return weir_pod_hook(skb, WEIR_HOOK_TO_POD);
}

/* Host device, tc ingress: traffic entering the node. */
SEC("tc")
int weir_from_host_dev(struct __sk_buff *skb)
{
	return weir_host_hook(skb, WEIR_HOOK_FROM_HOST_DEV);
}

/* Host device, tc egress: traffic leaving the node. */
SEC("tc")
int weir_to_host_dev(struct __sk_buff *skb)
{
	return weir_host_hook(skb, WEIR_HOOK_TO_HOST_DEV);
}

/* Conntrack collector: not attached anywhere; user space runs it with BPF_PROG_TEST_RUN (any
 * packet of 14+ bytes) every few seconds. Returns the number of entries it removed. */
SEC("tc")
int weir_ct_gc(struct __sk_buff *skb)
{
	struct weir_gc_ctx g = { .now = weir_now() };

	bpf_for_each_map_elem(&weir_ct_v3, weir_ct_gc_one, &g, 0);
	return g.deleted;
}

/* `weir policy explain`: the egress and ingress decisions the pod hooks would make for a packet,
 * reported in cb[] with no side effect (lib/explain.h). Not attached anywhere; user space runs it
 * with BPF_PROG_TEST_RUN on a crafted packet. */
SEC("tc")
int weir_policy_explain(struct __sk_buff *skb)
{
	return weir_explain(skb);
}

/* BTF anchors: never called, hence never loaded, but their signatures make clang emit BTF for the
 * ABI's records and enums (the types only used inside inlined code would otherwise be absent), so
 * test/datapath/abi-btf.test.ts can check the TypeScript codecs against this object. */
__attribute__((noinline, used)) int weir_btf_records(struct weir_flow_event *flow,
						     struct weir_lost_event *lost,
						     enum weir_event_type type, enum weir_reason reason,
						     enum weir_counter counter)
{
	return 0;
}

__attribute__((noinline, used)) int weir_btf_enums(enum weir_verdict verdict,
						   enum weir_direction direction, enum weir_hook hook,
						   struct weir_explain_result *explain)
{
	return 0;
}

__attribute__((noinline, used)) int weir_btf_host(struct weir_host_iface *hif, struct weir_gtier_key *tk,
						  struct weir_gtier_value *tv, struct weir_grule *rule,
						  enum weir_gaction action)
{
	return 0;
}

__attribute__((noinline, used)) int weir_btf_host_sets(struct weir_gset_key *sk, struct weir_gport_key *pk)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
