/**
 * The layering docs/architecture.md promises, checked by `make lint` (`npx depcruise src`).
 * LAYERS is the one table: each folder of src/ and the folders it may import (besides itself and
 * the leaves). docs/architecture.md quotes it; test/layering.test.ts checks that the two agree
 * and that a crafted import breaking a rule fails.
 *
 * Type-only imports and lazy import()s count: a cycle of types is still two modules that cannot
 * be read apart.
 */

/** Folders every module may import; a leaf imports only other leaves. */
const LEAVES = ["util", "arch", "guest", "compress", "output"];

/** Data flows down this table: a folder imports only the folders on its row (and the leaves). */
const LAYERS = {
  tar: [],
  tree: ["tar"],
  elf: ["tree"],
  cpio: ["tree"],
  image: ["tar", "tree"],
  appconfig: ["image"],
  disk: ["cpio", "tree"],
  kmod: ["cpio", "elf", "tree"],
  source: ["cpio", "elf", "image", "tree"],
  minimize: ["appconfig", "elf", "tree"],
  pipeline: ["appconfig", "cpio", "disk", "elf", "image", "minimize", "source", "tree"],
  artifact: ["appconfig", "cpio", "disk", "elf", "tree"],
  inspect: ["appconfig", "artifact", "cpio", "disk", "image", "tree"],
  kernel: ["artifact", "disk", "elf", "kmod", "tree"],
  vm: ["appconfig", "artifact", "cpio", "disk", "kernel", "kmod", "tree"],
  // trace drives a whole build (the probed boot), so it alone of the stages imports pipeline/.
  trace: ["appconfig", "kernel", "minimize", "pipeline", "tree", "vm"],
  // publish puts images in registries and takes them back (slimroot's OCI form).
  publish: ["appconfig", "artifact", "image", "kernel"],
  bench: ["artifact", "inspect", "kernel", "source", "trace", "vm"],
  // snapshot boots through vm/ and waits on trace/'s probes; run resumes what it saves.
  snapshot: ["artifact", "trace", "vm"],
  cli: ["*"],
};

const alt = (names) => names.join("|");

/**
 * The magic-byte tables: "what is this file?" is asked in artifact/ (identify) only; compress/
 * decompresses by them (sniffedDecompressor, for inputs that are not images: layers, modules).
 */
const MAGIC_MODULES = ["src/artifact/kernel-magic.ts", "src/compress/magic.ts", "src/disk/magic.ts"];
const MAGIC_READERS = ["artifact", "compress"];

/** One rule per folder: what it may not import. */
const layerRules = Object.entries(LAYERS)
  .filter(([, allowed]) => !allowed.includes("*"))
  .map(([folder, allowed]) => ({
    name: `layer-${folder}`,
    comment: `src/${folder}/ imports only ${[...allowed, "the leaves"].join(", ")} (docs/architecture.md)`,
    severity: "error",
    from: { path: `^src/${folder}/` },
    to: { path: `^src/(?!(?:${alt([folder, ...allowed, ...LEAVES])})/)[^/]+/` },
  }));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "leaves-import-no-stage",
      comment: `a leaf (${LEAVES.join(", ")}) imports only leaves`,
      severity: "error",
      from: { path: `^src/(${alt(LEAVES)})/` },
      to: { path: "^src/", pathNot: `^src/(${alt(LEAVES)})/` },
    },
    {
      name: "magic-bytes-in-artifact",
      comment: `only ${MAGIC_READERS.join("/ and ")}/ import the magic-byte modules: everything else asks artifact/identify`,
      severity: "error",
      from: { path: "^src/", pathNot: `^src/(${alt(MAGIC_READERS)})/` },
      to: { path: `^(${alt(MAGIC_MODULES.map((m) => m.replace(/\./g, "\\.")))})$` },
    },
    {
      name: "cli-only-wires",
      comment: "nothing imports cli/: it sits on top and only wires options to the stages",
      severity: "error",
      from: { pathNot: "^src/cli/" },
      to: { path: "^src/cli/" },
    },
    {
      name: "unknown-folder",
      comment: "every folder of src/ has a row in LAYERS (.dependency-cruiser.cjs) or is a leaf",
      severity: "error",
      from: { path: `^src/(?!(?:${alt([...Object.keys(LAYERS), ...LEAVES])})/)[^/]+/` },
      to: {},
    },
    {
      name: "no-folder-cycles",
      comment: "no two folders import each other, through any path",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "no-module-cycles",
      comment: "no import cycle between modules, type-only imports included",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
  ],
  options: {
    // TypeScript 7 has no compiler API for dependency-cruiser; swc parses the sources.
    parser: "swc",
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "\\.test\\.ts$" },
  },
};
// For test/layering.test.ts, which checks docs/architecture.md against it; not enumerable, as
// dependency-cruiser refuses unknown keys.
Object.defineProperty(module.exports, "layers", { value: { LAYERS, LEAVES, MAGIC_MODULES, MAGIC_READERS } });
