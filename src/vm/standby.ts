/**
 * `run APP.snap --standby` (docs/snapshot.md): the signal that resumes a standby and the line
 * that says it is ready for it, one fact each for run, its timeline, bench and Firecracker's
 * snapshot script.
 *
 * Not SIGUSR1: Node opens its debugger on localhost for one that comes before a listener is
 * set. One that comes before the CLI's is set ends the process (its VMM with it), as SIGUSR2
 * does by default: never a VM resumed nobody knows of.
 */
export const STANDBY_SIGNAL = "SIGUSR2";
/** Printed on stderr, alone on its line, once a standby is loaded: from then on the signal resumes it. */
export const STANDBY_LINE = `slimroot: standby: loaded and paused; ${STANDBY_SIGNAL} resumes it`;
