/**
 * Firecracker's published API description (`shared/firecracker/firecracker.yaml`, Swagger 2.0)
 * as a JSON-schema validator for whole config files (`firecracker --config-file`). Read from
 * the project's `shared` directory, which is not part of the project: it is looked for beside
 * the repository and its parents (`../shared` from a checkout in /work/main, `../../shared`
 * from a worktree), never copied in.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { parse } from "yaml";
import { REPO } from "./cli.js";

/** `shared/firecracker` next to the repository or one of its parents, if there is one. */
export function sharedFirecrackerDir(): string | undefined {
  let dir = REPO;
  for (let i = 0; i < 8; i++) {
    const candidate = join(dirname(dir), "shared", "firecracker");
    if (existsSync(join(candidate, "firecracker.yaml"))) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

export const NO_SHARED =
  "Firecracker's schema is absent (no shared/firecracker/firecracker.yaml beside the repository)";

/**
 * The config file's top-level keys and the definitions they hold, from the schema's own
 * `FullVmConfiguration` (what Firecracker's GET /vm/config returns: the config file's shape).
 */
function fileSchema(definitions: Record<string, Record<string, unknown>>): object {
  const full = definitions.FullVmConfiguration as { properties: Record<string, unknown> };
  return {
    type: "object",
    required: ["boot-source"],
    additionalProperties: false,
    properties: full.properties,
  };
}

/**
 * Firecracker's config structs reject unknown fields (serde `deny_unknown_fields`), which the
 * Swagger text does not say: every object definition is closed here, so a misspelt key fails.
 */
function closeObjects(definitions: Record<string, Record<string, unknown>>): void {
  for (const d of Object.values(definitions)) {
    if (d.type === "object" && d.properties && d.additionalProperties === undefined)
      d.additionalProperties = false;
  }
}

/** Firecracker reads `null` as an absent optional field (serde `Option`): drop nulls first. */
export function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (v && typeof v === "object")
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== null)
        .map(([k, x]) => [k, withoutNulls(x)]),
    );
  return v;
}

export interface ConfigValidator {
  /** Error lines (instance path and message); empty when the config is valid. */
  errors(config: unknown): string[];
}

/** The schema's definitions (objects closed) and an Ajv that reads them. */
function schemaOf(dir: string) {
  const api = parse(readFileSync(join(dir, "firecracker.yaml"), "utf8")) as {
    definitions: Record<string, Record<string, unknown>>;
  };
  closeObjects(api.definitions);
  // Swagger's `example` is an annotation; `format: int64` is a size, not a checkable format.
  const ajv = new Ajv({ allErrors: true, validateFormats: false });
  ajv.addKeyword("example");
  return { definitions: api.definitions, ajv };
}

function validatorOf(validate: ReturnType<Ajv["compile"]>): ConfigValidator {
  return {
    errors(config) {
      if (validate(withoutNulls(config))) return [];
      return (validate.errors ?? []).map((e: ErrorObject) => `${e.instancePath || "/"} ${e.message}`);
    },
  };
}

export function firecrackerValidator(dir: string): ConfigValidator {
  const { definitions, ajv } = schemaOf(dir);
  return validatorOf(
    ajv.compile({
      $id: "config-file",
      ...fileSchema(definitions),
      // The definitions' $refs ("#/definitions/X") resolve against this document.
      definitions,
    }),
  );
}

/** A validator for one API request body: the schema's definition `name` (objects closed, as above). */
export function definitionValidator(dir: string, name: string): ConfigValidator {
  const { definitions, ajv } = schemaOf(dir);
  return validatorOf(ajv.compile({ $id: name, $ref: `#/definitions/${name}`, definitions }));
}
