package webpush

import (
	"net/netip"
	"testing"
)

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		raw      string
		insecure bool
		want     string // canonical form; "" = refused
	}{
		// The push services browsers use.
		{"https://fcm.googleapis.com/fcm/send/dXJ0:APA91b", false, "https://fcm.googleapis.com/fcm/send/dXJ0:APA91b"},
		{"https://updates.push.services.mozilla.com/wpush/v2/gAAAAABm", false, "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABm"},
		{"https://web.push.apple.com/QGuQyavXutnMH", false, "https://web.push.apple.com/QGuQyavXutnMH"},
		{"https://wns2-par02p.notify.windows.com/w/?token=BQYAAA%2b", false, "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA%2b"},
		// Canonical origin: lower case, no default port, no fragment.
		{"https://FCM.GoogleAPIs.com:443/fcm/send/x#frag", false, "https://fcm.googleapis.com/fcm/send/x"},
		{"https://8.8.8.8/x", false, "https://8.8.8.8/x"},
		{"https://[2606:4700::1111]/x", false, "https://[2606:4700::1111]/x"},

		{"http://fcm.googleapis.com/x", false, ""},
		{"https://fcm.googleapis.com:8443/x", false, ""},
		{"https://u:p@fcm.googleapis.com/x", false, ""},
		{"https:fcm.googleapis.com/x", false, ""},
		{"/relative", false, ""},
		{"https://localhost/x", false, ""},
		{"https://LOCALHOST./x", false, ""},
		{"https://a.b.localhost/x", false, ""},
		{"https://printer.local/x", false, ""},
		{"https://db.internal/x", false, ""},
		{"https://nas.home.arpa/x", false, ""},
		{"https://intranet/x", false, ""},
		{"https://127.0.0.1/x", false, ""},
		{"https://127.1/x", false, ""},
		{"https://0x7f.1/x", false, ""},
		{"https://2130706433/x", false, ""},
		{"https://0.0.0.0/x", false, ""},
		{"https://10.0.0.1/x", false, ""},
		{"https://172.16.5.4/x", false, ""},
		{"https://192.168.1.1/x", false, ""},
		{"https://100.64.0.1/x", false, ""},
		{"https://169.254.169.254/latest/meta-data/", false, ""},
		{"https://[::1]/x", false, ""},
		{"https://[fe80::1]/x", false, ""},
		{"https://[fd00::1]/x", false, ""},
		{"https://[::ffff:10.0.0.1]/x", false, ""},
		{"https://[64:ff9b::a00:1]/x", false, ""},
		{"https://[2002:7f00:1::]/x", false, ""},

		// Tests and local stand-ins.
		{"http://127.0.0.1:8080/wpush/v2/x", true, "http://127.0.0.1:8080/wpush/v2/x"},
		{"https://localhost:8443/x", true, "https://localhost:8443/x"},
		{"http://[::1]:9/x", true, "http://[::1]:9/x"},
		{"ftp://127.0.0.1/x", true, ""},
	}
	for _, tt := range tests {
		got, err := checkEndpoint(tt.raw, tt.insecure)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("checkEndpoint(%q, %v) = %s, want refused", tt.raw, tt.insecure, got)
		case tt.want != "" && err != nil:
			t.Errorf("checkEndpoint(%q, %v): %v", tt.raw, tt.insecure, err)
		case tt.want != "" && got.String() != tt.want:
			t.Errorf("checkEndpoint(%q, %v) = %s, want %s", tt.raw, tt.insecure, got, tt.want)
		}
	}
}

func TestIsPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8":            true,
		"142.250.74.42":      true,
		"2a00:1450:4007::a":  true,
		"64:ff9b::808:808":   true, // NAT64 of 8.8.8.8
		"127.0.0.1":          false,
		"10.255.0.1":         false,
		"172.31.255.255":     false,
		"192.168.0.1":        false,
		"169.254.1.1":        false,
		"100.100.100.100":    false,
		"0.1.2.3":            false,
		"224.0.0.1":          false,
		"255.255.255.255":    false,
		"240.0.0.1":          false,
		"198.18.0.1":         false,
		"192.0.2.1":          false,
		"::":                 false,
		"::1":                false,
		"fe80::1":            false,
		"fc00::1":            false,
		"ff02::1":            false,
		"::ffff:192.168.0.1": false,
		"2001:db8::1":        false,
	} {
		if got := isPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("isPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}
