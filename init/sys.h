/*
 * The kernel ABI slimroot-init uses, without a libc: syscall numbers, raw syscall entry for
 * x86_64 and aarch64, and the few constants and structs we pass to the kernel.
 *
 * Every wrapper returns the kernel's raw result: -errno (-4095..-1) on failure. There is no
 * global errno.
 */
#ifndef SLIMROOT_SYS_H
#define SLIMROOT_SYS_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
enum {
	NR_read = 0, NR_write = 1, NR_close = 3, NR_fcntl = 72, NR_lseek = 8, NR_mmap = 9, NR_munmap = 11,
	NR_rt_sigprocmask = 14, NR_ioctl = 16, NR_nanosleep = 35, NR_getpid = 39, NR_socket = 41,
	NR_clone = 56, NR_execve = 59, NR_wait4 = 61, NR_kill = 62, NR_chdir = 80, NR_umask = 95,
	NR_setuid = 105, NR_setgid = 106, NR_setsid = 112, NR_setgroups = 116,
	NR_rt_sigtimedwait = 128, NR_sync = 162, NR_mount = 165, NR_reboot = 169,
	NR_sethostname = 170, NR_init_module = 175, NR_getdents64 = 217, NR_exit_group = 231,
	NR_openat = 257, NR_mkdirat = 258, NR_unlinkat = 263, NR_symlinkat = 266,
	NR_readlinkat = 267, NR_faccessat = 269, NR_ppoll = 271, NR_signalfd4 = 289, NR_dup3 = 292,
	NR_fanotify_init = 300, NR_fanotify_mark = 301, NR_finit_module = 313, NR_chroot = 161,
	NR_statx = 332, NR_fchmodat = 268, NR_fchownat = 260, NR_pread64 = 17, NR_pipe2 = 293,
	NR_prctl = 157, NR_ptrace = 101, NR_clock_gettime = 228, NR_clock_settime = 227,
	/* only traced (record.c) */
	NR_open = 2, NR_stat = 4, NR_lstat = 6, NR_access = 21, NR_rename = 82, NR_mkdir = 83,
	NR_unlink = 87, NR_readlink = 89, NR_newfstatat = 262, NR_renameat = 264,
	NR_execveat = 322, NR_renameat2 = 316, NR_openat2 = 437, NR_faccessat2 = 439,
};
#define AUDIT_ARCH_NATIVE 0xc000003eu
#define O_DIRECTORY 0200000
#define O_LARGEFILE 0100000

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#elif defined(__aarch64__)
/* The asm-generic table. */
enum {
	NR_dup3 = 24, NR_fcntl = 25, NR_ioctl = 29, NR_mkdirat = 34, NR_unlinkat = 35, NR_symlinkat = 36,
	NR_mount = 40, NR_faccessat = 48, NR_chdir = 49, NR_openat = 56, NR_close = 57,
	NR_getdents64 = 61, NR_lseek = 62, NR_read = 63, NR_write = 64, NR_readlinkat = 78,
	NR_sync = 81, NR_exit_group = 94, NR_nanosleep = 101, NR_init_module = 105,
	NR_kill = 129, NR_rt_sigprocmask = 135, NR_rt_sigtimedwait = 137, NR_reboot = 142,
	NR_setgid = 144, NR_setuid = 146, NR_setsid = 157, NR_setgroups = 159,
	NR_sethostname = 161, NR_umask = 166, NR_getpid = 172, NR_socket = 198,
	NR_munmap = 215, NR_clone = 220, NR_execve = 221, NR_mmap = 222, NR_wait4 = 260,
	NR_finit_module = 273, NR_ppoll = 73, NR_signalfd4 = 74, NR_fanotify_init = 262,
	NR_fanotify_mark = 263, NR_chroot = 51, NR_statx = 291, NR_fchmodat = 53, NR_fchownat = 54,
	NR_pread64 = 67, NR_pipe2 = 59, NR_prctl = 167, NR_ptrace = 117, NR_clock_gettime = 113,
	NR_clock_settime = 112,
	/* only traced (record.c) */
	NR_newfstatat = 79, NR_renameat = 38, NR_execveat = 281, NR_renameat2 = 276,
	NR_openat2 = 437, NR_faccessat2 = 439,
};
#define AUDIT_ARCH_NATIVE 0xc00000b7u
#define O_DIRECTORY 040000
#define O_LARGEFILE 0400000

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory");
	return x0;
}

