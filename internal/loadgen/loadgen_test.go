package loadgen_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
	"github.com/parley-chat/parley/internal/pgtest"
	"github.com/parley-chat/parley/internal/testnode"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRunAgainstARealServer checks the load generator's own bookkeeping:
// against a real node, and against a cluster with the users spread over
// its nodes, every send is acked and delivered to every other member of
// its group.
func TestRunAgainstARealServer(t *testing.T) {
	for name, start := range map[string]func(t *testing.T) *testnode.Nodes{
		"one node": func(t *testing.T) *testnode.Nodes { return testnode.Start(t) },
		"cluster":  func(t *testing.T) *testnode.Nodes { return testnode.StartCluster(t, 3) },
	} {
		t.Run(name, func(t *testing.T) {
			set := start(t)
			var servers []string
			for _, n := range set.Nodes {
				servers = append(servers, n.URL)
			}
			res, err := loadgen.Run(context.Background(), loadgen.Config{
				Servers: servers, Users: 9, GroupSize: 4, Rate: 100, Duration: time.Second,
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
			if len(servers) > 1 && res.CrossNodeDelivered == 0 {
				t.Fatal("no delivery crossed nodes")
			}
		})
	}
}
