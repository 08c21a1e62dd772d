package gateway_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/pgtest"
)

// TestMain fails the run if a goroutine of the gateway outlives the tests:
// every node is shut down in its test's cleanup, and Shutdown must wait for
// all of them.
func TestMain(m *testing.M) {
	code := pgtest.Run(m) // drops the PostgreSQL database of a cluster run
	if code == 0 {
		if leaked := gatewayGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func gatewayGoroutines() string {
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "parley/internal/gateway.") && !strings.Contains(g, "gateway_test.gatewayGoroutines") {
				leaked = append(leaked, g)
			}
		}
		stacks = strings.Join(leaked, "\n\n")
		if stacks == "" {
			return ""
		}
	}
	return stacks
}