#else
#error "slimroot-init supports x86_64 and aarch64"
#endif

/*
 * `make check` compiles this header against the toolchain's <asm/unistd.h> to catch a wrong
 * number; the build itself needs no kernel headers.
 */
#ifdef SLIMROOT_CHECK_NR
#include <asm/unistd.h>
#define CHK(x) _Static_assert(NR_##x == __NR_##x, #x)
CHK(read); CHK(write); CHK(close); CHK(lseek); CHK(mmap); CHK(munmap); CHK(rt_sigprocmask);
CHK(ioctl); CHK(nanosleep); CHK(clock_gettime); CHK(clock_settime); CHK(getpid); CHK(socket); CHK(clone); CHK(execve); CHK(wait4);
CHK(kill); CHK(chdir); CHK(umask); CHK(setuid); CHK(setgid); CHK(setsid); CHK(setgroups);
CHK(rt_sigtimedwait); CHK(sync); CHK(mount); CHK(reboot); CHK(sethostname); CHK(init_module);
CHK(getdents64); CHK(exit_group); CHK(openat); CHK(mkdirat); CHK(unlinkat); CHK(symlinkat);
CHK(readlinkat); CHK(faccessat); CHK(dup3); CHK(finit_module); CHK(ppoll); CHK(signalfd4);
CHK(fanotify_init); CHK(fanotify_mark); CHK(fcntl); CHK(chroot); CHK(statx); CHK(fchmodat);
CHK(fchownat); CHK(pread64); CHK(pipe2); CHK(prctl); CHK(ptrace); CHK(newfstatat);
CHK(execveat); CHK(renameat2); CHK(openat2); CHK(faccessat2);
#if defined(__x86_64__)
CHK(open); CHK(stat); CHK(lstat); CHK(access); CHK(rename); CHK(mkdir); CHK(unlink);
CHK(readlink);
#endif
CHK(renameat);
#endif

/* A raw result that is an error (-4095..-1), as opposed to a value such as an address. */
#define SYS_ERR(r) ((unsigned long)(r) >= (unsigned long)-4095)

#define sys0(n) sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* errno values (identical on both architectures) */
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define EIO 5
#define ENOEXEC 8
#define EBADF 9
#define ECHILD 10
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define ENOTDIR 20
#define EISDIR 21
#define EINVAL 22
#define ETXTBSY 26
#define ENOSPC 28
#define EROFS 30
#define ENAMETOOLONG 36
#define ENOSYS 38
#define ELOOP 40
#define ENETUNREACH 101
#define ETIMEDOUT 110

#define AT_FDCWD -100
#define O_RDONLY 0
#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_EXCL 0200
#define O_NOCTTY 0400
#define O_NONBLOCK 04000
#define O_CLOEXEC 02000000
#define F_OK 0
#define F_GETFL 3
#define F_SETFL 4
#define SEEK_END 2

#define PROT_READ 1
#define MAP_PRIVATE 2

#define MS_RDONLY 1
#define MS_NOSUID 2
#define MS_NODEV 4
#define MS_NOEXEC 8
#define MS_REMOUNT 32
#define MS_BIND 4096
#define MS_MOVE 8192

#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGKILL 9
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGTERM 15
#define SI_KERNEL 0x80 /* si_code of signals the kernel sends itself (e.g. Ctrl-Alt-Del) */
#define SIGCHLD 17
#define SIGIO 29
#define SIG_BLOCK 0
#define SIG_SETMASK 2
#define SIGBIT(s) (1UL << ((s) - 1))

