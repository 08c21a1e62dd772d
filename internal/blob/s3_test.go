package blob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/blob/blobtest"
	"github.com/parley-chat/parley/internal/s3test"
)

func TestMain(m *testing.M) { s3test.Main(m) }

// s3Options returns the options of a store in a fresh bucket of the test
// server.
func s3Options(t *testing.T) blob.S3Options {
	endpoint, access, secret := s3test.Start(t)
	return blob.S3Options{
		Endpoint: endpoint, Bucket: s3test.Bucket(t), Region: s3test.Region,
		AccessKey: access, SecretKey: secret, PathStyle: true,
	}
}

func newS3(t *testing.T, opts blob.S3Options) *blob.S3 {
	t.Helper()
	s, err := blob.NewS3(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawClient is a plain S3 client for the bucket of opts, to look behind
// the store.
func rawClient(opts blob.S3Options) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(opts.Endpoint), Region: opts.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, ""),
	})
}

func TestS3(t *testing.T) {
	// One bucket; each subtest in a prefix of its own.
	opts := s3Options(t)
	var n atomic.Int64
	blobtest.Run(t, func(t *testing.T) blob.Store {
		o := opts
		o.Prefix = fmt.Sprintf("run%d/", n.Add(1))
		return newS3(t, o)
	})
}

func TestS3Prefix(t *testing.T) {
	opts := s3Options(t)
	plain := newS3(t, opts)
	opts.Prefix = "parley/"
	prefixed := newS3(t, opts)
	ctx := context.Background()
	if err := prefixed.Put(ctx, "media/p", strings.NewReader("in parley/"), -1, "text/plain"); err != nil {
		t.Fatal(err)
	}
	obj, err := plain.Open(ctx, "parley/media/p")
	if err != nil {
		t.Fatalf("the blob is not at parley/media/p: %v", err)
	}
	obj.Close()
	if _, err := plain.Stat(ctx, "media/p"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat(media/p) without the prefix = %v, want ErrNotFound", err)
	}
	head, err := rawClient(opts).HeadObject(ctx, &s3.HeadObjectInput{Bucket: &opts.Bucket, Key: aws.String("parley/media/p")})
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(head.ContentType); ct != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}

	for _, prefix := range []string{"parley", "/parley/", "a/../b/", "p q/"} {
		o := opts
		o.Prefix = prefix
		if _, err := blob.NewS3(ctx, o); err == nil {
			t.Errorf("NewS3 with prefix %q succeeded", prefix)
		}
	}
}

func TestNewS3Fails(t *testing.T) {
	opts := s3Options(t)
	ctx := context.Background()
	for name, change := range map[string]func(*blob.S3Options){
		"no bucket":      func(o *blob.S3Options) { o.Bucket = "" },
		"missing bucket": func(o *blob.S3Options) { o.Bucket = "no-such-bucket" },
		"wrong secret":   func(o *blob.S3Options) { o.SecretKey = "wrong" },
		"no secret":      func(o *blob.S3Options) { o.SecretKey = "" },
		"closed port":    func(o *blob.S3Options) { o.Endpoint = "http://127.0.0.1:1" },
	} {
		t.Run(name, func(t *testing.T) {
			o := opts
			change(&o)
			if _, err := blob.NewS3(ctx, o); err == nil {
				t.Error("NewS3 succeeded")
			} else {
				t.Log(err)
			}
		})
	}
}

// TestS3FromEnvironment signs with the standard AWS variables when the
// options give no keys.
func TestS3FromEnvironment(t *testing.T) {
	opts := s3Options(t)
	t.Setenv("AWS_ACCESS_KEY_ID", opts.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", opts.SecretKey)
	t.Setenv("AWS_REGION", opts.Region)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	opts.AccessKey, opts.SecretKey, opts.Region = "", "", ""
	s := newS3(t, opts)
	if err := s.Put(context.Background(), "media/env", strings.NewReader("env"), 3, ""); err != nil {
		t.Fatal(err)
	}
}

// TestS3FailedUploadAborted checks that a multipart upload whose reader
// fails leaves no upload (and its parts) behind.
func TestS3FailedUploadAborted(t *testing.T) {
	opts := s3Options(t)
	s := newS3(t, opts)
	ctx := context.Background()
	failing := io.MultiReader(bytes.NewReader(make([]byte, 20<<20)), errorReader{})
	if err := s.Put(ctx, "media/big", failing, -1, ""); err == nil {
		t.Fatal("Put succeeded")
	}
	out, err := rawClient(opts).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &opts.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left", len(out.Uploads))
	}
}

type errorReader struct{}

func (errorReader) Read([]byte) (int, error) { return 0, errors.New("broken") }
