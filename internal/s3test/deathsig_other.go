//go:build !linux

package s3test

import "os/exec"

// setDeathSignal does nothing here: only Linux kills a child when its
// parent dies. Main stops the server when the tests end.
func setDeathSignal(cmd *exec.Cmd) {}
