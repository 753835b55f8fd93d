/*
 * The snapshot control channel (slimroot snapshot, src/vm/control.ts): the virtio-serial port
 * whose name is run.conf's `control` record, read when SIGIO says it has input. Two requests, a
 * line each, each answered with a line:
 *
 *   freeze                 -> frozen U F   every process but PID 1 gets SIGSTOP before the VM is
 *                                      saved; U, F: MemTotal - MemFree and MemFree, in KiB
 *   resume SEC NSEC HEX    -> resumed  after a restore: the kernel's pool gets fresh bytes from
 *                                      virtio-rng (/dev/hwrng) and HEX from the host, the CRNG is
 *                                      reseeded at once, the clock is set to the host's, and only
 *                                      then do the app's processes continue (SIGCONT)
 *
 * So no process reads the random state or the clock the snapshot froze: every resume of one
 * snapshot is a different machine from its first instruction on.
 */
#include "init.h"

#define F_SETOWN 8
#define O_ASYNC 020000
#define SIGCONT 18
#define CLOCK_REALTIME 0
/* _IOW('R', 0x03, int[2]) and _IO('R', 0x07): the same on x86-64 and arm64. */
#define RNDADDENTROPY 0x40085203UL
#define RNDRESEEDCRNG 0x5207UL

static int ctl = -1;
static char line[256];
static size_t have;

