/* Small freestanding helpers: memory and strings, a bump allocator, one-line messages. */
#ifndef SLIMROOT_LIB_H
#define SLIMROOT_LIB_H

#include <stdarg.h>
#include <stddef.h>

#include "sys.h"

#define PATH_MAX_K 4096

void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t slen(const char *s);
int streq(const char *a, const char *b);
/* s without `prefix` when s starts with it, else NULL. */
const char *after(const char *s, const char *prefix);
int endswith(const char *s, const char *suffix);

/* Memory that lives until the VM ends; running out is fatal (status 125). */
void *alloc(size_t n);
char *sdup(const char *s, size_t n);
/* a + b + c joined, in fresh memory. */
char *join3(const char *a, const char *b, const char *c);

/*
 * A tiny printf: %s (string), %d (int), %u (unsigned), %e (a positive errno as text).
 * Always NUL-terminates; returns the length written.
 */
size_t fmt(char *buf, size_t cap, const char *f, ...);
size_t vfmt(char *buf, size_t cap, const char *f, va_list ap);
/* Writes all of it, retrying short writes. */
long write_all(int fd, const char *p, size_t n);
/* One line on stderr (the console): "slimroot-init: <message>". */
void warn(const char *f, ...);
/* warn(), then end the VM reporting `status` (see finish() in init.c). */
__attribute__((noreturn)) void die(int status, const char *f, ...);
__attribute__((noreturn)) void finish(int status);

void sleep_ms(long ms);
/*
 * Runs fn(arg) in a child process and waits for it at most `ms`: for kernel calls that may
 * never return (a module's init, draining a stuck UART). Returns fn's result (0 or -errno)
 * or -ETIMEDOUT, leaving the child behind.
 */
long bounded_call(long (*fn)(const void *), const void *arg, int ms);

#endif
