/*
 * Record mode (`trace 1` in app.conf or run.conf): which files of the image the app opens.
 *
 * Just before the app is forked, a fanotify group watches the root filesystem (the
 * initramfs; /proc, /dev, /tmp, /run are other filesystems and are not watched) for opens,
 * executions included, of files and directories. Each event carries an fd the kernel opened
 * for us; its /proc/self/fd link names the file. Names go into a set (an open-addressing hash
 * table over an append-only string store, both in .bss: only pages touched cost memory).
 * When the app has ended, finish() calls trace_report(), which prints every name once, in the
 * order first seen, as `SLIMROOT_TRACE <path>` ('\' as "\\", newline as "\n", other control
 * bytes as "\xHH"), then `SLIMROOT_TRACE_LOST <n>` if any event could not be recorded.
 *
 * fanotify reports files that were opened: a stat(), access() or readlink(), a failed
 * lookup, an O_PATH open or the symlinks on the way to a file leave no event.
 */
#include "init.h"

#define SLOTS (1u << 16)	     /* power of two */
#define MAX_PATHS (SLOTS / 4 * 3) /* keeps probe chains short */

static char store[4 << 20]; /* "path\0" after "path\0", in order first seen */
static unsigned store_used;
static unsigned slot[SLOTS]; /* 1 + offset in store; 0: empty */
static unsigned npaths, lost;
static int fan = -1, sigfd = -1;

void trace_add(const char *p, long n)
{
	if (n < 0) {
		lost++;
		return;
	}
	unsigned h = 2166136261u; /* FNV-1a */
	for (unsigned i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	unsigned i = h & (SLOTS - 1);
	for (; slot[i]; i = (i + 1) & (SLOTS - 1)) {
		const char *q = store + slot[i] - 1;
		if (!memcmp(q, p, n) && !q[n])
			return;
	}
	if (npaths == MAX_PATHS || (unsigned long)n + 1 > sizeof(store) - store_used) {
		lost++;
		return;
	}
	memcpy(store + store_used, p, n);
	store[store_used + n] = 0;
	slot[i] = store_used + 1;
	store_used += n + 1;
	npaths++;
}

static void record_fd(int fd)
{
	char link[32], path[PATH_MAX_K];
	fmt(link, sizeof(link), "/proc/self/fd/%d", fd);
	long n = sys_readlink(link, path, sizeof(path));
	if (n <= 0 || n >= (long)sizeof(path) || path[0] != '/') {
		lost++;
		return;
	}
	/* Unlinked since it was opened: still a file the app used. */
	static const char deleted[] = " (deleted)";
	if (n > 10 && !memcmp(path + n - 10, deleted, 10))
		n -= 10;
	trace_add(path, n);
}

/* Reads every queued event (the group is non-blocking). */
static void drain(void)
{
	static char buf[4096] __attribute__((aligned(8)));
	long n;
	while ((n = sys_read(fan, buf, sizeof(buf))) > 0) {
		for (long off = 0; off + (long)sizeof(struct fan_event_k) <= n;) {
			const struct fan_event_k *e = (const void *)(buf + off);
			if (e->event_len < sizeof(*e))
				break;
			if (e->mask & FAN_Q_OVERFLOW)
				lost++;
			if (e->fd >= 0) {
				if (e->pid != 1) /* our own opens are not the app's */
					record_fd(e->fd);
				sys_close(e->fd);
			}
			off += e->event_len;
		}
	}
}

void trace_start(const unsigned long *sigs)
{
	long r = sys_fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
				   O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NONBLOCK);
	if (r < 0)
		die(125, "trace: fanotify_init: %e", (int)-r);
	fan = (int)r;
	const uint64_t mask = FAN_OPEN | FAN_OPEN_EXEC | FAN_ONDIR;
	r = sys_fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, "/");
	if (r == -EINVAL) /* no filesystem marks: the root mount is enough */
		r = sys_fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, mask, "/");
	if (r < 0)
		die(125, "trace: fanotify_mark /: %e", (int)-r);
	/* The signals stay blocked; the signalfd only wakes our poll when one is pending. */
	r = sys_signalfd(sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (r < 0)
		die(125, "trace: signalfd: %e", (int)-r);
	sigfd = (int)r;
	record_start();
}

int trace_wait(void)
{
	if (fan < 0)
		return 0;
	struct pollfd_k p[2] = {{sigfd, POLLIN, 0}, {fan, POLLIN, 0}};
	sys_ppoll(p, 2);
	if (p[1].revents)
		drain();
	return 1;
}

/* Appends s to the output buffer, flushing it to the console when full. */
static void put(char *out, unsigned *len, const char *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (*len + 5 > 4096) { /* room for an escape and the line's '\n' */
			write_all(1, out, *len);
			*len = 0;
		}
		unsigned char c = (unsigned char)s[i];
		if (c == '\\' || c == '\n') {
			out[(*len)++] = '\\';
			out[(*len)++] = c == '\n' ? 'n' : '\\';
		} else if (c < 0x20 || c == 0x7f) {
			out[(*len)++] = '\\';
			out[(*len)++] = 'x';
			out[(*len)++] = "0123456789abcdef"[c >> 4];
			out[(*len)++] = "0123456789abcdef"[c & 15];
		} else {
			out[(*len)++] = (char)c;
		}
	}
}

void trace_report(void)
{
	static char out[4096];
	unsigned len = 0;
	if (fan < 0)
		return;
	drain();
	for (unsigned off = 0; off < store_used;) {
		unsigned n = (unsigned)slen(store + off);
		put(out, &len, "SLIMROOT_TRACE ", 15);
		put(out, &len, store + off, n);
		out[len++] = '\n';
		off += n + 1;
	}
	write_all(1, out, len);
	if (record_mode())
		write_all(1, out, fmt(out, sizeof(out), "SLIMROOT_TRACE_RECORDER %s\n", record_mode()));
	if (lost)
		write_all(1, out, fmt(out, sizeof(out), "SLIMROOT_TRACE_LOST %u\n", lost));
	fan = -1;
}
