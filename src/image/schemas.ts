import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { UserError } from "../util/errors.js";

/**
 * The shape of every JSON document slimroot reads from an image source or from the user's
 * docker login, in one place. Documents are checked here once, when they are read, so the
 * code that uses them can trust their types, and bad input gets one line naming the file
 * (or reference) and the field, never "Cannot read properties of null".
 */

const DIGEST = "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$";
const strings = { type: "array", items: { type: "string" } };
const stringMap = { type: "object", additionalProperties: { type: "string" } };

const platform = {
  type: "object",
  required: ["architecture", "os"],
  properties: {
    architecture: { type: "string" },
    os: { type: "string" },
    variant: { type: "string" },
    "os.version": { type: "string" },
    "os.features": strings,
  },
};

/**
 * A content descriptor. `size` is required, as the OCI image spec says: it caps what is read
 * for the blob, so a descriptor without one would let a server send without limit.
 */
const descriptor = {
  type: "object",
  required: ["digest", "size"],
  properties: {
    mediaType: { type: "string" },
    digest: { type: "string", pattern: DIGEST },
    size: { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    urls: strings,
    annotations: stringMap,
    platform,
  },
};

export const SCHEMAS = {
  /** Any manifest-ish document before we know which kind it is. */
  manifestDocument: {
    type: "object",
    properties: { schemaVersion: { type: "integer" }, mediaType: { type: "string" } },
  },
  /** OCI image index / Docker manifest list, and an OCI layout's index.json. */
  index: {
    type: "object",
    required: ["manifests"],
    properties: {
      schemaVersion: { type: "integer" },
      mediaType: { type: "string" },
      manifests: { type: "array", items: descriptor },
      annotations: stringMap,
    },
  },
  /** OCI image manifest / Docker schema 2 manifest. */
  imageManifest: {
    type: "object",
    required: ["config", "layers"],
    properties: {
      schemaVersion: { type: "integer" },
      mediaType: { type: "string" },
      config: descriptor,
      layers: { type: "array", items: descriptor },
      annotations: stringMap,
    },
  },
  /** OCI / Docker image config: the fields slimroot uses. Entrypoint and Cmd may be a string (docker accepts one). */
  imageConfig: {
    type: "object",
    properties: {
      architecture: { type: "string" },
      os: { type: "string" },
      variant: { type: "string" },
      config: {
        type: ["object", "null"],
        properties: {
          Entrypoint: { type: ["array", "string", "null"], items: { type: "string" } },
          Cmd: { type: ["array", "string", "null"], items: { type: "string" } },
          Env: { type: ["array", "null"], items: { type: "string" } },
          WorkingDir: { type: "string" },
          User: { type: "string" },
          ExposedPorts: { type: ["object", "null"] },
        },
      },
    },
  },
  /** `docker save`'s manifest.json. */
  dockerArchiveManifest: {
    type: "array",
    minItems: 1,
    items: {
      type: "object",
      required: ["Config", "Layers"],
      properties: {
        Config: { type: "string" },
        RepoTags: { type: ["array", "null"], items: { type: "string" } },
        Layers: strings,
      },
    },
  },
  /** A registry token server's answer (docker's token spec and OAuth2). */
  tokenResponse: {
    type: "object",
    properties: {
      token: { type: "string" },
      access_token: { type: "string" },
      expires_in: { type: "number" },
      issued_at: { type: "string" },
      refresh_token: { type: "string" },
    },
  },
  /** ~/.docker/config.json, the parts about credentials. */
  dockerConfig: {
    type: "object",
    properties: {
      auths: {
        type: "object",
        additionalProperties: {
          type: "object",
          properties: {
            auth: { type: "string" },
            username: { type: "string" },
            password: { type: "string" },
            identitytoken: { type: "string" },
          },
        },
      },
      credsStore: { type: "string" },
      credHelpers: stringMap,
    },
  },
  /** What `docker-credential-NAME get` prints. */
  credentialHelperOutput: {
    type: "object",
    required: ["Secret"],
    properties: { Username: { type: "string" }, Secret: { type: "string" }, ServerURL: { type: "string" } },
  },
} as const;

export type DocumentKind = keyof typeof SCHEMAS;

export interface DescriptorDoc {
  mediaType?: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

/** The TypeScript type each schema guarantees. */
export interface Documents {
  manifestDocument: { schemaVersion?: number; mediaType?: string; [key: string]: unknown };
  index: { schemaVersion?: number; mediaType?: string; manifests: DescriptorDoc[] };
  imageManifest: {
    schemaVersion?: number;
    mediaType?: string;
    config: DescriptorDoc;
    layers: DescriptorDoc[];
  };
  imageConfig: {
    architecture?: string;
    os?: string;
    variant?: string;
    config?: {
      Entrypoint?: string[] | string | null;
      Cmd?: string[] | string | null;
      Env?: string[] | null;
      WorkingDir?: string;
      User?: string;
      ExposedPorts?: Record<string, unknown> | null;
    } | null;
  };
  dockerArchiveManifest: { Config: string; RepoTags?: string[] | null; Layers: string[] }[];
  tokenResponse: { token?: string; access_token?: string; expires_in?: number };
  dockerConfig: {
    auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
    credsStore?: string;
    credHelpers?: Record<string, string>;
  };
  credentialHelperOutput: { Username?: string; Secret: string };
}

/**
 * Options every compile of these schemas shares (schemas.test.ts uses them too). The schemas are
 * slimroot's own and constant: schemas.test.ts checks each against JSON Schema's meta-schema, so
 * a build does not compile that, nor optimize the generated code for documents of a few KiB:
 * the four schemas a build of an OCI layout reads took 64 ms to compile, now 24 (README).
 */
export const AJV_OPTIONS = { allErrors: false, allowUnionTypes: true, strict: true } as const;
const ajv = new Ajv({ ...AJV_OPTIONS, validateSchema: false, code: { optimize: false } });
const compiled = new Map<DocumentKind, ValidateFunction>();

function validator(kind: DocumentKind): ValidateFunction {
  let v = compiled.get(kind);
  if (!v) {
    v = ajv.compile(SCHEMAS[kind]);
    compiled.set(kind, v);
  }
  return v;
}

/** "/manifests/0/digest" -> "manifests[0].digest"; the root is "the document". */
function fieldName(pointer: string): string {
  if (!pointer) return "the document";
  return pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`))
    .join("");
}

function describe(e: ErrorObject): string {
  const field = fieldName(e.instancePath);
  switch (e.keyword) {
    case "required":
      return `${field} has no "${(e.params as { missingProperty: string }).missingProperty}"`;
    case "type":
      return `${field} must be ${String((e.params as { type: string | string[] }).type).replace(/,/g, " or ")}`;
    case "minItems":
      return `${field} is empty`;
    case "pattern":
      return `${field} is not a valid digest`;
    default:
      return `${field} ${e.message ?? "is invalid"}`;
  }
}

/** Checks an already-parsed value against the schema of `kind`; `what` names the file or reference. */
export function checkDocument<K extends DocumentKind>(kind: K, value: unknown, what: string): Documents[K] {
  const v = validator(kind);
  if (!v(value)) throw new UserError(`${what}: ${describe(v.errors![0]!)}`.replace(/\s*\n\s*/g, " "));
  return value as Documents[K];
}

/** Parses JSON and checks it against the schema of `kind`: one line naming `what` for either failure. */
export function readDocument<K extends DocumentKind>(
  kind: K,
  data: Buffer | string,
  what: string,
): Documents[K] {
  let value: unknown;
  try {
    value = JSON.parse(data.toString());
  } catch (err) {
    // V8's message can quote the input, and a docker config or helper output holds secrets:
    // say where, never what.
    const at = /at position (\d+)/.exec((err as Error).message)?.[1];
    throw new UserError(`${what}: invalid JSON${at ? ` (at byte ${at})` : ""}`);
  }
  return checkDocument(kind, value, what);
}
