// Part of `npm run build`, after tsc: makes dist/cli/ the built CLI, two CommonJS files.
// - slimroot.cjs: the CLI (src/cli/main.ts) and the packages it imports, one script. Node 20
//   spent about 0.2 s of CPU resolving, reading and compiling some hundred modules (ours,
//   ajv's, commander's) on every run before a build did any work; one file is read once.
//   Commands stay lazy: a dynamic import() becomes a module initialised on first use, and as
//   CommonJS the Node modules it imports are required then too, not all at start as ESM does.
// - main.js: the entry (package.json's bin, src/cli/entry.ts), which runs slimroot.cjs from
//   V8's code cache (util/code-cache.ts): CommonJS, as is the whole folder (its package.json),
//   since Node starts a CommonJS entry faster than an ES module's.
// tsc's own files for src/cli/ are removed: nothing runs them, and they are ES modules.
// tsc has checked the types.
//   node --import tsx scripts/bundle-cli.ts   (from the repository; esbuild strips the types)
import { chmodSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type BuildOptions, build } from "esbuild";

const dir = "dist/cli";
for (const name of readdirSync(dir)) if (/\.(c?js|map)$/.test(name)) rmSync(join(dir, name));
writeFileSync(join(dir, "package.json"), `${JSON.stringify({ type: "commonjs" })}\n`);

const common: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "warning",
};

// The CLI is run by entry.ts as a script, whose first line is its wrapper's: no #! line.
const cli = await build({
  ...common,
  entryPoints: ["src/cli/main.ts"],
  write: false,
  outfile: join(dir, "slimroot.cjs"),
  // What import.meta.url says in an ES module (init-binary.ts, progress.ts): this file's URL.
  // The banner goes above esbuild's "use strict", so it brings its own: an ES module is strict.
  define: { "import.meta.url": "__slimrootModuleUrl" },
  banner: {
    js: '"use strict";\nvar __slimrootModuleUrl = require("node:url").pathToFileURL(__filename).href;',
  },
});
for (const out of cli.outputFiles) writeFileSync(out.path, out.text.replace(/^#![^\n]*\n/, ""));

const entry = join(dir, "main.js");
await build({ ...common, entryPoints: ["src/cli/entry.ts"], outfile: entry });
chmodSync(entry, 0o755);
