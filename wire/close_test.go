package wire

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestCloseCodesMatchTheDocs: docs/protocol.md's table of close codes
// lists exactly the codes of CloseCodes, in the same order.
func TestCloseCodesMatchTheDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []int
	for _, m := range regexp.MustCompile(`(?m)^\| (\d{4}) \| `).FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[1])
		documented = append(documented, n)
	}
	var table []int
	for _, c := range CloseCodes() {
		table = append(table, int(c.Code))
		if c.Meaning == "" || c.Then == "" {
			t.Errorf("close code %d has no meaning or action", c.Code)
		}
	}
	if !slices.Equal(documented, table) {
		t.Errorf("docs/protocol.md documents close codes %v; wire.CloseCodes has %v", documented, table)
	}
}

func TestCloseThen(t *testing.T) {
	for code, want := range map[int]Then{
		1001: ThenReconnectElsewhere, 1013: ThenReconnect, 4001: ThenRefresh, 4003: ThenStop,
		1006: ThenReconnect, -1: ThenReconnect,
	} {
		if got := CloseThen(code); got != want {
			t.Errorf("CloseThen(%d) = %q, want %q", code, got, want)
		}
	}
}
