// SPDX-License-Identifier: Apache-2.0
/*
 * weir_bpf.node: the thin native half of src/datapath/libbpf.ts.
 *
 * Plain C on N-API (node_api.h) over libbpf. The shape follows a few rules:
 *  - Every JS-callable function validates its arguments and throws a TypeError naming the argument
 *    (and, for map keys/values, the expected size). Nothing else is checked in TypeScript.
 *  - Every kernel/libbpf failure throws an Error carrying `operation` and a positive `errno`
 *    (`code: 'ECLOSED'` for a closed handle, `log` for loads); src/datapath/libbpf.ts turns it into
 *    a BpfError in one place.
 *  - A closed handle throws errno EBADF with bpfCode 'ECLOSED'; an object being loaded (on a worker
 *    thread) throws EBUSY for everything but close(), which then takes effect when the load ends.
 *  - Handles (object, program, map, ring buffer) are napi externals whose struct starts with a
 *    magic number, so passing the wrong kind of handle is a TypeError rather than memory
 *    corruption. Program and map handles own their own fd (a dup for object-owned ones) and the
 *    finalizer closes it if JS never called close(); close() marks the handle closed (fd = -1), so
 *    a later call throws ECLOSED and the finalizer does nothing more.
 *  - Blocking one-shots (object load, test runs with repeat) run as napi async work (libuv's
 *    thread pool) and return Promises. Everything else is synchronous and cheap.
 *  - The ring buffer has no thread: a uv_poll_t watches ring_buffer__epoll_fd() and, on each
 *    wake-up, calls back into JS, which drains with rbConsume() (ring_buffer__consume on the main
 *    loop) and gets one array of records per wake-up.
 *
 * libbpf messages: one libbpf_set_print callback. Loads (and opens) set a thread-local capture
 * buffer, so concurrent loads on different worker threads each get exactly their own log (which
 * includes the verifier log libbpf prints on failure); nothing needs a lock. Outside a capture,
 * warnings go to stderr; WEIR_LIBBPF_DEBUG=1 also shows (and captures) debug lines.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <node_api.h>
#include <uv.h>

#define LOG_CAP (4u << 20) /* bytes of libbpf output kept per capture; the tail wins */

/* ---- libbpf log capture ------------------------------------------------------------------- */

struct logbuf {
	char *buf;
	size_t len, cap;
	bool truncated;
};

static __thread struct logbuf *tl_log; /* set around one load/open on the current thread */
static bool g_debug;

static void log_append(struct logbuf *lb, const char *s, size_t n)
{
	if (n > LOG_CAP / 2) { /* one huge message (a verifier log): keep its end, where the error is */
		s += n - LOG_CAP / 2;
		n = LOG_CAP / 2;
		lb->truncated = true;
	}
	if (lb->len + n + 1 > LOG_CAP) { /* drop the oldest text */
		size_t drop = lb->len + n + 1 - LOG_CAP;
		memmove(lb->buf, lb->buf + drop, lb->len - drop);
		lb->len -= drop;
		lb->truncated = true;
	}
	if (lb->len + n + 1 > lb->cap) {
		size_t nc = lb->cap ? lb->cap : 4096;
		while (nc < lb->len + n + 1)
			nc *= 2;
		char *nb = realloc(lb->buf, nc);
		if (!nb) {
			lb->truncated = true;
			return;
		}
		lb->buf = nb;
		lb->cap = nc;
	}
	memcpy(lb->buf + lb->len, s, n);
	lb->len += n;
	lb->buf[lb->len] = '\0';
}

static int print_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	struct logbuf *lb = tl_log;
	if (level == LIBBPF_DEBUG && !g_debug)
		return 0;
	if (!lb) {
		if (level == LIBBPF_WARN || g_debug)
			return vfprintf(stderr, fmt, ap);
		return 0;
	}
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n <= 0)
		return 0;
	char small[512];
	char *tmp = (size_t)n < sizeof(small) ? small : malloc((size_t)n + 1);
	if (!tmp)
		return 0;
	vsnprintf(tmp, (size_t)n + 1, fmt, ap);
	log_append(lb, tmp, (size_t)n);
	if (tmp != small)
		free(tmp);
	return n;
}

static void log_free(struct logbuf *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

/* ---- errors and argument helpers ------------------------------------------------------------ */

/* strerror, plus the kernel-internal errnos BPF syscalls leak (not in libc) */
static const char *errstr(int err)
{
	switch (err) {
	case 524:
		return "Operation not supported (ENOTSUPP)";
	case 512:
		return "Restart system call (ERESTARTSYS)";
	default:
		return strerror(err);
	}
}

/* Builds (does not throw) the Error that TS turns into a BpfError. */
static napi_value make_error(napi_env env, const char *op, int err, const char *code, const char *detail,
			     const struct logbuf *log)
{
	char msg[768];
	if (detail)
		snprintf(msg, sizeof(msg), "%s: %s", op, detail);
	else
		snprintf(msg, sizeof(msg), "%s: %s", op, errstr(err));
	napi_value m, e, v;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, e, "operation", v);
	napi_create_int32(env, err, &v);
	napi_set_named_property(env, e, "errno", v);
	if (code) {
		napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v);
		napi_set_named_property(env, e, "bpfCode", v);
	}
	if (log && log->len) {
		napi_create_string_utf8(env, log->buf, log->len, &v);
		napi_set_named_property(env, e, "log", v);
	}
	return e;
}

static void throw_errno(napi_env env, const char *op, int err)
{
	napi_throw(env, make_error(env, op, err, NULL, NULL, NULL));
}

static void throw_errno_detail(napi_env env, const char *op, int err, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	napi_throw(env, make_error(env, op, err, NULL, detail, NULL));
}

static void throw_closed(napi_env env, const char *op)
{
	napi_throw(env, make_error(env, op, EBADF, "ECLOSED", "handle is closed", NULL));
}

static void type_error(napi_env env, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	napi_throw_type_error(env, NULL, msg);
}

static void napi_fail(napi_env env, const char *what)
{
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (pending)
		return;
	const napi_extended_error_info *info = NULL;
	napi_get_last_error_info(env, &info);
	char msg[512];
	snprintf(msg, sizeof(msg), "weir_bpf: %s failed: %s", what,
		 info && info->error_message ? info->error_message : "napi error");
	napi_throw_error(env, NULL, msg);
}

#define NAPI_CALL(env, call)                                                                       \
	do {                                                                                       \
		if ((call) != napi_ok) {                                                           \
			napi_fail((env), #call);                                                   \
			return NULL;                                                               \
		}                                                                                  \
	} while (0)

/* One-line argument fetch: napi fills missing arguments with undefined. */
#define ARGS(n)                                                                                    \
	size_t argc = (n);                                                                         \
	napi_value argv[(n) > 0 ? (n) : 1];                                                        \
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

static bool is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;
	napi_typeof(env, v, &t);
	return t == napi_undefined || t == napi_null;
}

static bool arg_int(napi_env env, napi_value v, const char *name, int64_t min, int64_t max, int64_t *out)
{
	napi_valuetype t;
	double d;
	napi_typeof(env, v, &t);
	/* range first: converting NaN or an out-of-range double to an integer is undefined */
	if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= (double)min && d <= (double)max) ||
	    d != (double)(int64_t)d) {
		type_error(env, "%s must be an integer in [%lld, %lld]", name, (long long)min, (long long)max);
		return false;
	}
	*out = (int64_t)d;
	return true;
}

static bool arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out)
{
	int64_t x;
	if (!arg_int(env, v, name, 0, UINT32_MAX, &x))
		return false;
	*out = (uint32_t)x;
	return true;
}

