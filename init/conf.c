#include "conf.h"

#include "lib.h"

void conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->workdir = "/";
	c->hostname = "slimroot";
	c->modules = "/lib/modules/slimroot";
}

/* Whole file into fresh memory, NUL-terminated. Returns NULL with *err set on failure. */
static char *slurp(const char *path, long *err)
{
	long fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		*err = -fd;
		return NULL;
	}
	long size = sys_lseek((int)fd, 0, SEEK_END);
	if (size < 0 || size > (1 << 20)) { /* a config beyond 1 MiB is a mistake */
		*err = size < 0 ? -size : EINVAL;
		sys_close((int)fd);
		return NULL;
	}
	char *buf = alloc((size_t)size + 1);
	long got = 0, r = 0;
	sys_lseek((int)fd, 0, 0);
	while (got < size && (r = sys_read((int)fd, buf + got, (size_t)(size - got))) > 0)
		got += r;
	sys_close((int)fd);
	if (r < 0) {
		*err = -r;
		return NULL;
	}
	buf[got] = 0;
	return buf;
}

/* In place: "\\" -> '\', "\n" -> newline; any other backslash stays as written. */
static void unescape(char *s)
{
	char *w = s;
	for (; *s; s++) {
		if (s[0] == '\\' && (s[1] == '\\' || s[1] == 'n')) {
			*w++ = s[1] == 'n' ? '\n' : '\\';
			s++;
		} else {
			*w++ = *s;
		}
	}
	*w = 0;
}

/* Decimal 0..max, digits only. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

/* "a.b.c.d" into 4 bytes; returns the rest of the string (after the address) or NULL. */
static const char *parse_ipv4(const char *s, unsigned char out[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned v = 0;
		int digits = 0;
		while (*s >= '0' && *s <= '9' && digits < 4)
			v = v * 10 + (unsigned)(*s++ - '0'), digits++;
		if (!digits || v > 255 || (i < 3 && *s++ != '.'))
			return NULL;
		out[i] = (unsigned char)v;
	}
	return s;
}

const char *conf_getenv(const struct conf *c, const char *name)
{
	for (int i = 0; i < c->envc; i++) {
		const char *v = after(c->env[i], name);
		if (v && *v == '=')
			return v + 1;
	}
	return NULL;
}

static void set_env(struct conf *c, char *entry)
{
	size_t klen = 0;
	while (entry[klen] != '=')
		klen++;
	for (int i = 0; i < c->envc; i++) {
		if (!memcmp(c->env[i], entry, klen + 1)) { /* same NAME and its '=' */
			c->env[i] = entry;
			return;
		}
	}
	if (c->envc == MAX_ENV)
		die(125, "too many env records");
	c->env[c->envc++] = entry;
}

void conf_read(struct conf *c, const char *path, int required, int is_run_conf)
{
	long err = 0;
	char *text = slurp(path, &err);
	if (!text) {
		if (!required && err == ENOENT)
			return;
		die(125, "%s: %e", path, (int)err);
	}
	conf_parse(c, text, path, is_run_conf);
}

/* Base64 (RFC 4648, with or without padding) decoded in place; -1 on a bad character. */
static long base64_decode(char *s)
{
	unsigned bits = 0, nbits = 0;
	char *out = s;
	for (const char *p = s; *p && *p != '='; p++) {
		int v = *p >= 'A' && *p <= 'Z'	 ? *p - 'A'
			: *p >= 'a' && *p <= 'z' ? *p - 'a' + 26
			: *p >= '0' && *p <= '9' ? *p - '0' + 52
			: *p == '+'		 ? 62
			: *p == '/'		 ? 63
						 : -1;
		if (v < 0)
			return -1;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			*out++ = (char)((bits >> nbits) & 0xff);
		}
	}
	*out = 0;
	return out - s;
}

/*
 * Run settings given as `slimroot.conf=BASE64` on the kernel command line, for a kernel with
 * the app built in booted by hand without an initrd (slimroot run gives it run.conf in a small
 * initrd of its own, docs/run.md). The kernel keeps dotted parameters from init's argv and
 * environment, so the init reads them from /proc/cmdline. Disk records here come too late
 * to be mounted (disk_root() reads run.conf alone).
 */
