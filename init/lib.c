#include "lib.h"

/*
 * GCC may emit calls to these four even in freestanding code (struct copies, zeroing), so
 * they must exist. -fno-tree-loop-distribute-patterns (Makefile) keeps GCC from turning
 * these very loops back into calls to themselves.
 */
void *memcpy(void *d, const void *s, size_t n)
{
	char *dp = d;
	const char *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	char *dp = d;
	const char *sp = s;
	if (dp < sp)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

void *memset(void *d, int c, size_t n)
{
	char *dp = d;
	while (n--)
		*dp++ = (char)c;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t slen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

const char *after(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return NULL;
	return s;
}

int endswith(const char *s, const char *suffix)
{
	size_t a = slen(s), b = slen(suffix);
	return a >= b && !memcmp(s + a - b, suffix, b);
}

/*
 * The bump allocator's arena sits in .bss: it costs nothing in the file, and only pages
 * actually touched cost memory.
 */
static char arena[4 << 20] __attribute__((aligned(16)));
static size_t arena_used;

void *alloc(size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n > sizeof(arena) - arena_used)
		die(125, "out of memory");
	void *p = arena + arena_used;
	arena_used += n;
	return p;
}

char *sdup(const char *s, size_t n)
{
	char *p = alloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *join3(const char *a, const char *b, const char *c)
{
	size_t la = slen(a), lb = slen(b), lc = slen(c);
	char *p = alloc(la + lb + lc + 1);
	memcpy(p, a, la);
	memcpy(p + la, b, lb);
	memcpy(p + la + lb, c, lc + 1);
	return p;
}

/* Texts for the errors an init is likely to meet; the rest print as "error N". */
static const struct {
	unsigned char no;
	char text[24]; /* the longest, "operation not permitted", and its NUL */
} errtab[] = {
	{EPERM, "operation not permitted"}, {ENOENT, "no such file"},
	{EIO, "I/O error"},                 {ENOEXEC, "exec format error"},
	{EBADF, "bad file descriptor"},     {ENOMEM, "out of memory"},
	{EACCES, "permission denied"},      {EBUSY, "busy"},
	{EEXIST, "exists"},                 {ENODEV, "no such device"},
	{ENOTDIR, "not a directory"},       {EISDIR, "is a directory"},
	{EINVAL, "invalid argument"},       {ETXTBSY, "text file busy"},
	{ENOSPC, "no space left"},          {EROFS, "read-only filesystem"},
	{ENAMETOOLONG, "name too long"},    {ENOSYS, "not implemented"},
	{ELOOP, "too many symlinks"},       {ENETUNREACH, "network unreachable"},
	{ETIMEDOUT, "timed out"},
};

static char *put_u(char *p, char *end, unsigned long v)
{
	char tmp[20];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n && p < end)
		*p++ = tmp[--n];
	return p;
}

size_t vfmt(char *buf, size_t cap, const char *f, va_list ap)
{
	char *p = buf, *end = buf + cap - 1;
	for (; *f && p < end; f++) {
		if (*f != '%') {
			*p++ = *f;
			continue;
		}
		const char *s = NULL;
		switch (*++f) {
		case 's':
			s = va_arg(ap, const char *);
			break;
		case 'd': {
			int v = va_arg(ap, int);
			if (v < 0)
				*p++ = '-';
			p = put_u(p, end, v < 0 ? -(unsigned long)v : (unsigned long)v);
			break;
		}
		case 'u':
			p = put_u(p, end, va_arg(ap, unsigned));
			break;
		case 'e': {
			int e = va_arg(ap, int);
			for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
				if (errtab[i].no == e)
					s = errtab[i].text;
			if (!s) {
				for (const char *t = "error "; *t && p < end;)
					*p++ = *t++;
				p = put_u(p, end, (unsigned)e);
			}
			break;
		}
		default: /* "%%" prints '%'; a lone '%' at the end prints nothing */
			if (*f)
				*p++ = *f;
			else
				f--;
			break;
		}
		while (s && *s && p < end)
			*p++ = *s++;
	}
	*p = 0;
	return (size_t)(p - buf);
}

size_t fmt(char *buf, size_t cap, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	size_t n = vfmt(buf, cap, f, ap);
	va_end(ap);
	return n;
}

long write_all(int fd, const char *p, size_t n)
{
	while (n) {
		long r = sys_write(fd, p, n);
		if (r == -EINTR)
			continue;
		if (r <= 0)
			return r ? r : -EIO;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void vwarn(const char *f, va_list ap)
{
	char line[1024];
	static const char prefix[] = "slimroot-init: ";
	memcpy(line, prefix, sizeof(prefix) - 1);
	size_t n = sizeof(prefix) - 1;
	n += vfmt(line + n, sizeof(line) - n - 1, f, ap);
	line[n++] = '\n';
	/* One write per line, so lines from the init and the app never interleave mid-line. */
	write_all(2, line, n);
}

void warn(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vwarn(f, ap);
	va_end(ap);
}

/* Set in the forked child: it must exit, never try to end the VM itself. */
int is_child;

void die(int status, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vwarn(f, ap);
	va_end(ap);
	if (is_child)
		sys_exit(status);
	finish(status);
}

long bounded_call(long (*fn)(const void *), const void *arg, int ms)
{
	static const unsigned long chld = SIGBIT(SIGCHLD);
	static const struct timespec_k tick = {0, 100000000};
	long pid = sys_fork();
	if (pid < 0)
		return pid;
	if (pid == 0) {
		is_child = 1;
		long r = fn(arg);
		sys_exit(r < 0 && r > -256 ? (int)-r : r ? 255 : 0);
	}
	/* SIGCHLD is blocked in PID 1: sleep until it comes or a tick passes (ms/100 ticks). */
	for (int t = 0;; t += 100) {
		int st;
		if (sys_wait4((int)pid, &st, WNOHANG) == pid)
			return st & 0x7f ? -EIO : -(long)((st >> 8) & 0xff);
		if (t >= ms)
			return -ETIMEDOUT;
		int info[32];
		sys_sigtimedwait(&chld, info, &tick);
	}
}

void sleep_ms(long ms)
{
	struct timespec_k t = {ms / 1000, ms % 1000 * 1000000};
	sys_nanosleep(&t);
}