/* A malloc'd copy of a string argument; *out = NULL for null/undefined when optional. */
static bool arg_string(napi_env env, napi_value v, const char *name, bool optional, char **out)
{
	napi_valuetype t;
	size_t len;
	*out = NULL;
	napi_typeof(env, v, &t);
	if (optional && (t == napi_undefined || t == napi_null))
		return true;
	if (t != napi_string) {
		type_error(env, "%s must be a string%s", name, optional ? " or undefined" : "");
		return false;
	}
	napi_get_value_string_utf8(env, v, NULL, 0, &len);
	char *s = malloc(len + 1);
	if (!s) {
		napi_throw_error(env, NULL, "out of memory");
		return false;
	}
	napi_get_value_string_utf8(env, v, s, len + 1, &len);
	if (strlen(s) != len) {
		free(s);
		type_error(env, "%s must not contain NUL characters", name);
		return false;
	}
	*out = s;
	return true;
}

static bool arg_buffer(napi_env env, napi_value v, const char *name, bool optional, void **data, size_t *len)
{
	bool is = false;
	*data = NULL;
	*len = 0;
	if (optional && is_nullish(env, v))
		return true;
	napi_is_buffer(env, v, &is);
	if (!is) {
		type_error(env, "%s must be a Buffer%s", name, optional ? " or undefined" : "");
		return false;
	}
	napi_get_buffer_info(env, v, data, len);
	return true;
}

/* ---- handles --------------------------------------------------------------------------------- */

enum { MAGIC_OBJ = 0x5745304a, MAGIC_PROG = 0x57455052, MAGIC_MAP = 0x5745504d, MAGIC_RB = 0x57455242 };

struct obj_h {
	uint32_t magic;
	struct bpf_object *obj; /* NULL once closed */
	bool busy;              /* a load is running on a worker thread */
	bool close_pending;     /* close() came during the load: the load's completion closes */
};

struct fd_h { /* a program or a map: owns fd */
	uint32_t magic;
	int fd; /* -1 once closed */
	uint32_t type, id;
	/* maps only */
	uint32_t key_size, value_size, value_total, max_entries, flags;
	bool percpu;
	char name[64];
};

static void *get_handle(napi_env env, napi_value v, uint32_t magic, const char *what)
{
	napi_valuetype t;
	void *p = NULL;
	napi_typeof(env, v, &t);
	if (t == napi_external)
		napi_get_value_external(env, v, &p);
	if (!p || *(uint32_t *)p != magic) {
		type_error(env, "expected a native %s handle", what);
		return NULL;
	}
	return p;
}

/* A program or a map handle (pin and close take either). */
static struct fd_h *get_fd_handle(napi_env env, napi_value v)
{
	napi_valuetype t;
	void *p = NULL;
	napi_typeof(env, v, &t);
	if (t == napi_external)
		napi_get_value_external(env, v, &p);
	if (!p || (*(uint32_t *)p != MAGIC_MAP && *(uint32_t *)p != MAGIC_PROG)) {
		type_error(env, "expected a native BpfProgram or BpfMap handle");
		return NULL;
	}
	return p;
}

static struct obj_h *get_obj(napi_env env, napi_value v, const char *op)
{
	struct obj_h *o = get_handle(env, v, MAGIC_OBJ, "BpfObject");
	if (o && (!o->obj || o->close_pending)) {
		throw_closed(env, op);
		return NULL;
	}
	if (o && o->busy) { /* the worker thread owns the object until the load completes */
		throw_errno_detail(env, op, EBUSY, "the object is being loaded (await load() first)");
		return NULL;
	}
	return o;
}

static struct fd_h *get_fdh(napi_env env, napi_value v, uint32_t magic, const char *op)
{
	struct fd_h *h = get_handle(env, v, magic, magic == MAGIC_MAP ? "BpfMap" : "BpfProgram");
	if (h && h->fd < 0) {
		throw_closed(env, op);
		return NULL;
	}
	return h;
}

static void obj_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct obj_h *o = data;
	/* A running load holds a reference to the external, so busy is false here. */
	if (o->obj)
		bpf_object__close(o->obj);
	free(o);
}

static void fdh_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct fd_h *h = data;
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

static bool is_percpu_type(uint32_t t)
{
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

static int g_ncpus;

static int possible_cpus(void)
{
	if (g_ncpus <= 0)
		g_ncpus = libbpf_num_possible_cpus();
	return g_ncpus;
}

/* Is fd a BPF map / program? Asking the info of the wrong kind would fill the wrong struct. */
static bool fd_is(int fd, const char *kind)
{
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, kind) == 0;
}

static void set_u32(napi_env env, napi_value obj, const char *k, uint32_t x)
{
	napi_value v;
	napi_create_uint32(env, x, &v);
	napi_set_named_property(env, obj, k, v);
}

static void set_str(napi_env env, napi_value obj, const char *k, const char *s)
{
	napi_value v;
	napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, obj, k, v);
}

/*
 * Wraps an fd we own into a handle and describes it: { handle, fd, id, type, name } and, for maps,
 * keySize, valueSize (per CPU), valueTotal (what lookup returns), maxEntries, flags, perCpu.
 * On failure the fd is closed and a JS exception is pending.
 */
static napi_value wrap_fd(napi_env env, int fd, bool is_map, const char *name_override, const char *op)
{
	struct fd_h *h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		throw_errno(env, op, ENOMEM);
		return NULL;
	}
	h->magic = is_map ? MAGIC_MAP : MAGIC_PROG;
	h->fd = fd;
	int err;
	if (is_map) {
		struct bpf_map_info mi;
		uint32_t len = sizeof(mi);
		memset(&mi, 0, sizeof(mi));
		err = bpf_obj_get_info_by_fd(fd, &mi, &len);
		if (err) {
			free(h);
			close(fd);
			throw_errno(env, op, -err);
			return NULL;
		}
		h->type = mi.type;
		h->id = mi.id;
		h->key_size = mi.key_size;
		h->value_size = mi.value_size;
		h->max_entries = mi.max_entries;
		h->flags = mi.map_flags;
		h->percpu = is_percpu_type(mi.type);
		h->value_total = h->percpu ? ((mi.value_size + 7) & ~7u) * (uint32_t)possible_cpus() : mi.value_size;
		snprintf(h->name, sizeof(h->name), "%s", name_override ? name_override : mi.name);
	} else {
		struct bpf_prog_info pi;
		uint32_t len = sizeof(pi);
		memset(&pi, 0, sizeof(pi));
		err = bpf_obj_get_info_by_fd(fd, &pi, &len);
		if (err) {
			free(h);
			close(fd);
			throw_errno(env, op, -err);
			return NULL;
		}
		h->type = pi.type;
		h->id = pi.id;
		snprintf(h->name, sizeof(h->name), "%s", name_override ? name_override : pi.name);
	}
	napi_value ext, res, v;
	if (napi_create_external(env, h, fdh_finalize, NULL, &ext) != napi_ok) {
		close(fd);
		free(h);
		napi_fail(env, "napi_create_external");
		return NULL;
	}
	NAPI_CALL(env, napi_create_object(env, &res));
	napi_set_named_property(env, res, "handle", ext);
	napi_create_int32(env, fd, &v);
	napi_set_named_property(env, res, "fd", v);
	set_u32(env, res, "id", h->id);
	set_u32(env, res, "type", h->type);
	set_str(env, res, "name", h->name);
	if (is_map) {
		set_u32(env, res, "keySize", h->key_size);
		set_u32(env, res, "valueSize", h->value_size);
		set_u32(env, res, "valueTotal", h->value_total);
		set_u32(env, res, "maxEntries", h->max_entries);
		set_u32(env, res, "flags", h->flags);
		napi_get_boolean(env, h->percpu, &v);
		napi_set_named_property(env, res, "perCpu", v);
	}
	return res;
}