void conf_read_cmdline(struct conf *c)
{
	static const char key[] = "slimroot.conf=";
	/* /proc files have no size to slurp by; the kernel keeps at most 2048 bytes (x86, arm64). */
	static char text[4097];
	long fd = sys_open("/proc/cmdline", O_RDONLY | O_CLOEXEC, 0), got = 0, r;
	if (fd < 0)
		return;
	while (got < (long)sizeof(text) - 1 &&
	       (r = sys_read((int)fd, text + got, sizeof(text) - 1 - (size_t)got)) > 0)
		got += r;
	sys_close((int)fd);
	text[got] = 0;
	for (char *p = text; *p;) {
		while (*p == ' ' || *p == '\n')
			p++;
		char *end = p;
		while (*end && *end != ' ' && *end != '\n')
			end++;
		int last = !*end;
		*end = 0;
		if (slen(p) >= sizeof(key) - 1 && !memcmp(p, key, sizeof(key) - 1)) {
			char *val = p + sizeof(key) - 1;
			if (base64_decode(val) < 0)
				die(125, "kernel command line: slimroot.conf: not base64");
			conf_parse(c, val, "slimroot.conf", 1);
		}
		if (last)
			break;
		p = end + 1;
	}
}

void conf_parse(struct conf *c, char *text, const char *path, int is_run_conf)
{
	int line_no = 0, args_replaced = 0;
	for (char *line = text, *next; *line; line = next) {
		line_no++;
		next = line;
		while (*next && *next != '\n')
			next++;
		if (*next)
			*next++ = 0;
		if (!*line || *line == '#')
			continue;

		char *val = line;
		while (*val && *val != ' ')
			val++;
		if (*val)
			*val++ = 0;
		unescape(val);
		const char *key = line;
		unsigned long n;

		if (streq(key, "version")) {
			if (!streq(val, "1"))
				goto bad;
		} else if (streq(key, "arg")) {
			/* run.conf's arg records replace all of app.conf's */
			if (is_run_conf && !args_replaced) {
				c->argc = 0;
				args_replaced = 1;
			}
			if (c->argc == MAX_ARGS)
				goto bad;
			c->argv[c->argc++] = val;
			c->argv[c->argc] = NULL;
		} else if (streq(key, "env")) {
			/* NAME=VALUE with a non-empty NAME */
			const char *eq = val;
			while (*eq && *eq != '=')
				eq++;
			if (!*eq || eq == val)
				goto bad;
			set_env(c, val);
		} else if (streq(key, "workdir")) {
			if (!*val)
				goto bad;
			c->workdir = val;
		} else if (streq(key, "uid") || streq(key, "gid")) {
			/* (unsigned)-1 means "unchanged" to setuid(): refuse it */
			if (parse_uint(val, 0xfffffffe, &n))
				goto bad;
			*(key[0] == 'u' ? &c->uid : &c->gid) = (unsigned)n;
		} else if (streq(key, "groups")) {
			c->ngroups = 0;
			for (char *g = val; *g;) {
				char *comma = g;
				while (*comma && *comma != ',')
					comma++;
				int last = !*comma;
				*comma = 0;
				if (c->ngroups == MAX_GROUPS || parse_uint(g, 0xfffffffe, &n))
					goto bad;
				c->groups[c->ngroups++] = (unsigned)n;
				g = last ? comma : comma + 1;
			}
		} else if (streq(key, "hostname")) {
			if (!*val || slen(val) > 64)
				goto bad;
			c->hostname = val;
			c->run_hosts |= is_run_conf;
		} else if (streq(key, "ip")) {
			const char *rest = parse_ipv4(val, c->ip);
			c->prefix = 32;
			if (!rest)
				goto bad;
			if (*rest == '/') {
				if (parse_uint(rest + 1, 32, &n))
					goto bad;
				c->prefix = (int)n;
			} else if (*rest) {
				goto bad;
			}
			c->has_ip = 1;
			c->ip_text = sdup(val, (size_t)(rest - val));
			c->run_hosts |= is_run_conf;
		} else if (streq(key, "gateway")) {
			const char *rest = parse_ipv4(val, c->gateway);
			if (!rest || *rest)
				goto bad;
			c->has_gateway = 1;
		} else if (streq(key, "dns")) {
			/* run.conf's dns records replace app.conf's */
			if (is_run_conf && !c->run_resolv)
				c->ndns = 0;
			c->run_resolv |= is_run_conf;
			if (!*val || c->ndns == MAX_DNS)
				goto bad;
			c->dns[c->ndns++] = val;
		} else if (streq(key, "trace")) {
			if (parse_uint(val, 1, &n))
				goto bad;
			c->trace = (int)n;
		} else if (streq(key, "root")) {
			if (!*val)
				goto bad;
			c->root = val;
		} else if (streq(key, "volume")) {
			if (!*val || c->nvolumes == MAX_VOLUMES)
				goto bad;
			c->volumes[c->nvolumes++] = val;
		} else if (streq(key, "control")) {
			if (!*val)
				goto bad;
			c->control = val;
		} else if (streq(key, "modules")) {
			if (!*val)
				goto bad;
			c->modules = val;
		}
		/* user, port and unknown keys: informational or newer than us; ignored */
		continue;
	bad:
		die(125, "%s:%d: bad %s record", path, line_no, key);
	}
}