/* The /dev path of the virtio-serial port named `name` (its number follows the device order). */
static int find_port(const char *name, char *dev, size_t cap)
{
	static const char dir[] = "/sys/class/virtio-ports";
	long fd = sys_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	char buf[1024];
	int found = 0;
	long n;
	while (!found && (n = sys_getdents64((int)fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n && !found;) {
			struct dirent64_k *d = (struct dirent64_k *)(buf + off);
			off += d->reclen;
			if (d->name[0] == '.')
				continue;
			char path[128], got[64];
			fmt(path, sizeof(path), "%s/%s/name", dir, d->name);
			long nf = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
			if (nf < 0)
				continue;
			long r = sys_read((int)nf, got, sizeof(got) - 1);
			sys_close((int)nf);
			got[r > 0 ? r : 0] = 0;
			if (r > 0 && got[r - 1] == '\n')
				got[r - 1] = 0;
			if (streq(got, name)) {
				fmt(dev, cap, "/dev/%s", d->name);
				found = 1;
			}
		}
	}
	sys_close((int)fd);
	return found;
}

void control_open(const char *name)
{
	if (!name)
		return;
	char dev[96];
	long fd = -ENOENT;
	/* A module's port appears a moment after the driver loads: wait for it, boundedly. */
	for (int t = 0; t < 5000 && fd == -ENOENT; t += 10) {
		if (find_port(name, dev, sizeof(dev)))
			fd = sys_open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd == -ENOENT)
			sleep_ms(10);
	}
	if (fd < 0)
		die(125, "control channel %s: %e", name, (int)-fd);
	ctl = (int)fd;
	sys_fcntl(ctl, F_SETOWN, 1);
	sys_fcntl(ctl, F_SETFL, O_RDWR | O_NONBLOCK | O_ASYNC);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "SEC NSEC HEX": returns 0 when well formed. */
static int parse_resume(const char *p, struct timespec_k *t, unsigned char *seed, size_t *nseed)
{
	long v[2] = {0, 0};
	for (int i = 0; i < 2; i++) {
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			v[i] = v[i] * 10 + (*p++ - '0');
		if (*p++ != ' ')
			return -1;
	}
	t->sec = v[0];
	t->nsec = v[1];
	size_t n = 0;
	for (; hexval(p[0]) >= 0 && hexval(p[1]) >= 0 && n < 64; p += 2)
		seed[n++] = (unsigned char)(hexval(p[0]) << 4 | hexval(p[1]));
	*nseed = n;
	return *p || v[1] >= 1000000000L ? -1 : 0;
}

static void reseed(const unsigned char *host, size_t nhost)
{
	struct {
		int entropy_count, buf_size;
		unsigned char buf[128];
	} pool;
	size_t n = 0;
	long fd = sys_open("/dev/hwrng", O_RDONLY | O_CLOEXEC, 0);
	if (fd >= 0) {
		long r = sys_read((int)fd, pool.buf, 64);
		n = r > 0 ? (size_t)r : 0;
		sys_close((int)fd);
	}
	/* Only virtio-rng's bytes are credited; the host's are mixed in for when it is absent. */
	pool.entropy_count = (int)n * 8;
	memcpy(pool.buf + n, host, nhost);
	pool.buf_size = (int)(n + nhost);
	long r = fd = sys_open("/dev/urandom", O_WRONLY | O_CLOEXEC, 0);
	if (fd >= 0) {
		r = sys_ioctl((int)fd, RNDADDENTROPY, &pool);
		if (r >= 0)
			r = sys_ioctl((int)fd, RNDRESEEDCRNG, NULL);
		sys_close((int)fd);
	}
	if (r < 0)
		warn("resume: reseeding the kernel's random pool: %e", (int)-r);
}

/* /proc/meminfo's "NAME:   N kB" value, 0 when absent. */
static unsigned meminfo(const char *text, const char *name)
{
	size_t n = slen(name);
	for (const char *p = text; *p; p++) {
		if ((p == text || p[-1] == '\n') && !memcmp(p, name, n)) {
			unsigned v = 0;
			for (p += n; *p == ' '; p++)
				;
			while (*p >= '0' && *p <= '9')
				v = v * 10 + (unsigned)(*p++ - '0');
			return v;
		}
	}
	return 0;
}

/*
 * The guest's memory at the freeze (KiB): MemTotal - MemFree and MemFree. The host judges the
 * snapshot's size against its RAM less MemFree: the kernel's own pages (its image, the page
 * map) are outside MemTotal but in use, and in the RAM file.
 */
static void mem_kib(unsigned *used, unsigned *free_kib)
{
	char text[2048];
	*used = *free_kib = 0;
	long fd = sys_open("/proc/meminfo", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	long n = sys_read((int)fd, text, sizeof(text) - 1);
	sys_close((int)fd);
	text[n > 0 ? n : 0] = 0;
	*free_kib = meminfo(text, "MemFree:");
	*used = meminfo(text, "MemTotal:") - *free_kib;
}

/*
 * A reply on the non-blocking port. Right after a restore the host's connection is new, and
 * the guest kernel learns of it from a control message it handles in a workqueue: until then a
 * write fails with EAGAIN (the port says the host is not connected), even though the request
 * came in over that very connection. So EAGAIN is waited out, boundedly (2 s), not dropped.
 */
static void reply(const char *p, size_t n)
{
	for (int t = 0; t < 2000; t += 5) {
		if (write_all(ctl, p, n) != -EAGAIN)
			return;
		sleep_ms(5);
	}
	warn("control channel: the host did not take the reply");
}

static void handle(char *l)
{
	if (streq(l, "freeze")) {
		sys_kill(-1, SIGSTOP);
		char text[48];
		unsigned used, free_kib;
		mem_kib(&used, &free_kib);
		reply(text, fmt(text, sizeof(text), "frozen %u %u\n", used, free_kib));
	} else if (l[0] == 'r' && !memcmp(l, "resume ", 7)) {
		struct timespec_k t;
		unsigned char seed[64];
		size_t nseed;
		if (parse_resume(l + 7, &t, seed, &nseed)) {
			reply("bad\n", 4);
			return;
		}
		reseed(seed, nseed);
		long e = sys_clock_settime(CLOCK_REALTIME, &t);
		if (e < 0)
			warn("resume: setting the clock: %e", (int)-e);
		sys_kill(-1, SIGCONT);
		reply("resumed\n", 8);
	} else {
		reply("bad\n", 4);
	}
}

void control_read(void)
{
	if (ctl < 0)
		return;
	for (;;) {
		long n = sys_read(ctl, line + have, sizeof(line) - 1 - have);
		if (n <= 0)
			return;
		have += (size_t)n;
		for (size_t i = 0; i < have; i++) {
			if (line[i] != '\n')
				continue;
			line[i] = 0;
			handle(line);
			memmove(line, line + i + 1, have - i - 1);
			have -= i + 1;
			i = (size_t)-1;
		}
		if (have == sizeof(line) - 1)
			have = 0; /* a line too long for any request: dropped */
	}
}
