import { createHash, type Hash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { type Duplex, Readable, Transform } from "node:stream";
import { text } from "node:stream/consumers";
import {
  APP_CONFIG_PATH,
  type AppConfig,
  type ConfigOverrides,
  encodeAppConfig,
  resolveAppConfig,
} from "../appconfig/appconfig.js";
import { type Arch, archOf } from "../arch/arch.js";
import { type Compression, compressor, compressorVersion } from "../compress/compress.js";
import { NEWC_MAX_FILE_SIZE } from "../cpio/newc.js";
import { cpioWarnings, writeCpio } from "../cpio/writer.js";
import { addHostBinary } from "../image/host-binary.js";
import { formatPlatform, hostPlatform, platformMatches } from "../image/platform.js";
import { type OpenOptions, openLayeredSource, parseSourceRef } from "../image/source.js";
import type { ImageConfig, Platform } from "../image/types.js";
import { treeClosureResolver } from "../minimize/closure.js";
import type { MinimizeLevel } from "../minimize/minimize.js";
import { minimize } from "../minimize/minimize.js";
import { applyLayer } from "../tree/flatten.js";
import { addHostPath } from "../tree/host.js";
import { normalizeImagePath, parentOf } from "../tree/path.js";
import { bufferContent, Spool } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { writeFilesAtomically } from "../util/atomic-file.js";
import { UserError } from "../util/errors.js";
import { initBinaryPath } from "./init-binary.js";
import { checkOutput, imageInputs, WHY_HEADER, whyPath } from "./output.js";

export { MINIMIZE_LEVELS, type MinimizeLevel } from "../minimize/minimize.js";

export interface HostAddition {
  source: string;
  dest: string;
}

export interface BuildOptions {
  source: string;
  output: string;
  compression: Compression;
  minimize: MinimizeLevel;
  platform?: Platform;
  insecure?: boolean;
  overrides: ConfigOverrides;
  additions: HostAddition[];
  /** Owner for --add'ed files; root when absent. */
  addOwner?: { uid: number; gid: number };
  /** Mtimes later than this are clamped to it. */
  epoch: number;
  /** --keep / --drop globs (absolute image paths). */
  keep?: string[];
  drop?: string[];
  /** Missing libraries fail the build. */
  strict?: boolean;
  /** Image paths recorded by `slimroot trace`, for --minimize trace. */
  profile?: string[];
  /**
   * Checks the finished image (a complete temp file next to the output) before it replaces
   * the output; throwing leaves any existing output as it was.
   */
  verify?: (image: string) => Promise<void>;
  onProgress?: OpenOptions["progress"];
  onLayer?: (index: number, count: number, name: string) => void;
  /** Bytes of the archive written so far, against the file content it will hold. */
  onWrite?: (p: { done: number; total: number }) => void;
}

export interface BuildResult {
  output: string;
  bytes: number;
  files: number;
  arch: Arch;
  app: AppConfig;
  digest?: string;
  /** Why each path is in the image (also written next to the output as OUTPUT.why). */
  reasons: Map<string, string>;
  warnings: string[];
}

/** The image path of our init: the kernel runs /init from an initramfs. */
export const INIT_PATH = "init";

/** An image flattened into a tree, with its resolved run settings. Dispose the spool after use. */
export interface LoadedImage {
  tree: Tree;
  spool: Spool;
  app: AppConfig;
  arch: Arch;
  digest?: string;
  /** Image paths that came from --add. */
  added: string[];
  /** Found while loading (a bin: source's missing libraries). */
  warnings: string[];
}

export type LoadOptions = Pick<
  BuildOptions,
  "source" | "platform" | "insecure" | "overrides" | "additions" | "addOwner" | "onProgress" | "onLayer"
>;

/** source -> flattened tree (+ --add files) -> resolved app config. */
export async function loadImage(o: LoadOptions): Promise<LoadedImage> {
  const ref = parseSourceRef(o.source);
  const platform = o.platform ?? hostPlatform();
  const spool = await Spool.create();
  try {
    const tree = new Tree();
    let imageConfig: ImageConfig = {};
    let architecture = platform.architecture;
    let digest: string | undefined;
    let overrides = o.overrides;
    const warnings: string[] = [];
    if (ref.transport === "dir") {
      await addHostPath(tree, ref.value, "/", { layer: 0 });
    } else if (ref.transport === "bin") {
      const added = await addHostBinary(tree, ref.value, o.platform);
      architecture = added.arch;
      overrides = { ...overrides, entrypoint: overrides.entrypoint ?? added.entrypoint };
      warnings.push(...added.warnings);
    } else {
      const image = await openLayeredSource(ref, { platform, insecure: o.insecure, progress: o.onProgress });
      imageConfig = image.config;
      digest = image.digest;
      if (image.platform) {
        if (o.platform && !platformMatches(o.platform, image.platform)) {
          throw new UserError(
            `${ref.text}: no image for platform ${formatPlatform(o.platform)}; available: ${formatPlatform(image.platform)}`,
          );
        }
        architecture = image.platform.architecture;
      }
      for (const [i, layer] of image.layers.entries()) {
        o.onLayer?.(i, image.layers.length, layer.name);
        await applyLayer(tree, await layer.open(), i, layer.name, spool, {
          maxFileSize: { bytes: NEWC_MAX_FILE_SIZE, format: "newc cpio" },
        });
      }
    }
    const arch = archOf(architecture);
    const added: string[] = [];
    for (const add of o.additions) {
      await addHostPath(tree, resolvePath(add.source), add.dest, {
        owner: o.addOwner ?? { uid: 0, gid: 0 },
      }).catch((err) => {
        throw err instanceof UserError
          ? new UserError(`--add ${add.source}:${add.dest}: ${err.message}`)
          : err;
      });
      for (const { path } of tree.walk(normalizeImagePath(add.dest))) added.push(path);
    }
    const app = resolveAppConfig(imageConfig, overrides, {
      passwd: await readImageText(tree, "etc/passwd"),
      group: await readImageText(tree, "etc/group"),
    });
    return { tree, spool, app, arch, added, warnings, ...(digest ? { digest } : {}) };
  } catch (err) {
    await spool.dispose();
    throw err;
  }
}

/**
 * source -> flattened tree -> selection (minimize) -> slimroot's files -> cpio -> compressor
 * -> output file, plus OUTPUT.why saying why each path is in.
 */
export async function build(o: BuildOptions): Promise<BuildResult> {
  await checkOutput(o.output, imageInputs(o));
  const image = await loadImage(o);
  const { tree, app, arch } = image;
  try {
    const { reasons, warnings: minimizeWarnings } = await minimize(tree, {
      level: o.minimize,
      app,
      closure: treeClosureResolver(tree, arch, app.env),
      profile: o.profile,
      added: image.added,
      keep: o.keep ?? [],
      drop: o.drop ?? [],
      epoch: o.epoch,
    });
    const warnings = [...image.warnings, ...minimizeWarnings, ...cpioWarnings(tree)];
    if (o.strict && warnings.length) {
      const more = warnings.length > 1 ? ` (and ${warnings.length - 1} more)` : "";
      throw new UserError(`--strict: ${warnings[0]}${more}`);
    }
    addOwnFile(tree, APP_CONFIG_PATH, Buffer.from(encodeAppConfig(app)), 0o644, o.epoch);
    addOwnFile(tree, INIT_PATH, await readFile(initBinaryPath(arch)), 0o755, o.epoch);
    for (const { path } of tree.walk()) {
      if (!reasons.has(path))
        reasons.set(path, path === "" ? "image root" : "slimroot: guest init and app config");
    }

    const files = reasons.size;
    const archive = writeCpio(tree, { clampMtime: o.epoch });
    const cpioHash = createHash("sha256");
    const stages: Duplex[] = [hashTap(cpioHash), compressor(o.compression, arch)];
    if (o.onWrite) stages.unshift(progressCounter(contentBytes(tree), o.onWrite));
    const header = {
      [WHY_HEADER.compressor]: await compressorVersion(o.compression, arch),
      // Known once the image is written, when the .why's turn comes.
      [WHY_HEADER.cpioSha256]: () => cpioHash.digest("hex"),
    };
    // The image and its .why are replaced together or not at all.
    const [bytes] = await writeFilesAtomically(
      [
        { target: o.output, source: archive, transforms: stages },
        { target: whyPath(o.output), source: () => Readable.from([encodeWhy(tree, reasons, header)]) },
      ],
      o.verify ? (tmps) => o.verify!(tmps[0]!) : undefined,
    );
    return {
      output: o.output,
      bytes: bytes!,
      files,
      arch,
      app,
      reasons,
      warnings,
      ...(image.digest ? { digest: image.digest } : {}),
    };
  } finally {
    await image.spool.dispose();
  }
}

/** Bytes of file content in the tree, each hard-linked inode once. */
function contentBytes(tree: Tree): number {
  const seen = new Set<unknown>();
  let total = 0;
  for (const { inode } of tree.walk()) {
    if (inode.content && !seen.has(inode)) total += inode.content.size;
    seen.add(inode);
  }
  return total;
}

/** Passes bytes through into `hash`. */
function hashTap(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

/** Passes bytes through, reporting the running count (capped at `total`) a few times a second. */
function progressCounter(total: number, report: (p: { done: number; total: number }) => void): Transform {
  let done = 0;
  let last = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      const now = Date.now();
      if (now - last > 100) {
        last = now;
        report({ done: Math.min(done, total), total });
      }
      cb(null, chunk);
    },
    flush(cb) {
      report({ done: total, total });
      cb();
    },
  });
}

