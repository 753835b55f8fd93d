/**
 * What a build records beside its image, and the host paths it reads (so that src/output/
 * can refuse an output that is one of them). Where and how outputs are written: src/output/.
 */
import { splitArchiveRef } from "../image/docker-archive.js";
import { splitLayoutRef } from "../image/oci-layout.js";
import type { InputPath } from "../output/output.js";
import { parseSourceRef } from "../source/schemes.js";

export { whyPath } from "../output/output.js";

/** The host paths an image is read from: its source (not a registry) and the --add sources. */
export function imageInputs(o: {
  source: string;
  additions: readonly { source: string; dest: string }[];
}): InputPath[] {
  const ref = parseSourceRef(o.source);
  const paths: InputPath[] = [];
  if (ref.transport === "oci") paths.push({ path: splitLayoutRef(ref.value).path, what: ref.text });
  else if (ref.transport === "docker-archive")
    paths.push({ path: splitArchiveRef(ref.value).path, what: ref.text });
  else if (ref.transport !== "docker") paths.push({ path: ref.value, what: ref.text });
  for (const a of o.additions) paths.push({ path: a.source, what: `--add ${a.source}:${a.dest}` });
  return paths;
}
