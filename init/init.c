/*
 * slimroot-init: PID 1 of a slimroot microVM.
 *
 * Mounts the API filesystems, reads /etc/slimroot/{app,run}.conf, loads kernel modules, sets
 * up the hostname and network, starts the app as its only direct child, forwards signals to it
 * and reaps every zombie. When the app ends (or the init fails) it prints SLIMROOT_EXIT=<n> on
 * the console and ends the VM with a reboot, which QEMU (-no-reboot) and Firecracker turn into
 * an exit; a power-off would leave microvm QEMU hanging.
 */
#include "init.h"

#include "guest.h" /* APP_CONF, RUN_CONF, REPORT_KEY, DEFAULT_PATH...: generated from src/ (scripts/guest-header.ts) */

/* The kernel enters PID 1 here, with argc, argv and envp on the stack (unused). */
#if defined(__x86_64__)
__asm__(".text\n.global _start\n.type _start,@function\n_start:\n"
	"\txor %ebp,%ebp\n\tmov %rsp,%rdi\n\tand $-16,%rsp\n\tcall start_c\n\thlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.global _start\n.type _start,%function\n_start:\n"
	"\tmov x29,#0\n\tmov x30,#0\n\tmov x0,sp\n\tbl start_c\n\tb .\n");
#endif

/*
 * Signals PID 1 passes on to the app. They stay blocked in PID 1 and are taken with
 * rt_sigtimedwait: the kernel drops a signal sent to init only when it is unblocked and has
 * no handler, so blocking is what makes them arrive at all.
 */
static const unsigned long forwarded = SIGBIT(SIGHUP) | SIGBIT(SIGINT) | SIGBIT(SIGQUIT) |
				       SIGBIT(SIGUSR1) | SIGBIT(SIGUSR2) | SIGBIT(SIGTERM);
/* SIGIO: the snapshot control channel has input (control.c). */
static const unsigned long waited = forwarded | SIGBIT(SIGCHLD) | SIGBIT(SIGIO);

/* image_first: the scratch directories (src/guest/layout.ts) get a tmpfs only where the image
 * has nothing; the root is already writable RAM, and a tmpfs would hide what the image put
 * there (docker shows it: postgres's /run/postgresql). A disk root: root.c. */
#define X(dir, mode) {"tmpfs", dir, mode, MS_NOSUID | MS_NODEV, 1},
static const struct mnt {
	const char *type, *dir, *data;
	unsigned long flags;
	int image_first;
} mounts[] = {
	{"devtmpfs", "/dev", "mode=0755", MS_NOSUID, 0},
	{"proc", "/proc", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0},
	{"sysfs", "/sys", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0},
	SCRATCH_DIRS
	{"devpts", "/dev/pts", "mode=0620,ptmxmode=0666,gid=5", MS_NOSUID | MS_NOEXEC, 0},
	{"tmpfs", "/dev/shm", "mode=1777", MS_NOSUID | MS_NODEV, 0},
};
#undef X

/* Reaps whatever has exited, for at most `ms`; returns early once no child is left. */
static void reap_for(int ms)
{
	for (int t = 0;; t += 10) {
		int st;
		long r;
		while ((r = sys_wait4(-1, &st, WNOHANG | WALL)) > 0)
			trace_stopped((int)r, st);
		if (r == -ECHILD || t >= ms)
			return;
		sleep_ms(10);
	}
}

static void open_console(void);

static long drain_console(const void *unused)
{
	(void)unused;
	return sys_ioctl(1, TCSBRK, (void *)1);
}

/*
 * "SLIMROOT_REPORT <key>\n": the launcher's per-boot key (src/vm/report.ts), from a file in
 * the initramfs that is read and deleted before anything else runs, so the app finds it in
 * no file, command line or log. Without the file there is no such line.
 */
static char report_open[16 + 128 + 1];
static size_t report_len;

