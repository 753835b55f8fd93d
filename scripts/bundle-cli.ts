// Part of `npm run build`, after tsc: replaces dist/cli/main.js with one file holding the CLI
// and the packages it imports. Node 20 spent about 0.2 s of CPU resolving, reading and compiling
// some hundred modules (ours, ajv's, commander's) on every run before a build did any work; one
// file is read and parsed once, its functions compiled when first called. Commands stay lazy:
// a dynamic import() becomes a module initialised on first use. tsc has checked the types.
//   node --import tsx scripts/bundle-cli.ts   (from the repository; esbuild strips the types)
import { chmodSync } from "node:fs";
import { build } from "esbuild";

const outfile = "dist/cli/main.js";
await build({
  entryPoints: ["src/cli/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning",
  // Bundled CommonJS packages (commander, ajv) require Node's own modules: give them `require`.
  banner: {
    js: 'import { createRequire as slimrootRequire } from "node:module";\nconst require = slimrootRequire(import.meta.url);',
  },
});
chmodSync(outfile, 0o755);
