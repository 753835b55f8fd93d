/*
 * Disk roots: the initramfs carries only this init, the modules and run.conf; the image is
 * a virtio-blk disk. run.conf names it (and each volume) by identity bytes the launcher read
 * from the image file, never by a /dev name:
 *
 *   root   FSTYPE OFFSET HEXID ro|rw
 *   volume FSTYPE OFFSET HEXID ro|rw PATH
 *
 * OFFSET/HEXID: the bytes at that offset of the device (ext4: the UUID at 0x468; erofs: the
 * UUID at 1024+0x30; squashfs, which has no UUID: its 96-byte superblock, whose sizes, table
 * offsets and build time tell images apart). A read-only root gets a tmpfs overlay so the
 * app can write; the image itself is never written (the launcher also attaches it read-only).
 */
#include "init.h"

#include "guest.h" /* RUN_CONF, API_MOUNTS, SCRATCH_DIRS */

#define MAX_ID 96
#define LOWER "/.slimroot-lower"
#define RW "/.slimroot-rw"
#define NEWROOT "/.slimroot-root"

struct disk {
	const char *fstype;
	long offset;
	unsigned char id[MAX_ID];
	int idlen;
	int rw;
	const char *path; /* volumes: where in the root */
	char dev[16];
};

static struct disk volumes[MAX_VOLUMES];
static int nvolumes, root_rw;
int root_is_image;