#define WNOHANG 1
#define WALL 0x40000000 /* __WALL: ptrace-attached threads too */

#define TCSBRK 0x5409 /* with arg 1: tcdrain() */
#define TCXONC 0x540a
#define TCOON 1 /* with TCXONC: resume output (tcflow) */

#define REBOOT_MAGIC1 0xfee1dead
#define REBOOT_MAGIC2 672274793
#define REBOOT_CMD_RESTART 0x01234567
#define REBOOT_CMD_POWER_OFF 0x4321fedc
#define REBOOT_CMD_CAD_OFF 0

#define DT_UNKNOWN 0
#define DT_DIR 4
#define DT_REG 8
#define DT_LNK 10

#define AF_INET 2
#define SOCK_DGRAM 2
#define SIOCADDRT 0x890b
#define SIOCGIFFLAGS 0x8913
#define SIOCSIFFLAGS 0x8914
#define SIOCSIFADDR 0x8916
#define SIOCSIFNETMASK 0x891c
#define SIOCGIFINDEX 0x8933
#define IFF_UP 0x1
#define IFF_RUNNING 0x40
#define RTF_UP 0x1
#define RTF_GATEWAY 0x2

/* fanotify (record mode, trace.c) */
#define FAN_CLASS_NOTIF 0
#define FAN_CLOEXEC 0x1
#define FAN_NONBLOCK 0x2
#define FAN_UNLIMITED_QUEUE 0x10
#define FAN_MARK_ADD 0x1
#define FAN_MARK_MOUNT 0x10
#define FAN_MARK_FILESYSTEM 0x100
#define FAN_OPEN 0x20
#define FAN_OPEN_EXEC 0x1000
#define FAN_Q_OVERFLOW 0x4000
#define FAN_ONDIR 0x40000000
#define SFD_NONBLOCK O_NONBLOCK
#define SFD_CLOEXEC O_CLOEXEC
#define POLLIN 1

struct fan_event_k {
	uint32_t event_len;
	uint8_t vers, reserved;
	uint16_t metadata_len;
	uint64_t mask;
	int32_t fd, pid;
};

/* ptrace and seccomp (record mode, record.c) */
#define SIGTRAP 5
#define SIGSTOP 19
#define SIGTSTP 20
#define SIGTTIN 21
#define SIGTTOU 22
#define PTRACE_CONT 7
#define PTRACE_SYSCALL 24
#define PTRACE_SEIZE 0x4206
#define PTRACE_INTERRUPT 0x4207
#define PTRACE_LISTEN 0x4208
#define PTRACE_GET_SYSCALL_INFO 0x420e
#define PTRACE_O_TRACESYSGOOD 0x1
#define PTRACE_O_TRACEFORK 0x2
#define PTRACE_O_TRACEVFORK 0x4
#define PTRACE_O_TRACECLONE 0x8
#define PTRACE_O_TRACEEXEC 0x10
#define PTRACE_O_TRACESECCOMP 0x80
#define PTRACE_EVENT_SECCOMP 7
#define PTRACE_EVENT_STOP 128
#define PTRACE_SYSCALL_INFO_ENTRY 1
#define PR_SET_SECCOMP 22
#define SECCOMP_MODE_FILTER 2
#define SECCOMP_RET_TRACE 0x7ff00000u
#define SECCOMP_RET_ALLOW 0x7fff0000u
#define AT_SYMLINK_NOFOLLOW 0x100

/* struct ptrace_syscall_info, entry and seccomp stops (the same layout up to args) */
struct syscall_info_k {
	uint8_t op, pad[3];
	uint32_t arch;
	uint64_t ip, sp, nr, args[6];
	uint32_t ret_data, pad2;
};

struct sock_filter_k {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};

