import { UserError } from "../../util/errors.js";

/** A parsed `docker://` reference, normalised the way docker normalises it. */
export interface Reference {
  /** Host (and port) to talk to, e.g. "registry-1.docker.io" or "127.0.0.1:5000". */
  registry: string;
  /** Repository path, e.g. "library/nginx". */
  repository: string;
  /** Tag; "latest" when neither a tag nor a digest was given. */
  tag?: string;
  /** "sha256:<hex>"; when present it wins over the tag for fetching. */
  digest?: string;
}

export const DOCKER_HUB = "registry-1.docker.io";
/** Names users write for Docker Hub; the API itself lives at DOCKER_HUB. */
const HUB_ALIASES = new Set(["docker.io", "index.docker.io", DOCKER_HUB]);

const PREFIX = "docker://";
// Grammar from the distribution reference package, written out here.
const DOMAIN_PART = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_RE = new RegExp(
  `^(?:${DOMAIN_PART}(?:\\.${DOMAIN_PART})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?$`,
);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const MAX_NAME = 255;

export function isDockerHub(registry: string): boolean {
  return HUB_ALIASES.has(registry);
}

/** Parses `[docker://]host[:port]/repo/name[:tag][@sha256:...]`; errors name the reference. */
export function parseReference(text: string): Reference {
  const bad = (why: string) => new UserError(`${displayRef(text)}: invalid image reference: ${why}`);
  const rest = text.startsWith(PREFIX) ? text.slice(PREFIX.length) : text;
  if (rest === "") throw bad("empty");

  let name = rest;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    name = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) {
      throw bad(
        ANY_DIGEST_RE.test(digest) ? `unsupported digest ${digest} (only sha256)` : `bad digest ${digest}`,
      );
    }
  }

  let tag: string | undefined;
  const colon = name.lastIndexOf(":");
  // A colon before the last slash is a registry port, not a tag.
  if (colon > name.lastIndexOf("/")) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad(`bad tag "${tag}"`);
  }

  // Like docker: the first component is a registry only if it looks like a host.
  let registry = DOCKER_HUB;
  let repository = name;
  const slash = name.indexOf("/");
  if (slash >= 0) {
    const first = name.slice(0, slash);
    if (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase()) {
      if (!DOMAIN_RE.test(first)) throw bad(`bad registry host "${first}"`);
      registry = isDockerHub(first.toLowerCase()) ? DOCKER_HUB : first;
      repository = name.slice(slash + 1);
    }
  }
  if (repository === "") throw bad("missing repository name");
  for (const part of repository.split("/")) {
    if (!PATH_COMPONENT_RE.test(part)) {
      const hint = part !== part.toLowerCase() ? " (must be lowercase)" : "";
      throw bad(`bad repository name component "${part}"${hint}`);
    }
  }
  if (registry === DOCKER_HUB && !repository.includes("/")) repository = `library/${repository}`;
  if (repository.length > MAX_NAME) throw bad(`repository name longer than ${MAX_NAME} characters`);

  if (!tag && !digest) tag = "latest";
  const ref: Reference = { registry, repository };
  if (tag) ref.tag = tag;
  if (digest) ref.digest = digest;
  return ref;
}

/**
 * A repository path on `registry` as a flag names it (`--mount-from REPO`): no host, tag or
 * digest, normalised as a reference would be (`nginx` is `library/nginx` on Docker Hub).
 */
export function parseRepository(text: string, registry: string, flag: string): string {
  const bad = (why: string) => new UserError(`${flag} ${text}: ${why}`);
  if (/[:@]/.test(text)) throw bad("a repository path on the same registry, without a host, tag or digest");
  let r: Reference;
  try {
    r = parseReference(`${registry}/${text}`);
  } catch (err) {
    throw bad((err as Error).message.replace(/^.*: invalid image reference: /, ""));
  }
  return r.repository;
}

/** The canonical `docker://host/repo[:tag][@digest]` form; parseReference gives it back unchanged. */
export function formatReference(ref: Reference): string {
  let out = `${PREFIX}${ref.registry}/${ref.repository}`;
  if (ref.tag) out += `:${ref.tag}`;
  if (ref.digest) out += `@${ref.digest}`;
  return out;
}

/** The reference as the user wrote it, with the `docker://` prefix, for messages. */
export function displayRef(text: string): string {
  return text.startsWith(PREFIX) ? text : `${PREFIX}${text}`;
}
