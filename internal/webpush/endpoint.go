package webpush

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// Endpoint rules. A subscription's endpoint comes from a browser, that is
// from a client we do not trust, and the server POSTs to it: without rules
// any user could make the server send requests into its own network (SSRF),
// to a cloud metadata service, an admin port or a database. Unless
// Options.AllowInsecureEndpoints is set, an endpoint must
//
//   - be an absolute https URL without user info, on the default port 443
//     (every browser's push service listens there);
//   - name a host that is not an IP address outside the public unicast
//     space (loopback, private, link-local, CGNAT, unspecified, multicast,
//     documentation and benchmarking ranges, and IPv6 forms embedding them),
//     not localhost and not a name under a special-use or internal-only
//     suffix (.localhost, .local, .internal, .home.arpa, .lan, ...), and
//     has at least one dot, since a single-label name resolves through
//     the search domains to internal hosts, and no numeric top-level
//     label (127.1 and 0x7f.1 are addresses to some resolvers);
//   - and, with the default HTTP client, resolve to public addresses only:
//     each address is checked again when the connection is made, so a name
//     whose DNS answers with 127.0.0.1 or 10.x is refused too (DNS
//     rebinding cannot get around the check, the dialled address is the
//     one checked). Redirects are never followed, with any client.
//
// An endpoint that breaks the first two rules is permanently undeliverable:
// Send reports push.ErrTokenGone and the subscription is deleted. A name
// that resolves to a non-public address only drops the push (DNS can be
// wrong for a while).

// errNotPublic is returned, wrapped, when a connection to a non-public
// address was refused.
var errNotPublic = errors.New("address is not public")

// checkEndpoint validates a subscription endpoint against the rules above
// and returns it in canonical form: host lower-cased and an explicit :443
// dropped, so that the VAPID audience is the endpoint's origin as RFC 8292
// defines it (webpush-go builds it from the URL as given).
func checkEndpoint(raw string, allowInsecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, errors.New("endpoint is not an absolute URL")
	}
	if u.User != nil {
		return nil, errors.New("endpoint has user info")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if host == "" {
		return nil, errors.New("endpoint has no host")
	}
	if allowInsecure {
		if u.Scheme != "https" && u.Scheme != "http" {
			return nil, fmt.Errorf("endpoint scheme %q: want https or http", u.Scheme)
		}
	} else {
		if u.Scheme != "https" {
			return nil, fmt.Errorf("endpoint scheme %q: want https", u.Scheme)
		}
		if port != "" && port != "443" {
			return nil, fmt.Errorf("endpoint port %s: want 443", port)
		}
		port = ""
		if err := checkHost(host); err != nil {
			return nil, err
		}
	}
	c := *u
	c.Host = host
	if strings.Contains(host, ":") {
		c.Host = "[" + host + "]"
	}
	if port != "" {
		c.Host = net.JoinHostPort(host, port)
	}
	c.Fragment, c.RawFragment = "", ""
	return &c, nil
}

// internalSuffixes are DNS suffixes that never name a host on the public
// Internet (RFC 6761, RFC 6762, RFC 8375 and common internal-only ones).
var internalSuffixes = []string{
	"localhost", "local", "internal", "home.arpa", "lan", "localdomain",
	"intranet", "corp", "private", "test", "invalid", "example", "onion",
}

// checkHost applies the host rules to a lower-cased host from a URL.
func checkHost(host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if !isPublic(a) {
			return fmt.Errorf("endpoint host %s is not a public address", host)
		}
		return nil
	}
	name := strings.TrimSuffix(host, ".")
	if !strings.Contains(name, ".") {
		return fmt.Errorf("endpoint host %q is not a fully qualified name", host)
	}
	// No top-level domain is numeric: a name like 127.1 or 0x7f.1 is an
	// address in a form some resolvers (getaddrinfo) still accept.
	labels := strings.Split(name, ".")
	if tld := labels[len(labels)-1]; strings.HasPrefix(tld, "0x") || strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("endpoint host %q is not a valid name", host)
	}
	for _, s := range internalSuffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return fmt.Errorf("endpoint host %q is an internal name", host)
		}
	}
	return nil
}

// nonPublic lists the ranges that net/netip's predicates do not cover but
// that are not reachable (or must not be reached) on the public Internet.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT shared space
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("100::/64"),        // discard
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// isPublic reports whether a is a public unicast address. IPv6 addresses
// that embed an IPv4 address (mapped, NAT64, 6to4) are judged by it.
func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			return isPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return isPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dialControl is a net.Dialer Control function that refuses connections
// to non-public addresses. It runs after name resolution, on the address
// actually dialled.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if !isPublic(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, errNotPublic)
	}
	return nil
}