/* ---- misc --------------------------------------------------------------------------------------- */

static napi_value js_num_possible_cpus(napi_env env, napi_callback_info info)
{
	(void)info;
	int n = possible_cpus();
	if (n <= 0) {
		throw_errno(env, "numPossibleCpus", n < 0 ? -n : EINVAL);
		return NULL;
	}
	napi_value v;
	NAPI_CALL(env, napi_create_int32(env, n, &v));
	return v;
}

/* statfsType(path) -> f_type */
static napi_value js_statfs_type(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char *path;
	if (!arg_string(env, argv[0], "path", false, &path))
		return NULL;
	struct statfs st;
	int r = statfs(path, &st);
	int err = errno;
	free(path);
	if (r < 0) {
		throw_errno(env, "statfs", err);
		return NULL;
	}
	napi_value v;
	NAPI_CALL(env, napi_create_double(env, (double)(unsigned long)st.f_type, &v));
	return v;
}

/* mountBpffs(path) */
static napi_value js_mount_bpffs(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char *path;
	if (!arg_string(env, argv[0], "path", false, &path))
		return NULL;
	int r = mount("bpf", path, "bpf", 0, "mode=0700");
	int err = errno;
	free(path);
	if (r < 0) {
		throw_errno(env, "mount bpffs", err);
		return NULL;
	}
	return NULL;
}

/* pinFd(handle, path): bpf_obj_pin for a program or map handle */
static napi_value js_pin(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct fd_h *h = get_fd_handle(env, argv[0]);
	if (!h)
		return NULL;
	if (h->fd < 0) {
		throw_closed(env, "pin");
		return NULL;
	}
	char *path;
	if (!arg_string(env, argv[1], "path", false, &path))
		return NULL;
	int r = bpf_obj_pin(h->fd, path);
	if (r < 0)
		throw_errno_detail(env, "pin", -r, "%s: %s", path, errstr(-r));
	free(path);
	return NULL;
}

/* unpin(path): unlink the pin file */
static napi_value js_unpin(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char *path;
	if (!arg_string(env, argv[0], "path", false, &path))
		return NULL;
	if (unlink(path) < 0) {
		int err = errno;
		throw_errno_detail(env, "unpin", err, "%s: %s", path, errstr(err));
	}
	free(path);
	return NULL;
}

/* fromPin(path, isMap) */
static napi_value js_from_pin(napi_env env, napi_callback_info info)
{
	ARGS(2);
	bool is_map = false;
	char *path;
	napi_get_value_bool(env, argv[1], &is_map);
	const char *op = is_map ? "BpfMap.fromPin" : "BpfProgram.fromPin";
	if (!arg_string(env, argv[0], "path", false, &path))
		return NULL;
	int fd = bpf_obj_get(path);
	if (fd < 0) {
		throw_errno_detail(env, op, -fd, "%s: %s", path, errstr(-fd));
		free(path);
		return NULL;
	}
	if (!fd_is(fd, is_map ? "anon_inode:bpf-map" : "anon_inode:bpf-prog")) {
		close(fd);
		throw_errno_detail(env, op, EINVAL, "%s is not a pinned BPF %s", path, is_map ? "map" : "program");
		free(path);
		return NULL;
	}
	free(path);
	return wrap_fd(env, fd, is_map, NULL, op);
}

/* closeHandle(handle): program or map */
static napi_value js_close_handle(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct fd_h *h = get_fd_handle(env, argv[0]);
	if (!h)
		return NULL;
	if (h->fd >= 0) {
		close(h->fd);
		h->fd = -1;
	}
	return NULL;
}

/* ---- objects ----------------------------------------------------------------------------------- */

/* objectOpen(path, pinRoot?) -> handle */
static napi_value js_object_open(napi_env env, napi_callback_info info)
{
	ARGS(2);
	char *path = NULL, *pin_root = NULL;
	napi_value ext = NULL;
	if (!arg_string(env, argv[0], "path", false, &path) ||
	    !arg_string(env, argv[1], "pinRoot", true, &pin_root))
		goto out;
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root);
	struct logbuf log = { 0 };
	tl_log = &log;
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	int err = obj ? 0 : errno;
	tl_log = NULL;
	if (!obj) {
		char detail[600];
		snprintf(detail, sizeof(detail), "%s: %s", path, errstr(err));
		napi_throw(env, make_error(env, "BpfObject.open", err, NULL, detail, &log));
		log_free(&log);
		goto out;
	}
	log_free(&log);
	struct obj_h *o = calloc(1, sizeof(*o));
	if (!o) {
		bpf_object__close(obj);
		throw_errno(env, "BpfObject.open", ENOMEM);
		goto out;
	}
	o->magic = MAGIC_OBJ;
	o->obj = obj;
	if (napi_create_external(env, o, obj_finalize, NULL, &ext) != napi_ok) {
		bpf_object__close(obj);
		free(o);
		napi_fail(env, "napi_create_external");
		ext = NULL;
	}
out:
	free(path);
	free(pin_root);
	return ext;
}

/* objectSetMaxEntries(handle, mapName, n) */
static napi_value js_object_set_max_entries(napi_env env, napi_callback_info info)
{
	ARGS(3);
	const char *op = "BpfObject.open (maxEntries)";
	struct obj_h *o = get_obj(env, argv[0], op);
	char *name;
	uint32_t n;
	if (!o || !arg_u32(env, argv[2], "maxEntries", &n) || !arg_string(env, argv[1], "map name", false, &name))
		return NULL;
	struct bpf_map *m = bpf_object__find_map_by_name(o->obj, name);
	if (!m)
		throw_errno_detail(env, op, ENOENT, "no map named '%s'", name);
	else {
		int r = bpf_map__set_max_entries(m, n);
		if (r < 0)
			throw_errno_detail(env, op, -r, "map '%s': %s", name, errstr(-r));
	}
	free(name);
	return NULL;
}

struct load_work {
	napi_async_work work;
	napi_deferred deferred;
	napi_ref obj_ref;
	struct obj_h *o;
	int err;
	struct logbuf log;
};

static void load_execute(napi_env env, void *data)
{
	(void)env;
	struct load_work *w = data;
	tl_log = &w->log;
	int r = bpf_object__load(w->o->obj);
	tl_log = NULL;
	w->err = r < 0 ? -r : 0;
}

static void load_complete(napi_env env, napi_status status, void *data)
{
	struct load_work *w = data;
	struct obj_h *o = w->o;
	o->busy = false;
	if (o->close_pending) {
		bpf_object__close(o->obj);
		o->obj = NULL;
		o->close_pending = false;
	}
	if (status == napi_cancelled)
		w->err = ECANCELED;
	if (w->err) {
		napi_reject_deferred(env, w->deferred, make_error(env, "BpfObject.load", w->err, NULL, NULL, &w->log));
	} else {
		napi_value v;
		napi_create_string_utf8(env, w->log.buf ? w->log.buf : "", w->log.len, &v);
		napi_resolve_deferred(env, w->deferred, v);
	}
	napi_delete_reference(env, w->obj_ref);
	napi_delete_async_work(env, w->work);
	log_free(&w->log);
	free(w);
}

