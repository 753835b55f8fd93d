/*
 * Record mode's syscall recorder, beside fanotify (trace.c): every path the app and all its
 * threads, children and exec'd programs name in a file system call, found or not, and every
 * directory they list. fanotify sees opens only; this sees stat(), access(), readlink(),
 * failed lookups, mkdir(), the symlinks on the way (the path as the app wrote it).
 *
 * PID 1 is the tracer (PTRACE_SEIZE of the app's process, children and threads attached by
 * the kernel). A seccomp filter the app's process installs on itself before exec stops it
 * (SECCOMP_RET_TRACE) only at the listed calls; on a kernel without CONFIG_SECCOMP_FILTER
 * (slimroot's own) every call stops (PTRACE_SYSCALL), slower, same records. Each stop is read
 * with PTRACE_GET_SYSCALL_INFO (nr and args, the same on both arches), the path from
 * /proc/TID/mem (no process_vm_readv: slimroot's kernel lacks CROSS_MEMORY_ATTACH), made
 * absolute with /proc/TID/cwd or /proc/TID/fd/N, and looked up by the init itself (lstat at
 * the call's entry: whether it existed then). Records, in trace.c's set:
 *
 *     /path        named and there       ? /path      named and not there
 *     L /dir       listed (getdents64)
 *
 * Creating a name (mkdir, O_CREAT, a rename's target) records the name if it was there (an
 * existing directory the app expects), and its parent directory; a name it makes is no failed
 * lookup.
 */
#include "init.h"

enum { LOOK, OPEN, MAKE, LIST };
#define CWD 7 /* no dirfd argument: relative to the cwd */
#define NOPATH 7

/* How each call names a file: which argument is the dirfd, which the path. */
static const struct call {
	unsigned short nr;
	unsigned char dirfd, path, what;
} calls[] = {
#if defined(__x86_64__)
	{NR_open, CWD, 0, OPEN}, {NR_stat, CWD, 0, LOOK}, {NR_lstat, CWD, 0, LOOK},
	{NR_access, CWD, 0, LOOK}, {NR_readlink, CWD, 0, LOOK}, {NR_mkdir, CWD, 0, MAKE},
	{NR_unlink, CWD, 0, LOOK}, {NR_rename, CWD, 0, LOOK}, {NR_rename, CWD, 1, MAKE},
#endif
	{NR_openat, 0, 1, OPEN}, {NR_openat2, 0, 1, LOOK}, {NR_newfstatat, 0, 1, LOOK},
	{NR_statx, 0, 1, LOOK}, {NR_faccessat, 0, 1, LOOK}, {NR_faccessat2, 0, 1, LOOK},
	{NR_readlinkat, 0, 1, LOOK}, {NR_execve, CWD, 0, LOOK}, {NR_execveat, 0, 1, LOOK},
	{NR_chdir, CWD, 0, LOOK}, {NR_mkdirat, 0, 1, MAKE}, {NR_unlinkat, 0, 1, LOOK},
	{NR_renameat, 0, 1, LOOK}, {NR_renameat, 2, 3, MAKE}, {NR_renameat2, 0, 1, LOOK},
	{NR_renameat2, 2, 3, MAKE}, {NR_getdents64, 0, NOPATH, LIST},
};
#define NCALLS (sizeof(calls) / sizeof(calls[0]))

static int go[2] = {-1, -1}, mode[2] = {-1, -1}; /* pipes: tracer to app, app to tracer */
static long resume = PTRACE_CONT;		 /* PTRACE_SYSCALL without seccomp */
static int attached;

void record_start(void)
{
	if (sys_pipe(go) < 0 || sys_pipe(mode) < 0)
		die(125, "trace: pipe failed");
}

/* In the app's process, before anything else: wait until traced, then filter. */
void record_child(void)
{
	if (go[0] < 0)
		return;
	char b;
	sys_read(go[0], &b, 1);
	/* arch is native, or allow; nr is listed: trace; else allow */
	static struct sock_filter_k f[NCALLS + 5];
	f[0] = (struct sock_filter_k){0x20, 0, 0, 4}; /* ld [arch] */
	f[1] = (struct sock_filter_k){0x15, 0, NCALLS + 1, AUDIT_ARCH_NATIVE};
	f[2] = (struct sock_filter_k){0x20, 0, 0, 0}; /* ld [nr] */
	for (unsigned i = 0; i < NCALLS; i++)
		f[3 + i] = (struct sock_filter_k){0x15, (uint8_t)(NCALLS - i), 0, calls[i].nr};
	f[NCALLS + 3] = (struct sock_filter_k){0x06, 0, 0, SECCOMP_RET_ALLOW};
	f[NCALLS + 4] = (struct sock_filter_k){0x06, 0, 0, SECCOMP_RET_TRACE};
	struct sock_fprog_k prog = {NCALLS + 5, f};
	b = sys_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) ? 'p' : 's';
	sys_write(mode[1], &b, 1);
}

