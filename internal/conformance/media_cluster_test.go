package conformance

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/mediatest"
	"github.com/parley-chat/parley/internal/s3test"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/testnode"
)

// TestMediaCluster: three nodes keep media in a real S3-compatible server
// (SeaweedFS on loopback): an upload started through one node resumes
// through another, and what one node stored downloads through every
// other.
func TestMediaCluster(t *testing.T) {
	endpoint, key, secret := s3test.Start(t)
	bucket := s3test.Bucket(t)
	set := testnode.StartCluster(t, 3, func(c *server.Config) {
		c.Media.S3 = blob.S3Options{Endpoint: endpoint, Bucket: bucket, AccessKey: key, SecretKey: secret, PathStyle: true}
	})
	n := wrapNodes(set)
	a, b, c := n.at(0), n.at(1), n.at(2)
	us := a.users(t, "alice", "bob")
	alice, bob := us[0], us[1]
	conv := wantString(t, "direct", a.createDirect(t, alice, bob), "id")

	data := mediatest.Random(2_500_000)
	hdr := func(kv ...string) map[string]string {
		h := map[string]string{"Tus-Resumable": "1.0.0"}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	created := a.raw(t, "POST", "/api/uploads", alice.access, hdr("Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", tusMeta("filename", "archive.bin")), nil)
	if created.status != http.StatusCreated {
		t.Fatalf("create on node 0: %d %s", created.status, created.body)
	}
	loc := created.header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	path := "/api/uploads/" + id
	// S3's multipart parts are at least 5 MiB but the last: a first
	// PATCH of 1 MB is kept as a part of the upload in progress.
	half := 1_000_000
	if r := a.raw(t, "PATCH", path, alice.access, hdr("Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"), data[:half]); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH on node 0: %d %s", r.status, r.body)
	}
	// The connection broke; the client comes back through node 1.
	head := b.raw(t, "HEAD", path, alice.access, hdr(), nil)
	if head.status != http.StatusOK || head.header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("HEAD on node 1: %d offset %q, want %d", head.status, head.header.Get("Upload-Offset"), half)
	}
	if r := b.raw(t, "PATCH", path, alice.access, hdr("Upload-Offset", strconv.Itoa(half), "Content-Type", "application/offset+octet-stream"), data[half:]); r.status != http.StatusNoContent {
		t.Fatalf("last PATCH on node 1: %d %s", r.status, r.body)
	}
	m := c.do(t, "GET", "/api/media/"+id, alice.access, nil).want(t, http.StatusOK)
	for i, nd := range []*node{a, b, c} {
		d := nd.raw(t, "GET", m["url"].(string), "", nil, nil)
		if d.status != http.StatusOK || !bytes.Equal(d.body, data) {
			t.Errorf("download through node %d: %d, %d bytes, identical %t", i, d.status, len(d.body), bytes.Equal(d.body, data))
		}
	}

	// A photo uploaded in one request through node 1, sent through node
	// 0, downloads for bob through node 2, thumbnail too.
	photo := wantMedia(t, b.upload(t, alice, "holiday.jpg", "image/jpeg", mediatest.ExifJPEG(t)), http.StatusCreated)
	a.do(t, "POST", "/api/conversations/"+conv+"/messages", alice.access,
		obj{"client_message_id": newCMID(), "kind": "image", "text": "", "media_id": photo["id"]}).want(t, http.StatusCreated)
	hist, _ := c.history(t, bob, conv, "")
	if len(hist) != 1 {
		t.Fatalf("history %v", hist)
	}
	got := wantObject(t, "history", hist[0], "media")
	for _, u := range []string{got["url"].(string), got["thumbnail_url"].(string)} {
		if r := c.raw(t, "GET", u, "", nil, nil); r.status != http.StatusOK || len(r.body) == 0 {
			t.Errorf("bob's download of %s through node 2: %d", u, r.status)
		}
	}
}