/* objectLoad(handle) -> Promise<string (the log of a successful load)> */
static napi_value js_object_load(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj_h *o = get_obj(env, argv[0], "BpfObject.load");
	if (!o)
		return NULL;
	struct load_work *w = calloc(1, sizeof(*w));
	if (!w) {
		throw_errno(env, "BpfObject.load", ENOMEM);
		return NULL;
	}
	w->o = o;
	napi_value promise, name;
	NAPI_CALL(env, napi_create_promise(env, &w->deferred, &promise));
	NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &w->obj_ref));
	NAPI_CALL(env, napi_create_string_utf8(env, "weir:BpfObject.load", NAPI_AUTO_LENGTH, &name));
	NAPI_CALL(env, napi_create_async_work(env, NULL, name, load_execute, load_complete, w, &w->work));
	NAPI_CALL(env, napi_queue_async_work(env, w->work));
	o->busy = true;
	return promise;
}

/* objectNames(handle, maps: boolean) -> string[] */
static napi_value js_object_names(napi_env env, napi_callback_info info)
{
	ARGS(2);
	bool maps = false;
	struct obj_h *o = get_obj(env, argv[0], "BpfObject.names");
	if (!o)
		return NULL;
	napi_get_value_bool(env, argv[1], &maps);
	napi_value arr;
	uint32_t i = 0;
	NAPI_CALL(env, napi_create_array(env, &arr));
	if (maps) {
		struct bpf_map *m;
		bpf_object__for_each_map(m, o->obj)
		{
			napi_value s;
			napi_create_string_utf8(env, bpf_map__name(m), NAPI_AUTO_LENGTH, &s);
			napi_set_element(env, arr, i++, s);
		}
	} else {
		struct bpf_program *p;
		bpf_object__for_each_program(p, o->obj)
		{
			napi_value s;
			napi_create_string_utf8(env, bpf_program__name(p), NAPI_AUTO_LENGTH, &s);
			napi_set_element(env, arr, i++, s);
		}
	}
	return arr;
}

/* objectGet(handle, name, isMap) -> description with its own handle (a dup of the object's fd) */
static napi_value js_object_get(napi_env env, napi_callback_info info)
{
	ARGS(3);
	bool is_map = false;
	napi_get_value_bool(env, argv[2], &is_map);
	const char *op = is_map ? "BpfObject.map" : "BpfObject.program";
	struct obj_h *o = get_obj(env, argv[0], op);
	char *name;
	if (!o || !arg_string(env, argv[1], "name", false, &name))
		return NULL;
	int fd;
	const char *full_name;
	if (is_map) {
		struct bpf_map *m = bpf_object__find_map_by_name(o->obj, name);
		if (!m) {
			throw_errno_detail(env, op, ENOENT, "no map named '%s'", name);
			free(name);
			return NULL;
		}
		fd = bpf_map__fd(m);
		full_name = bpf_map__name(m);
	} else {
		struct bpf_program *p = bpf_object__find_program_by_name(o->obj, name);
		if (!p) {
			throw_errno_detail(env, op, ENOENT, "no program named '%s'", name);
			free(name);
			return NULL;
		}
		fd = bpf_program__fd(p);
		full_name = bpf_program__name(p);
	}
	if (fd < 0) {
		throw_errno_detail(env, op, EINVAL, "'%s': the object is not loaded", name);
		free(name);
		return NULL;
	}
	free(name);
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0) {
		throw_errno(env, op, errno);
		return NULL;
	}
	return wrap_fd(env, dfd, is_map, full_name, op);
}

/* objectClose(handle): idempotent */
static napi_value js_object_close(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct obj_h *o = get_handle(env, argv[0], MAGIC_OBJ, "BpfObject");
	if (!o)
		return NULL;
	if (o->busy)
		o->close_pending = true; /* the worker still uses the object: its completion closes it */
	else if (o->obj) {
		bpf_object__close(o->obj);
		o->obj = NULL;
	}
	return NULL;
}

/* ---- programs ---------------------------------------------------------------------------------- */

/*
 * progTestRun(prog, dataIn, dataOut?, ctxIn?, ctxOut?, repeat, result: Uint32Array(3)) -> retval
 * result receives [durationNs, dataSizeOut, ctxSizeOut]; TS slices its own output buffers, so one
 * call allocates nothing here (the fuzz tests call this 10k+ times).
 */
static napi_value js_prog_test_run(napi_env env, napi_callback_info info)
{
	ARGS(7);
	struct fd_h *p = get_fdh(env, argv[0], MAGIC_PROG, "BpfProgram.testRun");
	void *din, *dout, *cin, *cout;
	size_t ldin, ldout, lcin, lcout;
	int64_t repeat;
	if (!p || !arg_buffer(env, argv[1], "data", false, &din, &ldin) ||
	    !arg_buffer(env, argv[2], "data out buffer", true, &dout, &ldout) ||
	    !arg_buffer(env, argv[3], "ctx", true, &cin, &lcin) ||
	    !arg_buffer(env, argv[4], "ctx out buffer", true, &cout, &lcout) ||
	    !arg_int(env, argv[5], "repeat", 0, INT32_MAX, &repeat))
		return NULL;
	napi_typedarray_type tt;
	size_t rlen;
	void *rdata;
	napi_value ab;
	size_t off;
	bool is_ta = false;
	napi_is_typedarray(env, argv[6], &is_ta);
	if (!is_ta || napi_get_typedarray_info(env, argv[6], &tt, &rlen, &rdata, &ab, &off) != napi_ok ||
	    tt != napi_uint32_array || rlen < 3) {
		type_error(env, "result must be a Uint32Array of at least 3 elements");
		return NULL;
	}
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = din, .data_size_in = (uint32_t)ldin, .data_out = dout,
		    .data_size_out = (uint32_t)ldout, .ctx_in = cin, .ctx_size_in = (uint32_t)lcin, .ctx_out = cout,
		    .ctx_size_out = (uint32_t)lcout, .repeat = (int)repeat);
	int r = bpf_prog_test_run_opts(p->fd, &o);
	if (r < 0) {
		if (-r == ENOSPC)
			throw_errno_detail(env, "BpfProgram.testRun", ENOSPC,
					   "output larger than the out buffer (data %u > %zu or ctx %u > %zu)",
					   o.data_size_out, ldout, o.ctx_size_out, lcout);
		else
			throw_errno(env, "BpfProgram.testRun", -r);
		return NULL;
	}
	uint32_t *res = rdata;
	res[0] = o.duration;
	res[1] = dout ? o.data_size_out : 0;
	res[2] = cout ? o.ctx_size_out : 0;
	napi_value v;
	NAPI_CALL(env, napi_create_uint32(env, o.retval, &v));
	return v;
}

struct run_work {
	napi_async_work work;
	napi_deferred deferred;
	int fd; /* a dup: the program may be closed from JS meanwhile */
	void *din, *dout, *cin, *cout;
	uint32_t ldin, ldout, lcin, lcout;
	int repeat;
	int err;
	uint32_t retval, duration;
};

static void run_execute(napi_env env, void *data)
{
	(void)env;
	struct run_work *w = data;
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = w->din, .data_size_in = w->ldin, .data_out = w->dout,
		    .data_size_out = w->ldout, .ctx_in = w->cin, .ctx_size_in = w->lcin, .ctx_out = w->cout,
		    .ctx_size_out = w->lcout, .repeat = w->repeat);
	int r = bpf_prog_test_run_opts(w->fd, &o);
	w->err = r < 0 ? -r : 0;
	w->retval = o.retval;
	w->duration = o.duration;
	w->ldout = w->dout ? o.data_size_out : 0;
	w->lcout = w->cout ? o.ctx_size_out : 0;
}

static void run_free(struct run_work *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->din);
	free(w->dout);
	free(w->cin);
	free(w->cout);
	free(w);
}

