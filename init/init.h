/* The parts of slimroot-init, in the order PID 1 runs them (init.c). */
#ifndef SLIMROOT_INIT_H
#define SLIMROOT_INIT_H

#include "conf.h"
#include "lib.h"

/* modules.c: returns how many modules it loaded. */
int load_modules(const char *dir);
/* net.c: lo always; eth0, default route when configured. Failures are fatal. */
void net_setup(const struct conf *c);
/* The forked child sets this (lib.c): die() then exits instead of ending the VM. */
extern int is_child;

#endif