struct sock_fprog_k {
	unsigned short len;
	const struct sock_filter_k *filter;
};

struct pollfd_k {
	int fd;
	short events, revents;
};

struct timespec_k {
	long sec, nsec;
};

/* struct statx: what the init reads of it, padded to its 256 bytes. */
#define STATX_OWNER_MODE 0x1a /* STATX_MODE | STATX_UID | STATX_GID */
#define AT_REMOVEDIR 0x200
struct statx_k {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode;
	char rest[226];
};

struct dirent64_k {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

struct sockaddr_in_k {
	unsigned short family, port;
	unsigned char addr[4];
	unsigned char zero[8];
};

/* struct ifreq: 16-byte name, then a 24-byte union (its largest member is struct ifmap). */
struct ifreq_k {
	char name[16];
	union {
		struct sockaddr_in_k addr;
		short flags;
		int ifindex;
		char pad[24];
	};
};

struct rtentry_k {
	unsigned long pad1;
	struct sockaddr_in_k dst, gateway, genmask;
	unsigned short flags;
	short pad2;
	unsigned long pad3;
	void *pad4;
	short metric;
	char *dev;
	unsigned long mtu, window;
	unsigned short irtt;
};

static inline long sys_read(int fd, void *b, size_t n) { return sys3(NR_read, fd, b, n); }
static inline long sys_write(int fd, const void *b, size_t n) { return sys3(NR_write, fd, b, n); }
static inline long sys_open(const char *p, int fl, int mode) { return sys4(NR_openat, AT_FDCWD, p, fl, mode); }
static inline long sys_close(int fd) { return sys1(NR_close, fd); }
static inline long sys_lseek(int fd, long off, int wh) { return sys3(NR_lseek, fd, off, wh); }
static inline long sys_mmap(void *a, size_t n, int prot, int fl, int fd, long off) { return sys6(NR_mmap, (long)a, (long)n, prot, fl, fd, off); }
static inline long sys_munmap(void *a, size_t n) { return sys2(NR_munmap, a, n); }
static inline long sys_ioctl(int fd, unsigned long req, void *arg) { return sys3(NR_ioctl, fd, req, arg); }
static inline long sys_faccess(const char *p, int mode) { return sys4(NR_faccessat, AT_FDCWD, p, mode, 0); }
static inline long sys_mkdir(const char *p, int mode) { return sys3(NR_mkdirat, AT_FDCWD, p, mode); }
static inline long sys_unlink(const char *p) { return sys3(NR_unlinkat, AT_FDCWD, p, 0); }
static inline long sys_rmdir(const char *p) { return sys3(NR_unlinkat, AT_FDCWD, p, AT_REMOVEDIR); }
static inline long sys_statx(const char *p, struct statx_k *st) { return sys5(NR_statx, AT_FDCWD, p, 0, STATX_OWNER_MODE, st); }
static inline long sys_chmod(const char *p, int mode) { return sys3(NR_fchmodat, AT_FDCWD, p, mode); }
static inline long sys_chown(const char *p, unsigned u, unsigned g) { return sys5(NR_fchownat, AT_FDCWD, p, u, g, 0); }
static inline long sys_symlink(const char *t, const char *p) { return sys3(NR_symlinkat, t, AT_FDCWD, p); }
static inline long sys_readlink(const char *p, char *b, size_t n) { return sys4(NR_readlinkat, AT_FDCWD, p, b, n); }
static inline long sys_getdents64(int fd, void *b, size_t n) { return sys3(NR_getdents64, fd, b, n); }
static inline long sys_dup3(int a, int b) { return sys3(NR_dup3, a, b, 0); }
static inline long sys_fcntl(int fd, int cmd, long arg) { return sys3(NR_fcntl, fd, cmd, arg); }
static inline long sys_chdir(const char *p) { return sys1(NR_chdir, p); }
static inline long sys_chroot(const char *p) { return sys1(NR_chroot, p); }
static inline long sys_mount(const char *src, const char *dst, const char *type, unsigned long fl, const void *data) { return sys5(NR_mount, src, dst, type, fl, data); }
static inline long sys_getpid(void) { return sys0(NR_getpid); }
static inline long sys_kill(int pid, int sig) { return sys2(NR_kill, pid, sig); }
static inline long sys_wait4(int pid, int *st, int opt) { return sys4(NR_wait4, pid, st, opt, 0); }
/* clone(SIGCHLD) with no new stack is fork(); aarch64 has no fork syscall. */
static inline long sys_fork(void) { return sys2(NR_clone, SIGCHLD, 0); }
static inline long sys_execve(const char *p, char *const *argv, char *const *envp) { return sys3(NR_execve, p, argv, envp); }
static inline __attribute__((noreturn)) void sys_exit(int code)
{
	for (;;)
		sys1(NR_exit_group, code);
}
static inline long sys_sigprocmask(int how, const unsigned long *set, unsigned long *old) { return sys4(NR_rt_sigprocmask, how, set, old, 8); }
static inline long sys_sigtimedwait(const unsigned long *set, void *info, const struct timespec_k *t) { return sys4(NR_rt_sigtimedwait, set, info, t, 8); }
static inline long sys_nanosleep(const struct timespec_k *t) { return sys2(NR_nanosleep, t, 0); }
#define CLOCK_MONOTONIC 1
static inline long sys_clock_gettime(int clk, struct timespec_k *t) { return sys2(NR_clock_gettime, clk, t); }
static inline long sys_clock_settime(int clk, const struct timespec_k *t) { return sys2(NR_clock_settime, clk, t); }
static inline long sys_setsid(void) { return sys0(NR_setsid); }
static inline long sys_setuid(unsigned id) { return sys1(NR_setuid, id); }
static inline long sys_setgid(unsigned id) { return sys1(NR_setgid, id); }
static inline long sys_setgroups(int n, const unsigned *g) { return sys2(NR_setgroups, n, g); }
static inline long sys_umask(int m) { return sys1(NR_umask, m); }
static inline long sys_sethostname(const char *n, size_t len) { return sys2(NR_sethostname, n, len); }
static inline long sys_socket(int dom, int type, int proto) { return sys3(NR_socket, dom, type, proto); }
static inline long sys_sync(void) { return sys0(NR_sync); }
static inline long sys_reboot(unsigned cmd) { return sys4(NR_reboot, REBOOT_MAGIC1, REBOOT_MAGIC2, cmd, 0); }
static inline long sys_finit_module(int fd, const char *params, int fl) { return sys3(NR_finit_module, fd, params, fl); }
static inline long sys_fanotify_init(unsigned fl, unsigned evfl) { return sys2(NR_fanotify_init, fl, evfl); }
static inline long sys_fanotify_mark(int fd, unsigned fl, uint64_t mask, const char *p) { return sys5(NR_fanotify_mark, fd, fl, mask, AT_FDCWD, p); }
static inline long sys_signalfd(const unsigned long *set, int fl) { return sys4(NR_signalfd4, -1, set, 8, fl); }
static inline long sys_ppoll(struct pollfd_k *f, unsigned n) { return sys5(NR_ppoll, f, n, 0, 0, 8); }
static inline long sys_pread(int fd, void *b, size_t n, long off) { return sys4(NR_pread64, fd, b, n, off); }
static inline long sys_pipe(int *fds) { return sys2(NR_pipe2, fds, O_CLOEXEC); }
static inline long sys_prctl(int op, long a, const void *b) { return sys3(NR_prctl, op, a, b); }
static inline long sys_ptrace(long req, int pid, long addr, long data) { return sys4(NR_ptrace, req, pid, addr, data); }
static inline long sys_init_module(const void *img, size_t n, const char *params) { return sys3(NR_init_module, img, n, params); }

#endif