static void run_complete(napi_env env, napi_status status, void *data)
{
	struct run_work *w = data;
	if (status == napi_cancelled)
		w->err = ECANCELED;
	if (w->err) {
		napi_reject_deferred(env, w->deferred, make_error(env, "BpfProgram.testRunAsync", w->err, NULL, NULL, NULL));
	} else {
		napi_value res, v;
		napi_create_object(env, &res);
		napi_create_uint32(env, w->retval, &v);
		napi_set_named_property(env, res, "retval", v);
		napi_create_uint32(env, w->duration, &v);
		napi_set_named_property(env, res, "durationNs", v);
		napi_create_buffer_copy(env, w->ldout, w->dout ? w->dout : "", NULL, &v);
		napi_set_named_property(env, res, "data", v);
		if (w->cout) {
			napi_create_buffer_copy(env, w->lcout, w->cout, NULL, &v);
			napi_set_named_property(env, res, "ctx", v);
		}
		napi_resolve_deferred(env, w->deferred, res);
	}
	napi_delete_async_work(env, w->work);
	run_free(w);
}

static void *dup_mem(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	if (q && n)
		memcpy(q, p, n);
	return q;
}

/* progTestRunAsync(prog, dataIn, dataOutSize, ctxIn?, ctxOutSize, repeat) -> Promise */
static napi_value js_prog_test_run_async(napi_env env, napi_callback_info info)
{
	ARGS(6);
	const char *op = "BpfProgram.testRunAsync";
	struct fd_h *p = get_fdh(env, argv[0], MAGIC_PROG, op);
	void *din, *cin;
	size_t ldin, lcin;
	uint32_t ldout, lcout;
	int64_t repeat;
	if (!p || !arg_buffer(env, argv[1], "data", false, &din, &ldin) ||
	    !arg_u32(env, argv[2], "dataOutSize", &ldout) || !arg_buffer(env, argv[3], "ctx", true, &cin, &lcin) ||
	    !arg_u32(env, argv[4], "ctxOutSize", &lcout) || !arg_int(env, argv[5], "repeat", 0, INT32_MAX, &repeat))
		return NULL;
	struct run_work *w = calloc(1, sizeof(*w));
	if (!w) {
		throw_errno(env, op, ENOMEM);
		return NULL;
	}
	w->fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 3);
	w->din = dup_mem(din, ldin);
	w->ldin = (uint32_t)ldin;
	if (ldout) {
		w->dout = malloc(ldout);
		w->ldout = ldout;
	}
	if (cin) {
		w->cin = dup_mem(cin, lcin);
		w->lcin = (uint32_t)lcin;
	}
	if (lcout) {
		w->cout = malloc(lcout);
		w->lcout = lcout;
	}
	w->repeat = (int)repeat;
	if (w->fd < 0 || !w->din || (ldout && !w->dout) || (cin && !w->cin) || (lcout && !w->cout)) {
		int err = w->fd < 0 ? errno : ENOMEM;
		run_free(w);
		throw_errno(env, op, err);
		return NULL;
	}
	napi_value promise, name;
	NAPI_CALL(env, napi_create_promise(env, &w->deferred, &promise));
	NAPI_CALL(env, napi_create_string_utf8(env, "weir:BpfProgram.testRun", NAPI_AUTO_LENGTH, &name));
	NAPI_CALL(env, napi_create_async_work(env, NULL, name, run_execute, run_complete, w, &w->work));
	NAPI_CALL(env, napi_queue_async_work(env, w->work));
	return promise;
}

/* ---- maps ----------------------------------------------------------------------------------------- */

static bool arg_sized(napi_env env, napi_value v, const struct fd_h *m, const char *what, uint32_t size, void **data)
{
	size_t len;
	bool is = false;
	napi_is_buffer(env, v, &is);
	if (!is) {
		type_error(env, "map '%s': %s must be a Buffer of %u bytes", m->name, what, size);
		return false;
	}
	napi_get_buffer_info(env, v, data, &len);
	if (len != size) {
		type_error(env, "map '%s': %s must be a Buffer of %u bytes, got %zu%s", m->name, what, size, len,
			   m->percpu && !strcmp(what, "value") ? " (per-CPU: one 8-byte-aligned value per possible CPU)" : "");
		return false;
	}
	return true;
}

/* mapLookup(map, key) -> Buffer | undefined */
static napi_value js_map_lookup(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, "BpfMap.lookup");
	void *key, *val;
	if (!m || !arg_sized(env, argv[1], m, "key", m->key_size, &key))
		return NULL;
	napi_value out;
	NAPI_CALL(env, napi_create_buffer(env, m->value_total, &val, &out));
	int r = bpf_map_lookup_elem(m->fd, key, val);
	if (r < 0) {
		if (-r == ENOENT)
			return NULL; /* undefined */
		throw_errno(env, "BpfMap.lookup", -r);
		return NULL;
	}
	return out;
}

/* mapUpdate(map, key, value, flags) */
static napi_value js_map_update(napi_env env, napi_callback_info info)
{
	ARGS(4);
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, "BpfMap.update");
	void *key, *val;
	int64_t flags;
	if (!m || !arg_sized(env, argv[1], m, "key", m->key_size, &key) ||
	    !arg_sized(env, argv[2], m, "value", m->value_total, &val) ||
	    !arg_int(env, argv[3], "flags", 0, UINT32_MAX, &flags))
		return NULL;
	int r = bpf_map_update_elem(m->fd, key, val, (uint64_t)flags);
	if (r < 0)
		throw_errno(env, "BpfMap.update", -r);
	return NULL;
}

/* mapDelete(map, key) -> boolean (false on ENOENT) */
static napi_value js_map_delete(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, "BpfMap.delete");
	void *key;
	if (!m || !arg_sized(env, argv[1], m, "key", m->key_size, &key))
		return NULL;
	int r = bpf_map_delete_elem(m->fd, key);
	if (r < 0 && -r != ENOENT) {
		throw_errno(env, "BpfMap.delete", -r);
		return NULL;
	}
	napi_value v;
	NAPI_CALL(env, napi_get_boolean(env, r == 0, &v));
	return v;
}

/* mapNextKey(map, key?) -> Buffer | undefined */
static napi_value js_map_next_key(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, "BpfMap.nextKey");
	void *key = NULL, *next;
	if (!m)
		return NULL;
	if (!is_nullish(env, argv[1]) && !arg_sized(env, argv[1], m, "key", m->key_size, &key))
		return NULL;
	napi_value out;
	NAPI_CALL(env, napi_create_buffer(env, m->key_size, &next, &out));
	int r = bpf_map_get_next_key(m->fd, key, next);
	if (r < 0) {
		if (-r == ENOENT)
			return NULL;
		throw_errno(env, "BpfMap.nextKey", -r);
		return NULL;
	}
	return out;
}