static void read_key(void)
{
	long fd = sys_open(REPORT_KEY, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	long n = sys_read((int)fd, report_open + 16, 128);
	sys_close((int)fd);
	sys_unlink(REPORT_KEY);
	if (n > 0) {
		memcpy(report_open, "SLIMROOT_REPORT ", 16);
		report_open[16 + n] = '\n';
		report_len = 16 + (size_t)n + 1;
	}
}

/*
 * The init's own milestones on CLOCK_MONOTONIC, in microseconds (0: not reached), printed in
 * the report as "SLIMROOT_TIME <what> <usecs>" for `run --timeline` (src/vm/timeline.ts).
 */
static unsigned t_init, t_app, t_exit;

static unsigned now_us(void)
{
	struct timespec_k t = {0, 0};
	sys_clock_gettime(CLOCK_MONOTONIC, &t);
	return (unsigned)(t.sec * 1000000 + t.nsec / 1000);
}

static void time_report(void)
{
	static const char *const names[] = {"init", "app", "exit"};
	const unsigned *const at[] = {&t_init, &t_app, &t_exit};
	for (int i = 0; i < 3; i++) {
		char line[48];
		size_t n = fmt(line, sizeof(line), "SLIMROOT_TIME %s %u\n", names[i], *at[i]);
		if (*at[i])
			write_all(1, line, n);
	}
}

void finish(int status)
{
	static int finishing;
	if (!finishing++) {
		/* The app's leftovers get a moment to exit cleanly; then they are killed. */
		sys_kill(-1, SIGTERM);
		reap_for(1000);
		sys_kill(-1, SIGKILL);
		reap_for(1000);
		sys_sync();
		disk_finish();
	}
	/*
	 * The app shared the console's open file description with us, so an O_NONBLOCK it left
	 * there would make our report fail with EAGAIN once the UART's buffer fills: a fresh
	 * open of the console gets a description of our own (and if that fails, the flag goes).
	 */
	open_console();
	for (int fd = 1; fd <= 2; fd++) {
		long fl = sys_fcntl(fd, F_GETFL, 0);
		if (fl >= 0 && fl & O_NONBLOCK)
			sys_fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	/* Output the app suspended (tcflow, a ^S) would hold the report back: resume it. */
	sys_ioctl(1, TCXONC, (void *)TCOON);
	/* Every other process is gone: from here on, the console is ours alone. The key opens
	 * the report, so that the launcher believes nothing the app printed (read_key()). */
	if (report_len)
		write_all(1, report_open, report_len);
	trace_report();
	time_report();
	char line[32];
	size_t n = fmt(line, sizeof(line), "SLIMROOT_EXIT=%d\n", status);
	if (write_all(1, line, n) < 0)
		write_all(2, line, n);
	/* tcdrain: the UART may still hold output, and a reboot does not wait for it; but a
	 * stuck line (flow control) must not keep the VM up, so the wait is bounded. */
	bounded_call(drain_console, NULL, 2000);
	sys_reboot(REBOOT_CMD_RESTART);
	sys_reboot(REBOOT_CMD_POWER_OFF);
	/* Still here? PID 1 exiting panics the kernel, and panic=-1 reboots. */
	sys_exit(status);
}

/* Makes fds 0-2 the console. The kernel opened it only if the initramfs had /dev/console. */
static void open_console(void)
{
	long fd = sys_open("/dev/console", O_RDWR | O_NOCTTY, 0);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fd != i)
			sys_dup3((int)fd, i);
	if (fd > 2)
		sys_close((int)fd);
}

int has_entries(const char *dir)
{
	long fd = sys_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	char buf[512];
	long n = sys_getdents64((int)fd, buf, sizeof(buf));
	int found = 0;
	for (long off = 0; off < n && !found;) {
		struct dirent64_k *d = (struct dirent64_k *)(buf + off);
		off += d->reclen;
		found = !(d->name[0] == '.' && (!d->name[1] || (d->name[1] == '.' && !d->name[2])));
	}
	sys_close((int)fd);
	return found;
}

static void mount_all(void)
{
	for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
		const struct mnt *m = &mounts[i];
		if (m->image_first && has_entries(m->dir))
			continue;
		long e = sys_mkdir(m->dir, 0755);
		if (e < 0 && e != -EEXIST)
			die(125, "mkdir %s: %e", m->dir, (int)-e);
		e = sys_mount(m->type, m->dir, m->type, m->flags, m->data);
		if (e < 0)
			die(125, "mount %s on %s: %e", m->type, m->dir, (int)-e);
		if (i == 0)
			open_console();
	}
	/* What programs expect next to devtmpfs's nodes; existing ones are left alone. */
	sys_symlink("/proc/self/fd", "/dev/fd");
	sys_symlink("/proc/self/fd/0", "/dev/stdin");
	sys_symlink("/proc/self/fd/1", "/dev/stdout");
	sys_symlink("/proc/self/fd/2", "/dev/stderr");
}

