import { readFile } from "node:fs/promises";
import { resolve as resolvePath } from "node:path";
import { text } from "node:stream/consumers";
import {
  APP_CONFIG_PATH,
  type AppConfig,
  type ConfigOverrides,
  encodeAppConfig,
  resolveAppConfig,
} from "../appconfig/appconfig.js";
import { type Arch, archOf } from "../arch/arch.js";
import type { Compression } from "../compress/compress.js";
import { INIT_PATH, initBinaryPath } from "../guest/init-binary.js";
import { GUEST_MOUNTS } from "../guest/layout.js";
import { formatPlatform, hostPlatform, platformMatches } from "../image/platform.js";
import type { Platform } from "../image/types.js";
import { treeClosureResolver } from "../minimize/closure.js";
import type { MinimizeLevel, TracedProfile } from "../minimize/minimize.js";
import { minimize } from "../minimize/minimize.js";
import { checkOutput } from "../output/output.js";
import { encodeWhy } from "../output/why.js";
import { openSource } from "../source/schemes.js";
import type { OpenOptions } from "../source/source.js";
import { dpkgOwners } from "../tree/dpkg.js";
import { addHostPath } from "../tree/host.js";
import { checkNames } from "../tree/names.js";
import { normalizeImagePath, parentOf } from "../tree/path.js";
import { bufferContent, Spool } from "../tree/spool.js";
import { dirInode, SLIMROOT_LAYER, Tree } from "../tree/tree.js";
import { Budget, type FormatLimits } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { requireTools } from "../util/tools.js";
import { FORMATS, type ImageFormat, type ImageWriter } from "./formats.js";
import { imageInputs } from "./output.js";

export { MINIMIZE_LEVELS, type MinimizeLevel } from "../minimize/minimize.js";

export interface HostAddition {
  source: string;
  dest: string;
}

export interface BuildOptions {
  source: string;
  output: string;
  /** What to write (default cpio); see ./formats.ts. */
  format?: ImageFormat;
  /** ext4: the image size in bytes (default: content plus a margin). */
  sizeBytes?: number;
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
  /** cpio: one archive per source layer, then --add's, then slimroot's (cpio/parts.ts). */
  layers?: boolean;
  /** What `slimroot trace` recorded, for --minimize trace. */
  profile?: TracedProfile;
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
  /** The image as written (metadata only: its file contents are gone with the spool). */
  tree: Tree;
}

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
> & { limits?: FormatLimits };