/* mapLookupBatch(map) -> Array<[Buffer, Buffer]>; throws (EINVAL/ENOTSUPP) where unsupported */
static napi_value js_map_lookup_batch(napi_env env, napi_callback_info info)
{
	ARGS(1);
	const char *op = "BpfMap.lookupBatch";
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, op);
	if (!m)
		return NULL;
	uint32_t chunk = m->max_entries < 256 ? (m->max_entries ? m->max_entries : 1) : 256;
	size_t bsz = m->key_size > 8 ? m->key_size : 8; /* hash maps use a u32 bucket cursor */
	char *in = calloc(1, bsz), *out = calloc(1, bsz);
	char *keys = NULL, *vals = NULL;
	napi_value arr = NULL;
	uint32_t n = 0;
	bool first = true;
	if (!in || !out)
		goto nomem;
	NAPI_CALL(env, napi_create_array(env, &arr));
	for (;;) {
		char *nk = realloc(keys, (size_t)chunk * m->key_size + 1);
		if (!nk)
			goto nomem;
		keys = nk;
		char *nv = realloc(vals, (size_t)chunk * m->value_total + 1);
		if (!nv)
			goto nomem;
		vals = nv;
		uint32_t count = chunk;
		int r = bpf_map_lookup_batch(m->fd, first ? NULL : in, out, keys, vals, &count, NULL);
		int err = r < 0 ? -r : 0;
		if (err && err != ENOENT) {
			if (err == ENOSPC && chunk < (1u << 20)) { /* a bucket larger than chunk: grow, retry */
				chunk *= 4;
				continue;
			}
			throw_errno(env, op, err);
			arr = NULL;
			goto out;
		}
		for (uint32_t i = 0; i < count; i++) {
			napi_value pair, k, v;
			napi_create_buffer_copy(env, m->key_size, keys + (size_t)i * m->key_size, NULL, &k);
			napi_create_buffer_copy(env, m->value_total, vals + (size_t)i * m->value_total, NULL, &v);
			napi_create_array_with_length(env, 2, &pair);
			napi_set_element(env, pair, 0, k);
			napi_set_element(env, pair, 1, v);
			napi_set_element(env, arr, n++, pair);
		}
		if (err == ENOENT)
			break;
		memcpy(in, out, bsz);
		first = false;
	}
	goto out;
nomem:
	throw_errno(env, op, ENOMEM);
	arr = NULL;
out:
	free(in);
	free(out);
	free(keys);
	free(vals);
	return arr;
}

/* Copies an Array<Buffer> of `size`-byte elements into one contiguous malloc'd block. */
static char *pack_array(napi_env env, napi_value arr, const struct fd_h *m, const char *what, uint32_t size,
			uint32_t *count)
{
	bool is = false;
	uint32_t n;
	napi_is_array(env, arr, &is);
	if (!is) {
		type_error(env, "map '%s': %ss must be an array of Buffers", m->name, what);
		return NULL;
	}
	napi_get_array_length(env, arr, &n);
	char *block = malloc((size_t)n * size + 1);
	if (!block) {
		throw_errno(env, "BpfMap batch", ENOMEM);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		void *d;
		char label[32];
		snprintf(label, sizeof(label), "%s[%u]", what, i);
		napi_get_element(env, arr, i, &e);
		if (!arg_sized(env, e, m, label, size, &d)) {
			free(block);
			return NULL;
		}
		memcpy(block + (size_t)i * size, d, size);
	}
	*count = n;
	return block;
}

/* mapUpdateBatch(map, keys[], values[], flags) */
static napi_value js_map_update_batch(napi_env env, napi_callback_info info)
{
	ARGS(4);
	const char *op = "BpfMap.updateBatch";
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, op);
	int64_t flags;
	uint32_t nk = 0, nv = 0;
	if (!m || !arg_int(env, argv[3], "flags", 0, UINT32_MAX, &flags))
		return NULL;
	char *keys = pack_array(env, argv[1], m, "key", m->key_size, &nk);
	if (!keys)
		return NULL;
	char *vals = pack_array(env, argv[2], m, "value", m->value_total, &nv);
	if (!vals) {
		free(keys);
		return NULL;
	}
	if (nk != nv) {
		type_error(env, "keys and values must have the same length (%u != %u)", nk, nv);
	} else if (nk) {
		LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = (uint64_t)flags);
		uint32_t count = nk;
		int r = bpf_map_update_batch(m->fd, keys, vals, &count, &o);
		if (r < 0)
			throw_errno_detail(env, op, -r, "%s (after %u of %u entries)", errstr(-r), count, nk);
	}
	free(keys);
	free(vals);
	return NULL;
}

/* mapDeleteBatch(map, keys[]) */
static napi_value js_map_delete_batch(napi_env env, napi_callback_info info)
{
	ARGS(2);
	const char *op = "BpfMap.deleteBatch";
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, op);
	uint32_t nk = 0;
	if (!m)
		return NULL;
	char *keys = pack_array(env, argv[1], m, "key", m->key_size, &nk);
	if (!keys)
		return NULL;
	if (nk) {
		uint32_t count = nk;
		int r = bpf_map_delete_batch(m->fd, keys, &count, NULL);
		if (r < 0)
			throw_errno_detail(env, op, -r, "%s (after %u of %u keys)", errstr(-r), count, nk);
	}
	free(keys);
	return NULL;
}

/* ---- tc (clsact) and network namespaces ----------------------------------------------------------- */

/* Moves the calling thread into the netns at path; *saved gets the fd to come back with. */
static int netns_enter(const char *path, int *saved)
{
	*saved = -1;
	if (!path)
		return 0;
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return errno;
	int target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		int err = errno;
		close(self);
		return err;
	}
	if (setns(target, CLONE_NEWNET) < 0) {
		int err = errno;
		close(target);
		close(self);
		return err;
	}
	close(target);
	*saved = self;
	return 0;
}

static void netns_leave(int saved)
{
	if (saved < 0)
		return;
	if (setns(saved, CLONE_NEWNET) < 0) {
		/* The JS thread would keep running in the wrong namespace: nothing sane to continue with. */
		fprintf(stderr, "weir_bpf: cannot return to the original network namespace: %s\n", errstr(errno));
		abort();
	}
	close(saved);
}

struct tc_args {
	char *ifname, *netns;
	uint32_t ifindex, direction, prog_fd, priority, handle;
};

static void tc_args_free(struct tc_args *a)
{
	free(a->ifname);
	free(a->netns);
}

/* (ifindex, ifname?, netns?) at argv[0..2] */
static bool tc_target_args(napi_env env, napi_value *argv, struct tc_args *a)
{
	memset(a, 0, sizeof(*a));
	if (!arg_u32(env, argv[0], "ifindex", &a->ifindex) || !arg_string(env, argv[1], "ifname", true, &a->ifname) ||
	    !arg_string(env, argv[2], "netns", true, &a->netns)) {
		tc_args_free(a);
		return false;
	}
	if (!a->ifindex && !a->ifname) {
		type_error(env, "a tc target needs ifname or ifindex");
		tc_args_free(a);
		return false;
	}
	return true;
}

/* Resolves the ifindex in the current (already entered) namespace. */
static int tc_resolve(struct tc_args *a)
{
	if (a->ifindex)
		return 0;
	a->ifindex = if_nametoindex(a->ifname);
	return a->ifindex ? 0 : ENODEV;
}

/* log: libbpf's output during the operation (the kernel's extack message), may be NULL */
static void throw_tc(napi_env env, const char *op, int err, const struct tc_args *a, const struct logbuf *log)
{
	char detail[400];
	int n;
	if (a->ifname)
		n = snprintf(detail, sizeof(detail), "%s", a->ifname);
	else
		n = snprintf(detail, sizeof(detail), "ifindex %u", a->ifindex);
	snprintf(detail + n, sizeof(detail) - (size_t)n, "%s%s: %s", a->netns ? " in " : "", a->netns ? a->netns : "",
		 err == ENODEV && a->ifname ? "no such device" : errstr(err));
	napi_throw(env, make_error(env, op, err, NULL, detail, log));
}

enum tc_op { TC_ATTACH, TC_DETACH, TC_QUERY, TC_DESTROY };

