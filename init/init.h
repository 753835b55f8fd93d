/* The parts of slimroot-init, in the order PID 1 runs them (init.c). */
#ifndef SLIMROOT_INIT_H
#define SLIMROOT_INIT_H

#include "conf.h"
#include "lib.h"

/* modules.c: returns how many modules it loaded. */
int load_modules(const char *dir);
/* net.c: lo always; eth0, default route when configured. Failures are fatal. */
void net_setup(const struct conf *c);
/*
 * trace.c, record mode: trace_start() before the app starts; trace_wait() blocks until a
 * signal is pending, recording file events meanwhile (0: not tracing, wait as usual);
 * trace_report() prints what was recorded (finish() calls it before the exit report).
 */
void trace_start(const unsigned long *sigs);
int trace_wait(void);
void trace_report(void);
/* trace.c: adds a record to the set (n < 0: counts one lost). */
void trace_add(const char *p, long n);
/*
 * record.c, the syscall recorder of record mode: record_start() with trace_start();
 * record_child() in the app's process before it drops root; record_attach() in PID 1 after
 * the fork. trace_stopped() takes a wait status: 1 when it was a tracee's stop (handled).
 */
void record_start(void);
void record_child(void);
void record_attach(long pid);
int trace_stopped(int tid, int st);
/* "seccomp" or "ptrace" (every call stops) once recording, else NULL: for the report. */
const char *record_mode(void);
/*
 * root.c: with a `root` record in run.conf, finds the disk by its identity bytes, mounts it
 * (read-only ones under a tmpfs overlay), mounts the volumes, moves /dev, /proc, /sys, /tmp
 * and /run onto it and makes it the root. Returns 0 when there is no disk root; else 1, with
 * `run_conf` set to a path that still reads the initramfs's run.conf.
 */
int disk_root(char *run_conf, size_t cap);
/* Before the VM ends: volumes and a read-write root remounted read-only (clean on disk). */
void disk_finish(void);
/* root.c: the root is the disk image itself (read-write, or read-only without overlayfs),
 * not RAM over it: the init writes nothing there. */
extern int root_is_image;
/* control.c: the snapshot control channel (run.conf `control PATH`); control_read() on SIGIO. */
void control_open(const char *path);
void control_read(void);
/* init.c: 1 when DIR is a directory holding anything besides . and .. */
int has_entries(const char *dir);
/* mkdir -p, as root (init.c). */
void mkdir_p(const char *path);
/* The forked child sets this (lib.c): die() then exits instead of ending the VM. */
extern int is_child;

#endif
