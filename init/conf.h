/* /etc/slimroot/app.conf and run.conf (docs/app-config.md). */
#ifndef SLIMROOT_CONF_H
#define SLIMROOT_CONF_H

#define MAX_ARGS 4096
#define MAX_ENV 4096
#define MAX_GROUPS 64
#define MAX_DNS 3
#define MAX_VOLUMES 15

struct conf {
	char *argv[MAX_ARGS + 1]; /* NULL-terminated */
	int argc;
	char *env[MAX_ENV + 1]; /* NULL-terminated, one entry per NAME */
	int envc;
	const char *workdir, *hostname, *modules;
	const char *control; /* snapshot control channel (control.c), or NULL */
	unsigned uid, gid;
	unsigned groups[MAX_GROUPS];
	int ngroups;
	int has_ip, has_gateway;
	unsigned char ip[4], gateway[4];
	int prefix;
	const char *dns[MAX_DNS];
	int ndns;
	const char *ip_text; /* as written, for /etc/hosts */
	int trace;	     /* record mode: report the files the app opened (trace.c) */
	const char *root;    /* disk root (root.c): "FSTYPE OFFSET HEXID ro|rw" */
	const char *volumes[MAX_VOLUMES]; /* "FSTYPE OFFSET HEXID ro|rw PATH" */
	int nvolumes;
	/* The launcher (run.conf) set the network or name: its /etc files replace the image's. */
	int run_hosts, run_resolv;
};

/* Fills in the defaults, then applies `path`'s records. required: a missing file is fatal. */
void conf_defaults(struct conf *c);
void conf_read(struct conf *c, const char *path, int required, int is_run_conf);
/* Applies the records of `text` (modified in place and kept), named `path` in messages. */
void conf_parse(struct conf *c, char *text, const char *path, int is_run_conf);
/* Applies run.conf records given on the kernel command line as slimroot.conf=BASE64. */
void conf_read_cmdline(struct conf *c);
/* The value of NAME in the app's environment, or NULL. */
const char *conf_getenv(const struct conf *c, const char *name);

#endif