static void write_file(const char *path, const char *text)
{
	long fd = sys_open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	long e = fd < 0 ? fd : write_all((int)fd, text, slen(text));
	if (fd >= 0)
		sys_close((int)fd);
	if (e < 0)
		die(125, "%s: %e", path, (int)-e);
}

/*
 * Gives the app the run's `text` at `path` when the image has no file there (a dangling
 * symlink counts as none) or when the launcher's settings (run.conf) replace the image's, as
 * docker's do. The image is never written: its file gets a tmpfs file bind-mounted over it,
 * as docker does; a missing file (or a symlink) is replaced only on a root in RAM, not on a
 * disk root that is the image itself (root_is_image), which is left as it is, with a warning.
 */
static void put_etc(const char *path, const char *text, int replace)
{
	static const char staged[] = "/dev/shm/.slimroot-etc";
	char t[1];
	int link = sys_readlink(path, t, sizeof(t)) >= 0, exists = sys_faccess(path, F_OK) == 0;
	if (exists && !replace)
		return;
	if (exists && !link) {
		write_file(staged, text);
		long e = sys_mount(staged, path, NULL, MS_BIND, NULL);
		sys_unlink(staged); /* the mount keeps the file */
		if (e < 0)
			die(125, "%s: %e", path, (int)-e);
	} else if (root_is_image) {
		warn("%s: left as the image has it (the root is the image itself, never written)", path);
	} else {
		if (link)
			sys_unlink(path);
		write_file(path, text);
	}
}

static void write_etc(const struct conf *c)
{
	char text[1024];
	if (!root_is_image)
		sys_mkdir("/etc", 0755);
	fmt(text, sizeof(text),
	    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
	    c->has_ip ? c->ip_text : "127.0.1.1", c->hostname);
	put_etc("/etc/hosts", text, c->run_hosts);
	if (c->ndns) {
		size_t n = 0;
		for (int i = 0; i < c->ndns; i++)
			n += fmt(text + n, sizeof(text) - n, "nameserver %s\n", c->dns[i]);
		put_etc("/etc/resolv.conf", text, c->run_resolv);
	}
}

/* execve, noting a file that exists yet gives ENOENT: its ELF or #! interpreter is missing. */
static long try_exec(const char *path, const struct conf *c, const char **no_interp)
{
	long e = sys_execve(path, c->argv, c->env);
	if (e == -ENOENT && sys_faccess(path, F_OK) == 0)
		*no_interp = path;
	return e;
}

/* In the child: execve argv[0], searching PATH as execvp does. Returns only with -errno. */
static long exec_app(const struct conf *c, const char **no_interp)
{
	const char *arg0 = c->argv[0];
	for (const char *p = arg0; *p; p++)
		if (*p == '/')
			return try_exec(arg0, c, no_interp);

	const char *path = conf_getenv(c, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	size_t alen = slen(arg0);
	long e = -ENOENT;
	int eacces = 0;
	for (const char *dir = path;;) {
		const char *end = dir;
		while (*end && *end != ':')
			end++;
		size_t dlen = (size_t)(end - dir);
		char buf[PATH_MAX_K];
		if (dlen + alen + 2 <= sizeof(buf)) {
			/* an empty PATH element means the working directory */
			if (!dlen)
				buf[dlen++] = '.';
			else
				memcpy(buf, dir, dlen);
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, arg0, alen + 1);
			long r = try_exec(buf, c, no_interp);
			if (r == -EACCES)
				eacces = 1; /* keep looking; report it if nothing better turns up */
			else if (r != -ENOENT && r != -ENOTDIR)
				return r;
		}
		if (!*end)
			break;
		dir = end + 1;
	}
	return eacces ? -EACCES : e;
}

/* mkdir -p, as root; errors surface at the chdir that follows. */
void mkdir_p(const char *path)
{
	char buf[PATH_MAX_K];
	size_t n = slen(path);
	if (n >= sizeof(buf))
		return;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || !buf[i]) {
			char keep = buf[i];
			buf[i] = 0;
			sys_mkdir(buf, 0755);
			buf[i] = keep;
		}
	}
}

