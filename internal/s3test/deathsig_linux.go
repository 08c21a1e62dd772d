package s3test

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill weed if the test process dies without
// stopping it (a test binary killed at its timeout, say).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
