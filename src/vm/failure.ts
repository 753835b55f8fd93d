/** Anything that kept the VM from running the app: reported in one line, exit 125. */
export class RunFailure extends Error {}
