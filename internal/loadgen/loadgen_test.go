package loadgen_test

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/loadgen"
	"github.com/parley-chat/parley/internal/server"
)

// TestRunAgainstARealServer checks the load generator's own bookkeeping:
// against a real node every send is acked and delivered to every other
// member of its group.
func TestRunAgainstARealServer(t *testing.T) {
	ctx := context.Background()
	srv, err := server.Open(ctx, server.Config{DataDir: t.TempDir(), Argon2: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.Gateway().Shutdown(sctx)
		ts.Close()
		srv.Close()
	})
	res, err := loadgen.Run(ctx, loadgen.Config{
		Server: ts.URL, Users: 9, GroupSize: 4, Rate: 100, Duration: time.Second,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res)
	if res.Sent < 50 || res.Acked != res.Sent || res.Errors != 0 {
		t.Fatalf("sent %d, acked %d, errors %d: want every send acked", res.Sent, res.Acked, res.Errors)
	}
	if res.Delivered != res.ExpectedDeliveries {
		t.Fatalf("delivered %d, want %d", res.Delivered, res.ExpectedDeliveries)
	}
	if res.AckLatency.Max <= 0 || res.DeliveryLatency.P50 <= 0 {
		t.Fatalf("no latency measured: %+v", res)
	}
}