/** source -> flattened tree (+ --add files) -> resolved app config. */
export async function loadImage(o: LoadOptions): Promise<LoadedImage> {
  const platform = o.platform ?? hostPlatform();
  const image = await openSource(o.source, {
    platform,
    ...(o.platform ? { requested: o.platform } : {}),
    insecure: o.insecure,
    progress: o.onProgress,
  });
  if (image.platform && o.platform && !platformMatches(o.platform, image.platform)) {
    throw new UserError(
      `${o.source}: no image for platform ${formatPlatform(o.platform)}; available: ${formatPlatform(image.platform)}`,
    );
  }
  const architecture = image.platform?.architecture ?? platform.architecture;
  // One budget for everything read into the tree: every layer, then the --add files.
  const tree = new Tree(new Budget(undefined, o.limits));
  const spool = await Spool.create();
  try {
    for (const [index, layer] of image.layers.entries()) {
      o.onLayer?.(index, image.layers.length, layer.name);
      await layer.apply(tree, { index, spool });
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
    const app = resolveAppConfig(image.config, o.overrides, {
      passwd: await readImageText(tree, "etc/passwd"),
      group: await readImageText(tree, "etc/group"),
    });
    const { warnings, digest } = image;
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
  const format: ImageWriter = FORMATS[o.format ?? "cpio"];
  await checkOutput(o.output, imageInputs(o), { directory: format.directory });
  const what = format.compressed ? `build --compress ${o.compression}` : `build --format ${o.format}`;
  requireTools(what, format.tools(o.compression));
  const image = await loadImage({ ...o, limits: format.limits });
  const { tree, app, arch } = image;
  try {
    // --layers splits by package (cpio/parts.ts) by the dpkg database, which minimizing drops.
    const owners = o.layers ? await dpkgOwners(tree) : undefined;
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
    const warnings = [...image.warnings, ...minimizeWarnings, ...format.warnings(tree)];
    if (o.strict && warnings.length) {
      const more = warnings.length > 1 ? ` (and ${warnings.length - 1} more)` : "";
      throw new UserError(`--strict: ${warnings[0]}${more}`);
    }
    addOwnFile(tree, APP_CONFIG_PATH, Buffer.from(encodeAppConfig(app)), 0o644, o.epoch);
    addOwnFile(tree, INIT_PATH, await readFile(initBinaryPath(arch)), 0o755, o.epoch);
    if (format.mountPoints) for (const dir of DISK_MOUNT_POINTS) addOwnDir(tree, dir, o.epoch);
    for (const { path } of tree.walk()) {
      if (!reasons.has(path))
        reasons.set(
          path,
          path === ""
            ? "image root"
            : DISK_MOUNT_POINTS.includes(path)
              ? "slimroot: mount point on a disk root"
              : "slimroot: guest init and app config",
        );
    }

    // What the format cannot hold is refused here, for every format the same way, before
    // its writer writes a byte.
    checkNames(tree, format.names);
    const files = reasons.size;
    const bytes = await format.write(tree, {
      output: o.output,
      epoch: o.epoch,
      compression: o.compression,
      arch,
      source: o.source,
      why: (header) =>
        encodeWhy(header, whyEntries(tree, reasons), o.minimize === "trace" ? o.profile?.missing : undefined),
      ...(o.verify ? { verify: o.verify } : {}),
      ...(o.onWrite ? { onWrite: o.onWrite } : {}),
      ...(o.sizeBytes !== undefined ? { sizeBytes: o.sizeBytes } : {}),
      ...(o.layers ? { layers: true, ...(owners ? { owners } : {}) } : {}),
    });
    return {
      output: o.output,
      bytes,
      files,
      arch,
      app,
      reasons,
      warnings,
      tree,
      ...(image.digest ? { digest: image.digest } : {}),
    };
  } finally {
    await image.spool.dispose();
  }
}

/** Each path of the tree with its reason, in the image's own order. */
function* whyEntries(tree: Tree, reasons: Map<string, string>): Iterable<[string, string]> {
  for (const { path } of tree.walk()) yield [path, reasons.get(path) ?? "?"];
}

/** A regular file of the tree as text (following no links), or undefined. */
export async function readImageText(tree: Tree, path: string): Promise<string | undefined> {
  const node = tree.get(normalizeImagePath(path));
  if (node?.inode.kind !== "file" || !node.inode.content) return undefined;
  return text(node.inode.content.open());
}

/** Where the init mounts the API filesystems and scratch tmpfs on a disk root (init/root.c). */
const DISK_MOUNT_POINTS = [...GUEST_MOUNTS];

/** A directory the init needs, unless the image has one (or something else) there. */
function addOwnDir(tree: Tree, path: string, epoch: number): void {
  if (tree.get(path)) return;
  tree.set(path, { inode: { ...dirInode(), mtime: epoch }, children: new Map(), layer: SLIMROOT_LAYER });
}

/** Adds one of slimroot's own files (root-owned, stamped with the build epoch). */
function addOwnFile(tree: Tree, path: string, data: Buffer, mode: number, epoch: number): void {
  const { node: parent, blocked } = tree.ensureDir(parentOf(path), SLIMROOT_LAYER);
  if (!parent) throw new UserError(`cannot add /${path}: /${blocked} in the image is not a directory`);
  tree.set(path, {
    inode: { kind: "file", mode, uid: 0, gid: 0, mtime: epoch, content: bufferContent(data) },
    layer: SLIMROOT_LAYER,
  });
}