static napi_value tc_common(napi_env env, napi_callback_info info, enum tc_op op)
{
	static const char *names[] = { "tcAttach", "tcDetach", "tcQuery", "tcDestroyHook" };
	ARGS(7);
	struct tc_args a;
	if (!tc_target_args(env, argv, &a))
		return NULL;
	if (op != TC_DESTROY) {
		if (!arg_u32(env, argv[3], "direction", &a.direction) || a.direction > 1 ||
		    !arg_u32(env, argv[4], "program fd", &a.prog_fd) || !arg_u32(env, argv[5], "priority", &a.priority) ||
		    !arg_u32(env, argv[6], "handle", &a.handle)) {
			if (a.direction > 1)
				type_error(env, "direction must be 0 (ingress) or 1 (egress)");
			tc_args_free(&a);
			return NULL;
		}
		if (a.priority > 0xffff) {
			type_error(env, "priority must be in [1, 65535]");
			tc_args_free(&a);
			return NULL;
		}
	}
	int saved, err = netns_enter(a.netns, &saved);
	if (err) {
		throw_errno_detail(env, names[op], err, "entering netns %s: %s", a.netns, errstr(err));
		tc_args_free(&a);
		return NULL;
	}
	uint32_t prog_id = 0;
	bool found = true;
	/* libbpf prints the kernel's extack text for every failed request, expected ones (EEXIST,
	 * ENOENT) included: keep it for the error, if any, instead of stderr */
	struct logbuf log = { 0 };
	tl_log = &log;
	err = tc_resolve(&a);
	if (!err) {
		LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)a.ifindex,
			    .attach_point = op == TC_DESTROY ? BPF_TC_INGRESS | BPF_TC_EGRESS
			                    : a.direction == 0 ? BPF_TC_INGRESS : BPF_TC_EGRESS);
		int r;
		switch (op) {
		case TC_ATTACH: {
			/* the clsact qdisc: creating it for one direction creates it for both */
			r = bpf_tc_hook_create(&hook);
			if (r < 0 && r != -EEXIST) {
				err = -r;
				break;
			}
			LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = (int)a.prog_fd, .flags = BPF_TC_F_REPLACE,
				    .priority = a.priority, .handle = a.handle);
			r = bpf_tc_attach(&hook, &o);
			err = r < 0 ? -r : 0;
			break;
		}
		case TC_DETACH: {
			LIBBPF_OPTS(bpf_tc_opts, o, .priority = a.priority, .handle = a.handle);
			r = bpf_tc_detach(&hook, &o);
			/* ENOENT: no such filter; EINVAL: no clsact qdisc at all */
			if (r == -ENOENT || r == -EINVAL)
				found = false;
			else
				err = r < 0 ? -r : 0;
			break;
		}
		case TC_QUERY: {
			LIBBPF_OPTS(bpf_tc_opts, o, .priority = a.priority, .handle = a.handle);
			r = bpf_tc_query(&hook, &o);
			if (r == -ENOENT || r == -EINVAL)
				found = false;
			else
				err = r < 0 ? -r : 0;
			prog_id = o.prog_id;
			break;
		}
		case TC_DESTROY:
			r = bpf_tc_hook_destroy(&hook);
			/* absent qdisc: fine */
			if (r < 0 && r != -ENOENT && r != -EINVAL)
				err = -r;
			break;
		}
	}
	tl_log = NULL;
	netns_leave(saved);
	if (err) {
		throw_tc(env, names[op], err, &a, &log);
		log_free(&log);
		tc_args_free(&a);
		return NULL;
	}
	log_free(&log);
	tc_args_free(&a);
	napi_value v = NULL;
	if (op == TC_DETACH)
		napi_get_boolean(env, found, &v);
	else if (op == TC_QUERY && found)
		napi_create_uint32(env, prog_id, &v);
	return v;
}

/* tcAttach(ifindex, ifname?, netns?, direction, progFd, priority, handle) */
static napi_value js_tc_attach(napi_env env, napi_callback_info info) { return tc_common(env, info, TC_ATTACH); }
/* tcDetach(ifindex, ifname?, netns?, direction, 0, priority, handle) -> boolean */
static napi_value js_tc_detach(napi_env env, napi_callback_info info) { return tc_common(env, info, TC_DETACH); }
/* tcQuery(ifindex, ifname?, netns?, direction, 0, priority, handle) -> progId | undefined */
static napi_value js_tc_query(napi_env env, napi_callback_info info) { return tc_common(env, info, TC_QUERY); }
/* tcDestroyHook(ifindex, ifname?, netns?) */
static napi_value js_tc_destroy(napi_env env, napi_callback_info info) { return tc_common(env, info, TC_DESTROY); }

/* ifindexOf(ifname, netns?) */
static napi_value js_ifindex_of(napi_env env, napi_callback_info info)
{
	ARGS(2);
	struct tc_args a;
	memset(&a, 0, sizeof(a));
	if (!arg_string(env, argv[0], "ifname", false, &a.ifname) || !arg_string(env, argv[1], "netns", true, &a.netns)) {
		tc_args_free(&a);
		return NULL;
	}
	int saved, err = netns_enter(a.netns, &saved);
	if (err) {
		throw_errno_detail(env, "ifindexOf", err, "entering netns %s: %s", a.netns, errstr(err));
		tc_args_free(&a);
		return NULL;
	}
	err = tc_resolve(&a);
	netns_leave(saved);
	if (err) {
		throw_tc(env, "ifindexOf", err, &a, NULL);
		tc_args_free(&a);
		return NULL;
	}
	tc_args_free(&a);
	napi_value v;
	NAPI_CALL(env, napi_create_uint32(env, a.ifindex, &v));
	return v;
}

/* ---- ring buffer reader ----------------------------------------------------------------------------- */

struct rb_h {
	uint32_t magic;
	napi_env env;
	uv_poll_t poll;
	struct ring_buffer *rb;
	int map_fd;            /* our dup of the map fd, closed with rb */
	napi_ref wakeup_ref;   /* JS function called on each readable wake-up */
	napi_ref self_ref;     /* keeps the external alive while open */
	napi_async_context actx;
	bool closed;           /* close() ran: every JS call throws ECLOSED */
	bool poll_open;        /* uv handle not yet through its close callback */
	bool finalized;        /* the external is gone: free when poll_open is false */
	/* the batch being collected by rb_sample during one rbConsume */
	napi_value batch;
	uint32_t n;
	bool failed;
};

static int rb_sample(void *ctx, void *data, size_t size)
{
	struct rb_h *r = ctx;
	napi_value b;
	if (napi_create_buffer_copy(r->env, size, data, NULL, &b) != napi_ok ||
	    napi_set_element(r->env, r->batch, r->n, b) != napi_ok) {
		r->failed = true;
		return -ENOMEM;
	}
	r->n++;
	return 0;
}

static void rb_on_close(uv_handle_t *h)
{
	struct rb_h *r = h->data;
	ring_buffer__free(r->rb);
	r->rb = NULL;
	if (r->map_fd >= 0)
		close(r->map_fd);
	r->map_fd = -1;
	r->poll_open = false;
	if (r->finalized)
		free(r);
}

/* stop, unref, close (the close callback frees the ring buffer), drop the JS references */
static void rb_shutdown(napi_env env, struct rb_h *r)
{
	if (r->closed)
		return;
	r->closed = true;
	if (r->poll_open) {
		uv_poll_stop(&r->poll);
		uv_unref((uv_handle_t *)&r->poll);
		uv_close((uv_handle_t *)&r->poll, rb_on_close);
	}
	if (r->wakeup_ref)
		napi_delete_reference(env, r->wakeup_ref);
	if (r->self_ref)
		napi_delete_reference(env, r->self_ref);
	if (r->actx)
		napi_async_destroy(env, r->actx);
	r->wakeup_ref = r->self_ref = NULL;
	r->actx = NULL;
}

static void rb_finalize(napi_env env, void *data, void *hint)
{
	(void)hint;
	struct rb_h *r = data;
	rb_shutdown(env, r); /* only at env teardown: while open, self_ref keeps the external alive */
	r->finalized = true;
	if (!r->poll_open) {
		if (r->rb)
			ring_buffer__free(r->rb);
		if (r->map_fd >= 0)
			close(r->map_fd);
		free(r);
	}
}