/* Splits off the next space-separated word of *s (NUL-terminating it in place). */
static char *word(char **s)
{
	char *w = *s;
	while (**s && **s != ' ')
		(*s)++;
	if (**s)
		*(*s)++ = 0;
	return w;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static void parse(const char *spec, struct disk *d, int volume)
{
	char *s = sdup(spec, slen(spec)), *fstype = word(&s), *off = word(&s), *hex = word(&s),
	     *mode = word(&s);
	long o = 0;
	int bad = !*fstype || !*off || !*hex;
	for (const char *p = off; *p && !bad; p++)
		bad = *p < '0' || *p > '9' || (o = o * 10 + (*p - '0')) > (1L << 40);
	size_t n = slen(hex);
	bad = bad || n % 2 || n / 2 > MAX_ID || !(streq(mode, "ro") || streq(mode, "rw"));
	for (size_t i = 0; i < n / 2 && !bad; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		bad = hi < 0 || lo < 0;
		d->id[i] = (unsigned char)(hi << 4 | lo);
	}
	if (volume && s[0] != '/')
		bad = 1;
	if (bad)
		die(125, "run.conf: bad %s record: %s", volume ? "volume" : "root", spec);
	d->fstype = fstype;
	d->offset = o;
	d->idlen = (int)(n / 2);
	d->rw = streq(mode, "rw");
	d->path = s;
}

/* True when the device's bytes at d->offset are d->id. */
static int matches(const char *dev, const struct disk *d)
{
	unsigned char buf[MAX_ID];
	long fd = sys_open(dev, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	long got = -1;
	if (sys_lseek((int)fd, d->offset, 0) == d->offset)
		got = sys_read((int)fd, buf, (size_t)d->idlen);
	sys_close((int)fd);
	return got == d->idlen && !memcmp(buf, d->id, (size_t)d->idlen);
}

/*
 * The /dev/vdX whose identity bytes match. Devices show up a little after virtio_blk loads
 * (or after boot, built in), so this waits, up to 10 s: TCG on a busy host is slow.
 */
static void find(struct disk *d, const char *what)
{
	for (int t = 0; t <= 10000; t += 20) {
		for (char l = 'a'; l <= 'z'; l++) {
			fmt(d->dev, sizeof(d->dev), "/dev/vd%s", (char[]){l, 0});
			if (matches(d->dev, d))
				return;
		}
		sleep_ms(20);
	}
	die(125, "%s: no virtio disk with its identity appeared within 10 s (virtio_blk and %s loaded?)",
	    what, d->fstype);
}

static void mount_disk(const struct disk *d, const char *at, const char *what)
{
	mkdir_p(at);
	long e = sys_mount(d->dev, at, d->fstype, d->rw ? 0 : MS_RDONLY, NULL);
	if (e < 0)
		die(125, "mount %s (%s, %s) on %s: %e", what, d->dev, d->fstype, at, (int)-e);
}

/* Frees the modules' memory: the initramfs stays in RAM for the life of the VM otherwise. */
static void remove_modules(const char *dir)
{
	long fd = sys_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	char buf[4096];
	long n;
	while ((n = sys_getdents64((int)fd, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n;) {
			struct dirent64_k *e = (struct dirent64_k *)(buf + off);
			off += e->reclen;
			if (e->type == DT_REG && endswith(e->name, ".ko"))
				sys_unlink(join3(dir, "/", e->name));
		}
	sys_close((int)fd);
}

static void mount_volumes(const char *top)
{
	for (int i = 0; i < nvolumes; i++) {
		struct disk *v = &volumes[i];
		char what[64];
		fmt(what, sizeof(what), "volume %d", i + 1);
		find(v, what);
		mount_disk(v, join3(top, "", v->path), what);
	}
}

/*
 * An image's /tmp or /run with content, on a root that is the image itself: an overlay over
 * it with its upper layer on the initramfs's tmpfs at `dir`, so the app can write there and
 * every boot starts from the image's content again. 0 without overlayfs: the tmpfs then goes
 * over the image's, as on a root with nothing there.
 */
static int scratch_overlay(const char *dir, const char *to)
{
	const char *upper = join3(dir, "", "/upper"), *work = join3(dir, "", "/work");
	struct statx_k st;
	char opts[128];
	sys_mkdir(upper, 0700);
	sys_mkdir(work, 0700);
	/* The overlay's own directory is the upper one: it takes the image's mode and owner. */
	if (sys_statx(to, &st) >= 0) {
		sys_chown(upper, st.uid, st.gid);
		sys_chmod(upper, st.mode & 07777);
	}
	fmt(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", to, upper, work);
	long e = sys_mount("overlay", to, "overlay", 0, opts);
	if (e >= 0)
		return 1;
	warn("%s: overlay: %e; a tmpfs hides the image's", dir, (int)-e);
	sys_rmdir(upper);
	sys_rmdir(work);
	return 0;
}

int disk_root(char *run_conf, size_t cap)
{
	static struct conf pre; /* run.conf alone, for the root and volume records */
	static struct disk root;
	conf_defaults(&pre);
	conf_read(&pre, RUN_CONF, 0, 1);
	if (!pre.root && !pre.nvolumes)
		return 0;
	for (int i = 0; i < pre.nvolumes; i++)
		parse(pre.volumes[i], &volumes[i], 1);
	nvolumes = pre.nvolumes;
	/* A kernel with the drivers built in has no modules to load: that is fine. */
	load_modules(pre.modules);
	if (!pre.root) { /* volumes on an initramfs root */
		mount_volumes("");
		return 0;
	}
	parse(pre.root, &root, 0);
	remove_modules(pre.modules);

	find(&root, "root disk");
	const char *top = NEWROOT;
	if (root.rw) {
		mount_disk(&root, NEWROOT, "root disk");
		root_rw = root_is_image = 1;
	} else {
		mount_disk(&root, LOWER, "root disk");
		sys_mkdir(RW, 0755);
		long e = sys_mount("tmpfs", RW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
		if (e >= 0) {
			sys_mkdir(RW "/upper", 0755);
			sys_mkdir(RW "/work", 0755);
			sys_mkdir(NEWROOT, 0755);
			e = sys_mount("overlay", NEWROOT, "overlay", 0,
				      "lowerdir=" LOWER ",upperdir=" RW "/upper,workdir=" RW "/work");
		}
		if (e < 0) {
			/* No overlayfs: the app still runs, but cannot write outside /tmp and /run. */
			warn("overlay on the read-only root: %e; the root stays read-only", (int)-e);
			top = LOWER;
			root_is_image = 1;
		}
	}
	mount_volumes(top);

	/* The API filesystems move along (with /dev/pts and /dev/shm under /dev); so do the
	 * tmpfs on /tmp and /run, unless the image has content there (scratch_overlay()). */
#define X(dir, mode) dir,
	static const char *const moved[] = {API_MOUNTS, SCRATCH_DIRS};
#undef X
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		const char *to = join3(top, "", moved[i]);
		if (i >= API_MOUNT_COUNT && has_entries(to) && (!root_is_image || scratch_overlay(moved[i], to)))
			continue;
		sys_mkdir(to, 0755);
		long e = sys_mount(moved[i], to, NULL, MS_MOVE, NULL);
		if (e < 0)
			die(125, "move %s to the disk root: %e", moved[i], (int)-e);
	}
	/* run.conf stays readable through an fd once the initramfs is out of sight. */
	long fd = sys_open(RUN_CONF, O_RDONLY | O_CLOEXEC, 0);
	if (fd >= 0)
		fmt(run_conf, cap, "/proc/self/fd/%d", (int)fd);
	/* switch_root without the cleanup: the initramfs is a few KiB now, modules removed. */
	long e = sys_chdir(top);
	if (e >= 0)
		e = sys_mount(".", "/", NULL, MS_MOVE, NULL);
	if (e >= 0)
		e = sys_chroot(".");
	if (e >= 0)
		e = sys_chdir("/");
	if (e < 0)
		die(125, "switch to the disk root: %e", (int)-e);
	return 1;
}

void disk_finish(void)
{
	for (int i = nvolumes - 1; i >= 0; i--)
		if (volumes[i].rw)
			sys_mount(NULL, volumes[i].path, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	if (root_rw)
		sys_mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
}
