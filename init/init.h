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
/* The forked child sets this (lib.c): die() then exits instead of ending the VM. */
extern int is_child;

#endif