/* In PID 1, once the app's process exists. */
void record_attach(long pid)
{
	if (go[0] < 0)
		return;
	long r = sys_ptrace(PTRACE_SEIZE, (int)pid, 0,
			    PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
				    PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP);
	if (r < 0)
		die(125, "trace: ptrace: %e", (int)-r);
	sys_close(mode[1]);
	sys_write(go[1], "g", 1);
	char b = 0;
	sys_read(mode[0], &b, 1);
	if (b != 's') { /* no seccomp filter: stop at every call */
		resume = PTRACE_SYSCALL;
		sys_ptrace(PTRACE_INTERRUPT, (int)pid, 0, 0);
	}
	attached = 1;
}

const char *record_mode(void)
{
	return !attached ? NULL : resume == PTRACE_CONT ? "seccomp" : "ptrace";
}

/* The file an fd of `tid` names (AT_FDCWD: its cwd); its length, or < 0. */
static long fd_path(int tid, long fd, char *out, unsigned cap)
{
	char link[48];
	if ((int)fd == AT_FDCWD)
		fmt(link, sizeof(link), "/proc/%d/cwd", tid);
	else
		fmt(link, sizeof(link), "/proc/%d/fd/%d", tid, (int)fd);
	long n = sys_readlink(link, out, cap);
	return n > 0 && n < cap && out[0] == '/' ? n : -1;
}

/* The NUL-terminated string at `addr` in `tid`; its length, or < 0. */
static long read_str(int tid, uint64_t addr, char *out, unsigned cap)
{
	char mem[32];
	fmt(mem, sizeof(mem), "/proc/%d/mem", tid);
	long fd = sys_open(mem, O_RDONLY | O_CLOEXEC, 0), n = 0;
	if (fd < 0)
		return -1;
	while (n < cap) { /* page by page: the string may end just before an unmapped one */
		unsigned chunk = 4096 - (unsigned)((addr + n) & 4095);
		if (chunk > cap - n)
			chunk = cap - (unsigned)n;
		long r = sys_pread((int)fd, out + n, chunk, (long)(addr + n));
		if (r <= 0)
			break;
		for (long i = n; i < n + r; i++)
			if (!out[i]) {
				sys_close((int)fd);
				return i;
			}
		n += r;
	}
	sys_close((int)fd);
	return -1;
}

/* Records `key + 2` (an absolute path of length n): "? " before it when it is not there. */
static void note(char *key, long n, int what)
{
	struct statx_k st;
	key[n + 2] = 0;
	if (what == LIST) {
		key[0] = 'L';
	} else if (sys5(NR_statx, AT_FDCWD, key + 2, AT_SYMLINK_NOFOLLOW, 0, &st) < 0) {
		if (what == MAKE) /* made, not looked for: its directory is what it needs */
			return;
		key[0] = '?';
	} else {
		trace_add(key + 2, n);
		return;
	}
	key[1] = ' ';
	trace_add(key, n + 2);
}

static void on_call(int tid, const struct syscall_info_k *si)
{
	static char key[2 + 2 * PATH_MAX_K + 2];
	char *abs = key + 2;
	for (const struct call *c = calls; c < calls + NCALLS; c++) {
		if (c->nr != si->nr)
			continue;
		int what = c->what;
		long n = 0, m = 0;
		if (what == OPEN && si->args[c->path + 1] & O_CREAT)
			what = MAKE;
		if (c->path != NOPATH) {
			char *rel = abs + PATH_MAX_K + 1;
			m = read_str(tid, si->args[c->path], rel, PATH_MAX_K);
			if (m <= 0) /* unreadable, or empty (AT_EMPTY_PATH: the fd itself) */
				continue;
			if (rel[0] == '/') {
				memmove(abs, rel, (size_t)m);
				n = m;
			} else if ((n = fd_path(tid, c->dirfd == CWD ? AT_FDCWD : (long)si->args[c->dirfd], abs,
						PATH_MAX_K)) > 0) {
				if (abs[n - 1] != '/')
					abs[n++] = '/';
				memmove(abs + n, rel, (size_t)m);
				n += m;
			}
		} else {
			n = fd_path(tid, (int)si->args[c->dirfd], abs, PATH_MAX_K);
		}
		if (n <= 0) {
			trace_add(NULL, -1);
			continue;
		}
		note(key, n, what);
		if (what == MAKE) { /* the directory it goes in */
			while (n > 1 && abs[n - 1] == '/')
				n--;
			while (n > 1 && abs[n - 1] != '/')
				n--;
			note(key, n > 1 ? n - 1 : 1, LOOK);
		}
	}
}

int trace_stopped(int tid, int st)
{
	if ((st & 0xff) != 0x7f || go[0] < 0)
		return 0;
	int sig = (st >> 8) & 0xff, event = st >> 16;
	long req = resume;
	if (sig == (SIGTRAP | 0x80) || event == PTRACE_EVENT_SECCOMP) {
		static struct syscall_info_k si;
		long r = sys_ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof(si), (long)&si);
		/* op: entry (1) or seccomp (3), not exit (2); native calls only */
		if (r > 0 && si.op != 2 && si.arch == AUDIT_ARCH_NATIVE)
			on_call(tid, &si);
		sig = 0;
	} else if (event == PTRACE_EVENT_STOP) { /* a group-stop, or a new tracee's first stop */
		if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			req = PTRACE_LISTEN;
		sig = 0;
	} else if (event) { /* fork, clone, exec: nothing to record */
		sig = 0;
	}
	sys_ptrace(req, tid, 0, sig); /* else a signal for the app: delivered */
	return 1;
}