/** "path<TAB>reason" lines in the image's own order. */
function encodeWhy(
  tree: Tree,
  reasons: Map<string, string>,
  header: Record<string, string | (() => string)>,
): string {
  const lines = ["# slimroot why v1: image path, tab, why it is in"];
  for (const [k, v] of Object.entries(header)) lines.push(`# ${k}: ${typeof v === "function" ? v() : v}`);
  for (const { path } of tree.walk()) lines.push(`/${path}\t${reasons.get(path) ?? "?"}`);
  return `${lines.join("\n")}\n`;
}

/** A regular file of the tree as text (following no links), or undefined. */
export async function readImageText(tree: Tree, path: string): Promise<string | undefined> {
  const node = tree.get(normalizeImagePath(path));
  if (node?.inode.kind !== "file" || !node.inode.content) return undefined;
  return text(node.inode.content.open());
}

/** Adds one of slimroot's own files (root-owned, stamped with the build epoch). */
function addOwnFile(tree: Tree, path: string, data: Buffer, mode: number, epoch: number): void {
  const { node: parent, blocked } = tree.ensureDir(parentOf(path), 1_000_001);
  if (!parent) throw new UserError(`cannot add /${path}: /${blocked} in the image is not a directory`);
  tree.set(path, {
    inode: { kind: "file", mode, uid: 0, gid: 0, mtime: epoch, content: bufferContent(data) },
    layer: 1_000_001,
  });
}
