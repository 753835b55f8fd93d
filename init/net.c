/* Network setup with the classic ioctls: smaller than rtnetlink and enough for one address. */
#include "init.h"

static void ifr_set_addr(struct ifreq_k *r, const unsigned char a[4])
{
	memset(&r->addr, 0, sizeof(r->addr));
	r->addr.family = AF_INET;
	memcpy(r->addr.addr, a, 4);
}

static void if_ioctl(int s, const char *dev, unsigned long req, struct ifreq_k *r, const char *what)
{
	memcpy(r->name, dev, slen(dev) + 1);
	long e = sys_ioctl(s, req, r);
	if (e < 0)
		die(125, "%s: %s: %e", dev, what, (int)-e);
}

static void if_up(int s, const char *dev)
{
	struct ifreq_k r = {0};
	if_ioctl(s, dev, SIOCGIFFLAGS, &r, "get flags");
	r.flags |= IFF_UP | IFF_RUNNING;
	if_ioctl(s, dev, SIOCSIFFLAGS, &r, "set up");
}

/*
 * A driver sets eth0's carrier a moment after probing it (virtio-net: from a work item), and
 * packets sent before that are dropped. Wait up to 2 s for it. SIOCGIFFLAGS cannot tell:
 * IFF_LOWER_UP does not fit its 16-bit flags, and IFF_RUNNING follows the operstate, which
 * the kernel's linkwatch may update up to a second late. No carrier is a warning, not an
 * error: the app may not need the network at once.
 */
static void wait_carrier(void)
{
	for (int i = 0; i < 400; i++) {
		char c = 0;
		long fd = sys_open("/sys/class/net/eth0/carrier", O_RDONLY | O_CLOEXEC, 0);
		if (fd >= 0) {
			sys_read((int)fd, &c, 1);
			sys_close((int)fd);
		}
		if (c == '1')
			return;
		sleep_ms(5);
	}
	warn("eth0: no carrier after 2 s, continuing");
}

void net_setup(const struct conf *c)
{
	long s = sys_socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0);
	if (s < 0)
		die(125, "socket: %e", (int)-s);
	/* The kernel gives lo 127.0.0.1/8 itself when it comes up. */
	if_up((int)s, "lo");

	if (c->has_ip) {
		/*
		 * The driver (a module just loaded, or a built-in one) registers eth0 as it probes
		 * the device; give a slow probe up to 5 s.
		 */
		struct ifreq_k r = {0};
		for (int i = 0;; i++) {
			memcpy(r.name, "eth0", 5);
			long e = sys_ioctl((int)s, SIOCGIFINDEX, &r);
			if (e >= 0)
				break;
			if (e != -ENODEV || i == 500)
				die(125, "eth0: %e", (int)-e);
			sleep_ms(10);
		}
		ifr_set_addr(&r, c->ip);
		if_ioctl((int)s, "eth0", SIOCSIFADDR, &r, "set address");
		unsigned char mask[4] = {0};
		for (int bit = 0; bit < c->prefix; bit++)
			mask[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
		ifr_set_addr(&r, mask);
		if_ioctl((int)s, "eth0", SIOCSIFNETMASK, &r, "set netmask");
		if_up((int)s, "eth0");
		wait_carrier();
	}

	if (c->has_gateway) {
		struct rtentry_k rt = {0};
		rt.dst.family = rt.genmask.family = rt.gateway.family = AF_INET;
		memcpy(rt.gateway.addr, c->gateway, 4);
		rt.flags = RTF_UP | RTF_GATEWAY;
		long e = sys_ioctl((int)s, SIOCADDRT, &rt);
		if (e < 0 && e != -EEXIST)
			die(125, "default route via %u.%u.%u.%u: %e", c->gateway[0], c->gateway[1],
			    c->gateway[2], c->gateway[3], (int)-e);
	}
	sys_close((int)s);
}