static __attribute__((noreturn)) void child(const struct conf *c)
{
	static const unsigned long none = 0;
	const char *no_interp = NULL;
	long e;
	is_child = 1;
	sys_sigprocmask(SIG_SETMASK, &none, NULL);
	sys_setsid();
	record_child(); /* record mode: traced from here on */
	/* A missing working directory is created, as Docker (runc) does. */
	mkdir_p(c->workdir);
	if ((e = sys_setgroups(c->ngroups, c->groups)) < 0)
		die(125, "setgroups: %e", (int)-e);
	if ((e = sys_setgid(c->gid)) < 0)
		die(125, "setgid %u: %e", c->gid, (int)-e);
	if ((e = sys_setuid(c->uid)) < 0)
		die(125, "setuid %u: %e", c->uid, (int)-e);
	if ((e = sys_chdir(c->workdir)) < 0)
		die(125, "workdir %s: %e", c->workdir, (int)-e);

	e = -exec_app(c, &no_interp);
	const char *arg0 = c->argv[0];
	if (e == ENOENT && no_interp)
		die(127, "%s: %s exists but its ELF interpreter (or #! program) is missing", arg0,
		    no_interp);
	if (e == ENOENT || e == ENOTDIR)
		die(127, "%s: not found", arg0);
	die(e == EACCES || e == EPERM || e == ENOEXEC || e == EISDIR || e == ETXTBSY ? 126 : 125,
	    "%s: %e", arg0, (int)e);
}

/* Reaps every zombie and forwards signals until the app itself exits; returns its status. */
static int wait_app(long pid)
{
	for (;;) {
		int st;
		long r;
		while ((r = sys_wait4(-1, &st, WNOHANG | WALL)) > 0)
			if (!trace_stopped((int)r, st) && r == pid) /* exit code, or 128 + the signal that killed it */
				return st & 0x7f ? 128 + (st & 0x7f) : (st >> 8) & 0xff;
		if (r < 0 && r != -EINTR)
			die(125, "wait: %e", (int)-r);
		int info[32]; /* siginfo_t (128 bytes): si_signo, si_errno, si_code, ... */
		static const struct timespec_k now = {0, 0};
		/* Tracing, we sleep in trace_wait() instead, then take a pending signal if any. */
		long sig = sys_sigtimedwait(&waited, info, trace_wait() ? &now : NULL);
		/* A SIGINT from the kernel itself (si_code SI_KERNEL) is Ctrl-Alt-Del: the launcher's
		 * stop request, which the app gets as SIGTERM, as from `docker stop`. */
		if (sig == SIGINT && info[2] == SI_KERNEL)
			sig = SIGTERM;
		if (sig == SIGIO)
			control_read();
		else if (sig > 0 && sig != SIGCHLD)
			sys_kill((int)pid, (int)sig);
	}
}

__attribute__((noreturn, used)) void start_c(long *sp)
{
	static struct conf c; /* large (argv/env tables): .bss, not the stack */
	long e;
	(void)sp;
	t_init = now_us();
	/* Blocked from the start: a SIGTERM during boot waits for the app instead of vanishing. */
	sys_sigprocmask(SIG_BLOCK, &waited, NULL);
	if (sys_getpid() != 1) {
		warn("must run as PID 1 (the /init of an initramfs)");
		sys_exit(125);
	}
	sys_umask(022);
	read_key();
	/* Ctrl-Alt-Del then sends SIGINT to PID 1 (forwarded to the app) instead of resetting. */
	sys_reboot(REBOOT_CMD_CAD_OFF);

	mount_all();
	static char run_conf[32] = RUN_CONF;
	int on_disk = disk_root(run_conf, sizeof(run_conf));
	conf_defaults(&c);
	conf_read(&c, APP_CONF, 1, 0);
	conf_read(&c, run_conf, 0, 1);
	conf_read_cmdline(&c);
	if (!c.argc)
		die(125, "%s: no arg record, nothing to run", APP_CONF);

	if (!on_disk) /* a disk root's modules were loaded before it was found */
		load_modules(c.modules);
	if ((e = sys_sethostname(c.hostname, slen(c.hostname))) < 0)
		die(125, "hostname %s: %e", c.hostname, (int)-e);
	net_setup(&c);
	write_etc(&c);
	control_open(c.control);
	if (c.trace)
		trace_start(&waited);

	long pid = sys_fork();
	if (pid < 0)
		die(125, "fork: %e", (int)-pid);
	if (pid == 0)
		child(&c);
	t_app = now_us();
	record_attach(pid);
	int status = wait_app(pid);
	t_exit = now_us();
	finish(status);
}
