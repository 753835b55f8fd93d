/**
 * Firecracker's side of `slimroot snapshot` (docs/snapshot.md): the request bodies of its API
 * (PATCH /vm, PUT /snapshot/create, PUT /snapshot/load, as firecracker.yaml defines them) and
 * a script that makes and resumes a snapshot where Firecracker and KVM exist. Firecracker
 * needs KVM, which this project's machines cannot give a guest: nothing here was run on a
 * real Firecracker. Firecracker has no virtio-serial, so the init's freeze/resume handshake
 * (control.ts) is not there: a resumed guest gets a new CRNG from Firecracker's VMGenID
 * (x86_64, Firecracker >= 1.9, a kernel with CONFIG_VMGENID) and keeps the clock it had.
 */
import { shellQuote } from "../util/shell.js";
import { STANDBY_LINE, STANDBY_SIGNAL } from "./standby.js";

export const FC_STATE_FILE = "vm.state";
export const FC_MEMORY_FILE = "vm.mem";

/** PATCH /vm: pause before saving. */
export const pauseBody = () => ({ state: "Paused" as const });
/** PATCH /vm: a standby's resume, once its signal came. */
export const resumeBody = () => ({ state: "Resumed" as const });

/** PUT /snapshot/create: a full snapshot, state and memory in two files. */
export function snapshotCreateBody(dir: string) {
  return {
    snapshot_type: "Full" as const,
    snapshot_path: `${dir}/${FC_STATE_FILE}`,
    mem_file_path: `${dir}/${FC_MEMORY_FILE}`,
  };
}

/**
 * PUT /snapshot/load: resumed at once, or left paused for a standby (`resume: false`, as `run
 * --standby` does with QEMU); `tap`: this resume's own host device for eth0.
 */
export function snapshotLoadBody(dir: string, tap?: string, resume = true) {
  return {
    snapshot_path: `${dir}/${FC_STATE_FILE}`,
    mem_backend: { backend_type: "File" as const, backend_path: `${dir}/${FC_MEMORY_FILE}` },
    resume_vm: resume,
    ...(tap ? { network_overrides: [{ iface_id: "eth0", host_dev_name: tap }] } : {}),
  };
}

/**
 * snapshot.sh: `snapshot.sh make PROBE-COMMAND` boots vm.json with an API socket, waits until
 * the probe command succeeds, pauses and saves; `snapshot.sh resume [TAP]` starts a fresh
 * Firecracker from the saved files (each resume its own tap); `snapshot.sh standby [TAP]`
 * loads them paused, says so in run --standby's line and resumes on the same signal.
 */
export function snapshotScript(dir: string): string {
  const q = (s: string) => shellQuote([s]);
  const create = JSON.stringify(snapshotCreateBody(dir));
  const load = JSON.stringify(snapshotLoadBody(dir));
  const loadPaused = JSON.stringify(snapshotLoadBody(dir, undefined, false));
  const signal = STANDBY_SIGNAL.replace(/^SIG/, "");
  return `#!/bin/sh
# Made by slimroot snapshot --vmm firecracker: needs firecracker, curl and /dev/kvm.
set -eu
dir=${q(dir)}
api() { curl --fail --silent --show-error --unix-socket "$sock" -X "$1" "http://localhost$2" -H 'Content-Type: application/json' -d "$3"; }
wait_sock() { i=0; while [ ! -S "$sock" ]; do i=$((i+1)); [ $i -lt 500 ] || { echo "no API socket" >&2; exit 1; }; sleep 0.01; done; }
case "\${1:-}" in
make)
  probe=\${2:?usage: snapshot.sh make PROBE-COMMAND}
  sock="$dir/make.sock"; rm -f "$sock"
  firecracker --api-sock "$sock" --config-file "$dir/vm.json" & fc=$!
  trap 'kill $fc 2>/dev/null' EXIT
  wait_sock
  until sh -c "$probe"; do sleep 0.1; done
  api PATCH /vm ${q(JSON.stringify(pauseBody()))}
  api PUT /snapshot/create ${q(create)}
  echo "saved: $dir/${FC_STATE_FILE} $dir/${FC_MEMORY_FILE}"
  ;;
resume|standby)
  sock="$dir/resume-$$.sock"; rm -f "$sock"
  go=0; trap 'go=1' ${signal}
  firecracker --api-sock "$sock" & fc=$!
  wait_sock
  body=${q(load)}
  [ "$1" = resume ] || body=${q(loadPaused)}
  if [ -n "\${2:-}" ]; then body=$(printf '%s' "$body" | sed "s/}$/,\\"network_overrides\\":[{\\"iface_id\\":\\"eth0\\",\\"host_dev_name\\":\\"$2\\"}]}/"); fi
  api PUT /snapshot/load "$body"
  if [ "$1" = standby ]; then
    echo ${q(STANDBY_LINE)} >&2
    while [ "$go" = 0 ]; do sleep 0.01; done
    api PATCH /vm ${q(JSON.stringify(resumeBody()))}
  fi
  wait $fc
  ;;
*) echo "usage: snapshot.sh make PROBE-COMMAND | resume [TAP] | standby [TAP]" >&2; exit 2 ;;
esac
`;
}
