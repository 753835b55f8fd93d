/**
 * `inspect --html` in a real headless Chromium (Debian's package, driven by playwright-core):
 * the page loads with no console errors, shows the right totals, draws one cell per file, and
 * with --against lists what was dropped. A screenshot lands in test/artifacts/.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { identify } from "../src/artifact/identify.js";
import { inspectArtifact } from "../src/inspect/inspect.js";
import { REPO, runCli } from "./support/cli.js";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(REPO, "test", "artifacts");

let work: string;
let browser: Browser | undefined;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-html-"));
});
after(async () => {
  await browser?.close();
  await rm(work, { recursive: true, force: true });
});

async function openPage(html: string, shot: string) {
  // Fails (not skips) without Chromium: `make test` installs Debian's chromium package.
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM}: not installed (Debian package chromium)`);
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Nothing may be fetched: the page is self-contained.
  page.on("request", (r) => {
    if (!r.url().startsWith("file:")) problems.push(`request: ${r.url()}`);
  });
  await page.goto(`file://${html}`);
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
  return { page, problems };
}

async function rootfs(): Promise<string> {
  const dir = join(work, "rootfs");
  await mkdir(join(dir, "usr/bin"), { recursive: true });
  await mkdir(join(dir, "srv/data"), { recursive: true });
  // Sizes within two orders of magnitude, so every file gets a cell of at least a pixel.
  await writeFile(join(dir, "usr/bin/app"), `#!/bin/sh\necho hi\n${"#".repeat(2000)}\n`, { mode: 0o755 });
  await writeFile(join(dir, "srv/data/big.bin"), Buffer.alloc(60_000, 1));
  await writeFile(join(dir, "srv/data/small.txt"), "x".repeat(4321));
  await writeFile(join(dir, "srv/data/<script>alert(1)<\\script>.txt"), "<".repeat(3000));
  return dir;
}

test("inspect --html: totals, one cell per file, reasons, no console errors", async () => {
  const dir = await rootfs();
  const image = join(work, "app.cpio.gz");
  const b = await runCli(["build", `dir:${dir}`, "--entrypoint", "/usr/bin/app", "-o", image]);
  assert.equal(b.code, 0, b.stderr);
  const html = join(work, "app.html");
  const r = await runCli(["inspect", image, "--html", html]);
  assert.equal(r.code, 0, r.stderr);
  const expected = await inspectArtifact(await identify(image), { why: "required" });
  const nonEmpty = expected.entries.filter((e) => (e.mode & 0o170000) === 0o100000 && e.size > 0).length;

  const { page, problems } = await openPage(html, "inspect-html.png");
  assert.deepEqual(problems, []);
  assert.match(
    (await page.textContent("#content-bytes")) ?? "",
    new RegExp(`\\(${expected.contentBytes} bytes\\)`),
  );
  assert.match(
    (await page.textContent("#archive-bytes")) ?? "",
    new RegExp(`\\(${expected.archiveBytes} bytes\\)`),
  );
  assert.equal((await page.textContent("#files"))?.trim(), String(expected.counts.files));
  assert.equal(await page.locator("#map .f").count(), nonEmpty);
  // The name with a tag in it is text, not markup.
  assert.equal(await page.locator("script").count(), 2);
  const cell = page.locator('#map .f[data-path="/srv/data/big.bin"]');
  assert.equal(await cell.getAttribute("data-size"), "60000");
  assert.equal(await cell.getAttribute("data-why"), "image (--minimize none)");
  await cell.hover();
  assert.match((await page.textContent("#tip")) ?? "", /srv\/data\/big\.bin.*60000 bytes/);
  assert.deepEqual(
    await page
      .locator("#legend [data-category]")
      .evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.category)),
    ["level", "slimroot"],
  );
  await page.close();
});

test("inspect --html --against: the source's size and what was dropped, largest first", async () => {
  const dir = join(work, "rootfs");
  const image = join(work, "dropped.cpio");
  const b = await runCli([
    "build",
    `dir:${dir}`,
    "--entrypoint",
    "/usr/bin/app",
    "--minimize",
    "none",
    "--drop",
    "/srv/**",
    "-o",
    image,
  ]);
  assert.equal(b.code, 0, b.stderr);
  const html = join(work, "dropped.html");
  const r = await runCli(["inspect", image, "--html", html, "--against", `dir:${dir}`]);
  assert.equal(r.code, 0, r.stderr);
  const { page, problems } = await openPage(html, "inspect-html-against.png");
  assert.deepEqual(problems, []);
  const rows = await page.locator("#dropped tbody tr, #dropped table tr:not(:first-child)").allTextContents();
  assert.equal(rows[0], "/srv/data/big.bin60000");
  assert.equal(rows[1], "/srv/data/small.txt4321");
  assert.match((await page.textContent("#dropped-bytes")) ?? "", /in 3 files/);
  assert.match((await page.textContent("#source-bytes")) ?? "", /in 4 files/);
  await page.close();
});

test("inspect --against without --html is one line, exit 1", async () => {
  const r = await runCli(["inspect", "x.cpio", "--against", "dir:/"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--against: only with --html/);
});