static void rb_on_poll(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct rb_h *r = h->data;
	if (r->closed)
		return;
	napi_env env = r->env;
	napi_handle_scope scope;
	if (napi_open_handle_scope(env, &scope) != napi_ok)
		return;
	napi_value fn, recv, arg, result;
	napi_get_reference_value(env, r->wakeup_ref, &fn);
	napi_get_global(env, &recv);
	if (status < 0)
		napi_create_int32(env, status, &arg); /* JS reports it as an error */
	else
		napi_get_undefined(env, &arg);
	/* make_callback: enters the context, runs nextTicks/microtasks after, like any libuv callback */
	napi_status s = napi_make_callback(env, r->actx, recv, fn, 1, &arg, &result);
	if (s != napi_ok) {
		bool pending = false;
		napi_is_exception_pending(env, &pending);
		if (pending) {
			napi_value exc;
			napi_get_and_clear_last_exception(env, &exc);
			napi_fatal_exception(env, exc); /* onBatch threw: an uncaught exception, as for a socket */
		}
	}
	napi_close_handle_scope(env, scope);
}

/* rbNew(map, wakeup: (uvStatus?: number) => void) -> handle */
static napi_value js_rb_new(napi_env env, napi_callback_info info)
{
	ARGS(2);
	const char *op = "RingBufferReader";
	struct fd_h *m = get_fdh(env, argv[0], MAGIC_MAP, op);
	if (!m)
		return NULL;
	if (m->type != BPF_MAP_TYPE_RINGBUF) {
		throw_errno_detail(env, op, EINVAL, "map '%s' is not a BPF_MAP_TYPE_RINGBUF (type %u)", m->name, m->type);
		return NULL;
	}
	napi_valuetype t;
	napi_typeof(env, argv[1], &t);
	if (t != napi_function) {
		type_error(env, "wakeup must be a function");
		return NULL;
	}
	struct rb_h *r = calloc(1, sizeof(*r));
	if (!r) {
		throw_errno(env, op, ENOMEM);
		return NULL;
	}
	r->magic = MAGIC_RB;
	r->env = env;
	r->map_fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 3);
	if (r->map_fd < 0) {
		throw_errno(env, op, errno);
		free(r);
		return NULL;
	}
	r->rb = ring_buffer__new(r->map_fd, rb_sample, r, NULL);
	if (!r->rb) {
		int err = errno;
		close(r->map_fd);
		free(r);
		throw_errno(env, "ring_buffer__new", err);
		return NULL;
	}
	uv_loop_t *loop;
	int err = 0;
	if (napi_get_uv_event_loop(env, &loop) != napi_ok)
		err = EINVAL;
	else if ((err = -uv_poll_init(loop, &r->poll, ring_buffer__epoll_fd(r->rb))) == 0) {
		r->poll.data = r;
		r->poll_open = true;
		err = -uv_poll_start(&r->poll, UV_READABLE, rb_on_poll);
	}
	napi_value ext, name;
	if (err || napi_create_external(env, r, rb_finalize, NULL, &ext) != napi_ok) {
		r->finalized = true;
		if (r->poll_open) {
			uv_close((uv_handle_t *)&r->poll, rb_on_close); /* frees */
		} else {
			ring_buffer__free(r->rb);
			close(r->map_fd);
			free(r);
		}
		if (err)
			throw_errno(env, "uv_poll_start", err);
		else
			napi_fail(env, "napi_create_external");
		return NULL;
	}
	NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &r->wakeup_ref));
	NAPI_CALL(env, napi_create_reference(env, ext, 1, &r->self_ref));
	NAPI_CALL(env, napi_create_string_utf8(env, "weir:RingBufferReader", NAPI_AUTO_LENGTH, &name));
	NAPI_CALL(env, napi_async_init(env, NULL, name, &r->actx));
	return ext;
}

static struct rb_h *get_rb(napi_env env, napi_value v, const char *op)
{
	struct rb_h *r = get_handle(env, v, MAGIC_RB, "RingBufferReader");
	if (r && r->closed) {
		throw_closed(env, op);
		return NULL;
	}
	return r;
}

/* rbConsume(rb) -> Buffer[] (every record available now, copied) */
static napi_value js_rb_consume(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct rb_h *r = get_rb(env, argv[0], "RingBufferReader.consume");
	if (!r)
		return NULL;
	napi_value batch;
	NAPI_CALL(env, napi_create_array(env, &batch));
	r->batch = batch;
	r->n = 0;
	r->failed = false;
	int ret = ring_buffer__consume(r->rb);
	r->batch = NULL;
	if (ret < 0) {
		bool pending = false;
		napi_is_exception_pending(env, &pending);
		if (!pending)
			throw_errno(env, "ring_buffer__consume", -ret);
		return NULL;
	}
	return batch;
}

/* rbRef(rb, ref: boolean) */
static napi_value js_rb_ref(napi_env env, napi_callback_info info)
{
	ARGS(2);
	bool ref = true;
	struct rb_h *r = get_rb(env, argv[0], "RingBufferReader.ref");
	if (!r)
		return NULL;
	napi_get_value_bool(env, argv[1], &ref);
	if (ref)
		uv_ref((uv_handle_t *)&r->poll);
	else
		uv_unref((uv_handle_t *)&r->poll);
	return NULL;
}

/* rbClose(rb): idempotent */
static napi_value js_rb_close(napi_env env, napi_callback_info info)
{
	ARGS(1);
	struct rb_h *r = get_handle(env, argv[0], MAGIC_RB, "RingBufferReader");
	if (r)
		rb_shutdown(env, r);
	return NULL;
}

/* ---- module ------------------------------------------------------------------------------------------ */

NAPI_MODULE_INIT()
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
		{ "numPossibleCpus", js_num_possible_cpus },
		{ "statfsType", js_statfs_type },
		{ "mountBpffs", js_mount_bpffs },
		{ "pin", js_pin },
		{ "unpin", js_unpin },
		{ "fromPin", js_from_pin },
		{ "closeHandle", js_close_handle },
		{ "objectOpen", js_object_open },
		{ "objectSetMaxEntries", js_object_set_max_entries },
		{ "objectLoad", js_object_load },
		{ "objectNames", js_object_names },
		{ "objectGet", js_object_get },
		{ "objectClose", js_object_close },
		{ "progTestRun", js_prog_test_run },
		{ "progTestRunAsync", js_prog_test_run_async },
		{ "mapLookup", js_map_lookup },
		{ "mapUpdate", js_map_update },
		{ "mapDelete", js_map_delete },
		{ "mapNextKey", js_map_next_key },
		{ "mapLookupBatch", js_map_lookup_batch },
		{ "mapUpdateBatch", js_map_update_batch },
		{ "mapDeleteBatch", js_map_delete_batch },
		{ "tcAttach", js_tc_attach },
		{ "tcDetach", js_tc_detach },
		{ "tcQuery", js_tc_query },
		{ "tcDestroyHook", js_tc_destroy },
		{ "ifindexOf", js_ifindex_of },
		{ "rbNew", js_rb_new },
		{ "rbConsume", js_rb_consume },
		{ "rbRef", js_rb_ref },
		{ "rbClose", js_rb_close },
	};
	const char *dbg = getenv("WEIR_LIBBPF_DEBUG");
	g_debug = dbg && *dbg && strcmp(dbg, "0") != 0;
	libbpf_set_print(print_cb);
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		napi_value f;
		NAPI_CALL(env, napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
		NAPI_CALL(env, napi_set_named_property(env, exports, fns[i].name, f));
	}
	return exports;
}
