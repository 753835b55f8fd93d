/**
 * The reasons in OUTPUT.why are sentences written by the minimizer; a picture needs a few
 * classes. Each class is matched by how its sentences start (see src/minimize/), first match wins.
 */
export const WHY_CATEGORIES = [
  { id: "app", label: "the app", starts: ["entrypoint", "named in the command line"] },
  {
    id: "closure",
    label: "ELF closure and links",
    starts: [
      "needed by",
      "interpreter of",
      "symlink",
      "target of",
      "ld.so",
      "in LD_PRELOAD",
      "in /etc/ld.so.preload",
    ],
  },
  { id: "traced", label: "traced", starts: ["traced", "trace:"] },
  { id: "rule", label: "a rule", starts: ["rule:"] },
  { id: "keep", label: "--keep", starts: ["--keep"] },
  { id: "add", label: "--add", starts: ["--add"] },
  { id: "level", label: "the level (none, safe, static)", starts: ["image (", "safe:", "static:"] },
  { id: "slimroot", label: "slimroot's init and config", starts: ["slimroot:"] },
  { id: "other", label: "other (no .why file, or parents)", starts: [] },
] as const;

export type WhyCategory = (typeof WHY_CATEGORIES)[number]["id"];

export function whyCategory(reason: string | undefined): WhyCategory {
  if (reason === undefined) return "other";
  for (const c of WHY_CATEGORIES) if (c.starts.some((s) => reason.startsWith(s))) return c.id;
  return "other";
}
