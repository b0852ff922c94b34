// Reserved identities, mirrored from bpf/include/weir_abi.h (checked against the object's BTF-
// independent constants in test/policy/reserved.test.ts via the compiled header).
export const WEIR_ID_ANY = 0;
export const WEIR_ID_HOST = 1;
export const WEIR_ID_WORLD = 2;
export const WEIR_ID_FIRST_DYNAMIC = 256;
