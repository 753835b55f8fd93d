/*
 * Kernel modules: every *.ko under a directory, loaded in dependency order. The order comes
 * from each module's own .modinfo section ("name=...", "depends=a,b"), so no modules.dep,
 * depmod or modprobe is needed.
 */
#include "init.h"

#define MAX_MODULES 4096

struct module {
	const char *path;
	const char *name;
	const char *depends; /* comma-separated module names, may be empty */
	unsigned char state; /* 0 new, 1 loading (its dependencies), 2 done */
};

static struct module mods[MAX_MODULES];
static int nmods;

static uint64_t rd(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	while (bytes--) /* ELF files for both our targets are little-endian */
		v = v << 8 | p[bytes];
	return v;
}

/* Copies name= and depends= out of the module's .modinfo section, if it has one. */
static void read_modinfo(struct module *m, const unsigned char *f, uint64_t size)
{
	if (size < 64 || memcmp(f, "\177ELF\2\1", 6))
		return;
	uint64_t shoff = rd(f + 0x28, 8), shentsize = rd(f + 0x3a, 2);
	uint64_t shnum = rd(f + 0x3c, 2), shstrndx = rd(f + 0x3e, 2);
	if (shentsize < 64 || shstrndx >= shnum || shoff > size || shnum * shentsize > size - shoff)
		return;
	const unsigned char *strtab_sh = f + shoff + shstrndx * shentsize;
	uint64_t stroff = rd(strtab_sh + 24, 8), strsize = rd(strtab_sh + 32, 8);
	if (stroff > size || strsize > size - stroff)
		return;
	for (uint64_t i = 0; i < shnum; i++) {
		const unsigned char *sh = f + shoff + i * shentsize;
		uint64_t name = rd(sh, 4), off = rd(sh + 24, 8), len = rd(sh + 32, 8);
		if (name + sizeof(".modinfo") > strsize ||
		    memcmp(f + stroff + name, ".modinfo", sizeof(".modinfo")))
			continue;
		if (off > size || len > size - off)
			return;
		/* NUL-separated key=value strings; a section may end without a NUL */
		const char *p = (const char *)f + off, *end = p + len;
		while (p < end) {
			const char *q = p;
			while (q < end && *q)
				q++;
			size_t len = (size_t)(q - p);
			if (len >= 5 && !memcmp(p, "name=", 5))
				m->name = sdup(p + 5, len - 5);
			else if (len >= 8 && !memcmp(p, "depends=", 8))
				m->depends = sdup(p + 8, len - 8);
			p = q + 1;
		}
		return;
	}
}

static void add_module(const char *path, const char *base)
{
	if (nmods == MAX_MODULES) {
		warn("%s: more than %d modules, ignoring the rest", path, MAX_MODULES);
		return;
	}
	struct module *m = &mods[nmods];
	m->path = path;
	m->depends = "";
	long fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		warn("module %s: %e", path, (int)-fd);
		return;
	}
	long size = sys_lseek((int)fd, 0, SEEK_END);
	long map = size > 0 ? sys_mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, (int)fd, 0) : -EINVAL;
	if (!SYS_ERR(map)) {
		read_modinfo(m, (const unsigned char *)map, (uint64_t)size);
		sys_munmap((void *)map, (size_t)size);
	}
	sys_close((int)fd);
	if (!m->name) {
		/* no .modinfo name: the file name, as KBUILD_MODNAME spells it ('-' -> '_') */
		char *n = sdup(base, slen(base) - 3);
		for (char *p = n; *p; p++)
			if (*p == '-')
				*p = '_';
		m->name = n;
	}
	nmods++;
}

/* Depth-first: *.ko files, and subdirectories (not followed through symlinks). */
static void walk(const char *dir, int top)
{
	long fd = sys_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0) {
		if (!(top && fd == -ENOENT)) /* no modules directory: all built in */
			warn("modules: %s: %e", dir, (int)-fd);
		return;
	}
	char buf[2048];
	long n;
	while ((n = sys_getdents64((int)fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64_k *d = (struct dirent64_k *)(buf + off);
			off += d->reclen;
			const char *name = d->name;
			if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
				continue;
			int ko = endswith(name, ".ko");
			char *path = join3(dir, "/", name);
			if (ko && d->type != DT_DIR)
				add_module(path, name);
			else if (d->type == DT_DIR || (d->type == DT_UNKNOWN && !ko))
				walk(path, 0);
		}
	}
	sys_close((int)fd);
}

/*
 * A module's init runs in the process that loads it and may never return (a driver waiting
 * for hardware that is not there): each load runs in a child (bounded_call), waited for this
 * long, so the app still starts.
 */
#define MODULE_WAIT_MS 10000

/* Loads one module file; 0 or -errno. */
static long insert(const void *arg)
{
	const char *path = arg;
	long fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	long r = fd;
	if (fd >= 0) {
		r = sys_finit_module((int)fd, "", 0);
		if (r == -ENOSYS) { /* kernels before 3.8: hand over the bytes */
			long size = sys_lseek((int)fd, 0, SEEK_END);
			long map = sys_mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, (int)fd, 0);
			if (!SYS_ERR(map)) {
				r = sys_init_module((void *)map, (size_t)size, "");
				sys_munmap((void *)map, (size_t)size);
			}
		}
		sys_close((int)fd);
	}
	return r;
}

static struct module *find(const char *name, size_t len)
{
	for (int i = 0; i < nmods; i++)
		if (!memcmp(mods[i].name, name, len) && !mods[i].name[len])
			return &mods[i];
	return NULL;
}

static void load(struct module *m, int *loaded)
{
	if (m->state)
		return; /* done, or a dependency cycle: let the kernel judge */
	m->state = 1;
	/* Dependencies not in the directory are taken to be built in. */
	for (const char *d = m->depends; *d;) {
		const char *e = d;
		while (*e && *e != ',')
			e++;
		struct module *dep = e > d ? find(d, (size_t)(e - d)) : NULL;
		if (dep)
			load(dep, loaded);
		d = *e ? e + 1 : e;
	}
	m->state = 2;

	long r = bounded_call(insert, m->path, MODULE_WAIT_MS);
	if (r == 0)
		++*loaded;
	else if (r == -ETIMEDOUT)
		warn("module %s: its init has not returned after %d s; going on without it", m->name,
		     MODULE_WAIT_MS / 1000);
	else if (r == -ENOENT) /* the kernel's answer to unknown symbols */
		warn("module %s: unknown symbols (a module it needs is missing?)", m->name);
	else if (r != -EEXIST) /* EEXIST: already loaded, or built in */
		/* Not fatal: a driver for hardware this VM lacks may refuse to load. */
		warn("module %s: %e", m->name, (int)-r);
}

static int by_path(const struct module *a, const struct module *b)
{
	const char *x = a->path, *y = b->path;
	while (*x && *x == *y)
		x++, y++;
	return (unsigned char)*x - (unsigned char)*y;
}

int load_modules(const char *dir)
{
	walk(dir, 1);
	/* Directory order is the filesystem's whim; sort so loads happen in a stable order. */
	for (int i = 1; i < nmods; i++) {
		struct module m = mods[i];
		int j = i;
		for (; j > 0 && by_path(&mods[j - 1], &m) > 0; j--)
			mods[j] = mods[j - 1];
		mods[j] = m;
	}
	int loaded = 0;
	for (int i = 0; i < nmods; i++)
		load(&mods[i], &loaded);
	return loaded;
}
