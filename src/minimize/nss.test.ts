import assert from "node:assert/strict";
import { test } from "node:test";
import { nsswitchServices } from "./nss.js";
import { minimizeTraced, tree } from "./testing.js";

test("nsswitch.conf's services: every word after a database, not actions or comments", () => {
  const text = [
    "# passwd: nis",
    "passwd:         files systemd",
    "hosts:          files mdns4_minimal [NOTFOUND=return] dns # myhostname",
    "netgroup: nis",
    "  ",
    "garbage without a colon",
  ].join("\n");
  assert.deepEqual([...nsswitchServices(text)].sort(), ["dns", "files", "mdns4_minimal", "nis", "systemd"]);
});

const LIB = "usr/lib/x86_64-linux-gnu";
// A module that defines its functions names them in its dynamic symbols; glibc 2.34's
// libnss_files.so.2 and libnss_dns.so.2 are stubs that define none.
const module = (service: string) => `\x7fELF...\0_nss_${service}_getpwnam_r\0`;
const STUB = "\x7fELF...\0__cxa_finalize\0GLIBC_PRIVATE\0";

async function kept(spec: Parameters<typeof tree>[0]): Promise<Map<string, string>> {
  return minimizeTraced(tree({ "usr/bin/app": "app", ...spec }), { paths: ["usr/bin/app"], lookups: true });
}

test("NSS modules: the services nsswitch.conf names, not stubs glibc has built in, not libresolv", async () => {
  const reasons = await kept({
    "etc/nsswitch.conf": "passwd: compat\nhosts: files mdns4_minimal [NOTFOUND=return] dns\n",
    [`${LIB}/libnss_compat.so.2`]: module("compat"),
    [`${LIB}/libnss_mdns4_minimal.so.2`]: module("mdns4_minimal"),
    [`${LIB}/libnss_files.so.2`]: STUB,
    [`${LIB}/libnss_dns.so.2`]: STUB,
    [`${LIB}/libnss_nis.so.2`]: module("nis"),
    [`${LIB}/libresolv.so.2`]: "\x7fELF...",
  });
  assert.match(
    reasons.get(`${LIB}/libnss_compat.so.2`) ?? "(dropped)",
    /NSS module for "compat", which \/etc\/nsswitch.conf names/,
  );
  assert.match(reasons.get(`${LIB}/libnss_mdns4_minimal.so.2`) ?? "(dropped)", /"mdns4_minimal"/);
  for (const p of ["libnss_files.so.2", "libnss_dns.so.2", "libnss_nis.so.2", "libresolv.so.2"])
    assert.ok(!reasons.has(`${LIB}/${p}`), `${p} dropped`);
});

test("NSS modules without nsswitch.conf: glibc's defaults (files, dns, compat), through their links", async () => {
  const reasons = await kept({
    "lib/x86_64-linux-gnu/libnss_files-2.31.so": module("files"),
    "lib/x86_64-linux-gnu/libnss_files.so.2": { link: "libnss_files-2.31.so" },
    "lib/x86_64-linux-gnu/libnss_compat.so.2": module("compat"),
    "lib/x86_64-linux-gnu/libnss_nis.so.2": module("nis"),
  });
  for (const p of ["libnss_files-2.31.so", "libnss_files.so.2", "libnss_compat.so.2"])
    assert.match(reasons.get(`lib/x86_64-linux-gnu/${p}`) ?? "(dropped)", /a default of glibc's/, p);
  assert.ok(!reasons.has("lib/x86_64-linux-gnu/libnss_nis.so.2"), "nis is no default");
});
