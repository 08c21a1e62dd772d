package s3test_test

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/parley-chat/parley/internal/s3test"
)

func TestMain(m *testing.M) { s3test.Main(m) }

func client(t *testing.T) *s3.Client {
	endpoint, access, secret := s3test.Start(t)
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       s3test.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
	})
}

func TestServer(t *testing.T) {
	start := time.Now()
	endpoint, _, _ := s3test.Start(t)
	t.Logf("server at %s ready in %s", endpoint, time.Since(start).Round(time.Millisecond))
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
		t.Fatalf("endpoint %q, want http://127.0.0.1:<port>", endpoint)
	}
	if again, _, _ := s3test.Start(t); again != endpoint {
		t.Errorf("a second Start gave %s, want the same server %s", again, endpoint)
	}
	c := client(t)
	ctx := context.Background()

	var bucket string
	t.Run("bucket", func(t *testing.T) {
		bucket = s3test.Bucket(t)
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("a/b"), Body: strings.NewReader("hello")}); err != nil {
			t.Fatal(err)
		}
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("a/b")})
		if err != nil {
			t.Fatal(err)
		}
		defer out.Body.Close()
		if data, err := io.ReadAll(out.Body); err != nil || string(data) != "hello" {
			t.Fatalf("got %q, %v", data, err)
		}
		if other := s3test.Bucket(t); other == bucket {
			t.Errorf("two buckets named %s", bucket)
		}
	})
	// The subtest's bucket is gone with its object.
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	var notFound *types.NotFound
	if !errors.As(err, &notFound) {
		t.Errorf("HeadBucket of the ended test's bucket = %v, want NotFound", err)
	}
}

func TestWrongSecret(t *testing.T) {
	endpoint, access, _ := s3test.Start(t)
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       s3test.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, "wrong", ""),
	})
	if _, err := c.ListBuckets(context.Background(), &s3.ListBucketsInput{}); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
}
