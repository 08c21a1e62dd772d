package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Options says where an S3 store keeps its blobs and how it signs in.
type S3Options struct {
	// Endpoint is the URL of an S3-compatible service, such as
	// "https://s3.example.com" or "http://127.0.0.1:8333". Empty means AWS
	// (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL if set).
	Endpoint string
	// Bucket is the bucket's name. It must exist.
	Bucket string
	// Region is the bucket's region. Empty means AWS_REGION or the
	// shared config's, else "us-east-1" (what most S3-compatible services
	// accept).
	Region string
	// Prefix, if not empty, is put before every key: a valid key ending
	// in '/', such as "parley/", to share a bucket.
	Prefix string
	// AccessKey and SecretKey sign the requests. Empty means the SDK's
	// default chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared
	// credentials file, then the instance's role.
	AccessKey, SecretKey string
	// PathStyle puts the bucket in the URL's path (endpoint/bucket/key)
	// instead of its host name, as most S3-compatible services need.
	PathStyle bool
}

// S3 is a Store in a bucket of an S3-compatible object store, for a
// cluster: every node reads what any node stored. The blob under key k is
// the object Prefix+k. S3 is safe for concurrent use.
//
// Put sends a blob of up to 8 MiB in one PutObject and a larger one as a
// multipart upload, which the service shows only once complete. Open asks
// for the object's size and ETag (HeadObject) and reads lazily with
// ranged GetObject requests that must match that ETag, so that a Seek
// costs nothing until the next Read and a blob replaced while it is read
// fails the read instead of mixing two versions.
//
// Requests carry checksums only where S3 requires them: S3-compatible
// services differ in their support of the "flexible checksums" that the
// SDK otherwise adds; use an https Endpoint to protect the transfers.
type S3 struct {
	client   *s3.Client
	bucket   string
	prefix   string
	partSize int64
}

var _ Store = (*S3)(nil)

const (
	// defaultPartSize is the size of a multipart upload's parts, and the
	// largest blob sent in one PutObject. S3 wants at least 5 MiB.
	defaultPartSize = 8 << 20
	// maxParts is the most parts S3 takes in one upload.
	maxParts = 10000
)

// partBuffers recycles the buffers of defaultPartSize bytes that Puts
// fill.
var partBuffers = sync.Pool{New: func() any { b := make([]byte, defaultPartSize); return &b }}

// NewS3 returns an S3 store for the bucket of opts, after checking that
// the bucket answers (HeadBucket, which needs the s3:ListBucket
// permission), so that a wrong bucket, endpoint or key fails at start
// rather than as blobs not found.
func NewS3(ctx context.Context, opts S3Options) (*S3, error) {
	if opts.Bucket == "" {
		return nil, errors.New("blob s3: no bucket")
	}
	if opts.Prefix != "" {
		if !strings.HasSuffix(opts.Prefix, "/") || CheckKey(strings.TrimSuffix(opts.Prefix, "/")) != nil {
			return nil, fmt.Errorf("blob s3: prefix %q: want a valid key and a '/'", opts.Prefix)
		}
	}
	if (opts.AccessKey == "") != (opts.SecretKey == "") {
		return nil, errors.New("blob s3: give both an access key and a secret key, or neither")
	}
	var loads []func(*config.LoadOptions) error
	if opts.Region != "" {
		loads = append(loads, config.WithRegion(opts.Region))
	}
	if opts.AccessKey != "" {
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("blob s3: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &S3{client: client, bucket: opts.Bucket, prefix: opts.Prefix, partSize: defaultPartSize}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return nil, fmt.Errorf("blob s3: bucket %s: %w", s.bucket, err)
	}
	return s, nil
}

// objectKey returns the object key of key, or an error wrapping
// ErrInvalidKey.
func (s *S3) objectKey(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// Put sends r in one PutObject if it holds at most one part, else as a
// multipart upload, aborted if anything fails.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("blob put: %w", err)
	}
	partSize := s.partSize
	if size > partSize*maxParts {
		partSize = (size + maxParts - 1) / maxParts
	}
	var buf []byte
	switch {
	case size >= 0 && size <= partSize:
		buf = make([]byte, size+1) // +1: the read that sees the end
	case partSize == defaultPartSize:
		p := partBuffers.Get().(*[]byte)
		defer partBuffers.Put(p)
		buf = *p
	default:
		buf = make([]byte, partSize)
	}
	cr := &countingReader{r: ctxReader{ctx, r}, want: size}
	var ct *string
	if contentType != "" {
		ct = &contentType
	}

	n, last, err := readPart(cr, buf)
	if err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	if last {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &k, Body: bytes.NewReader(buf[:n]),
			ContentLength: aws.Int64(int64(n)), ContentType: ct,
		})
		if err != nil {
			return fmt.Errorf("blob put %s: %w", key, err)
		}
		return nil
	}
	if err := s.putMultipart(ctx, k, cr, buf, n, ct); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	return nil
}

// readPart fills buf from r. last reports that r ended: buf[:n] is all
// that was left.
func readPart(r io.Reader, buf []byte) (n int, last bool, err error) {
	n, err = io.ReadFull(r, buf)
	switch err {
	case nil:
		return n, false, nil
	case io.EOF, io.ErrUnexpectedEOF:
		return n, true, nil
	}
	return n, false, err
}

// putMultipart uploads buf[:n], then the rest of r, as the parts of the
// object k, and completes the upload; or aborts it on failure.
func (s *S3) putMultipart(ctx context.Context, k string, r io.Reader, buf []byte, n int, ct *string) (err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &k, ContentType: ct,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		// The upload's parts take space until aborted: abort even when
		// ctx is done.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: &k, UploadId: up.UploadId,
		}); aerr != nil {
			err = fmt.Errorf("%w (and aborting the upload: %v)", err, aerr)
		}
	}()
	var parts []types.CompletedPart
	last := false
	for number := int32(1); ; number++ {
		if number > maxParts {
			return fmt.Errorf("more than %d parts", maxParts)
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &s.bucket, Key: &k, UploadId: up.UploadId, PartNumber: aws.Int32(number),
			Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(int64(n)),
		})
		if err != nil {
			return fmt.Errorf("part %d: %w", number, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(number)})
		if last {
			break
		}
		if n, last, err = readPart(r, buf); err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &k, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return err
}

// Open asks for the object's size, modification time and ETag; the
// Object's reads then get its bytes.
func (s *S3) Open(ctx context.Context, key string) (Object, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return nil, fmt.Errorf("blob open: %w", err)
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return nil, fmt.Errorf("blob open %s: %w", key, s3Error(err))
	}
	return &s3Object{
		ctx: ctx, s: s, key: k,
		etag: aws.ToString(head.ETag), size: aws.ToInt64(head.ContentLength), mod: aws.ToTime(head.LastModified),
	}, nil
}

// Stat asks for the object's size and modification time.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	k, err := s.objectKey(key)
	if err != nil {
		return Info{}, fmt.Errorf("blob stat: %w", err)
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return Info{}, fmt.Errorf("blob stat %s: %w", key, s3Error(err))
	}
	return Info{Size: aws.ToInt64(head.ContentLength), ModTime: aws.ToTime(head.LastModified)}, nil
}

// Delete deletes the object.
func (s *S3) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey(key)
	if err != nil {
		return fmt.Errorf("blob delete: %w", err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil && !isNotFound(err) {
		return fmt.Errorf("blob delete %s: %w", key, err)
	}
	return nil
}

// s3Error wraps ErrNotFound around err when S3 said there is no such
// object.
func s3Error(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// isNotFound reports whether err is S3's answer for a missing object: a
// NoSuchKey error, or a 404 to a HEAD request, which has no body to say
// more.
func isNotFound(err error) bool {
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &notFound) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}

// s3Object reads an object with ranged GetObject requests, one per run of
// Reads between Seeks.
type s3Object struct {
	ctx  context.Context
	s    *S3
	key  string // the object's key, with the prefix
	etag string // the version that Open saw, which every GET must match
	size int64
	mod  time.Time

	off    int64         // where the next Read starts
	body   io.ReadCloser // the body of the GET in progress, at off; or nil
	closed bool
}

func (o *s3Object) Size() int64        { return o.size }
func (o *s3Object) ModTime() time.Time { return o.mod }

// Read reads from the GET in progress, starting one at the offset if there
// is none.
func (o *s3Object) Read(p []byte) (int, error) {
	if o.closed {
		return 0, errClosed
	}
	if o.off >= o.size {
		o.closeBody()
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.body == nil {
		out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
			Bucket: &o.s.bucket, Key: &o.key,
			Range:   aws.String(fmt.Sprintf("bytes=%d-", o.off)),
			IfMatch: aws.String(o.etag),
		})
		if err != nil {
			if changed(err) {
				return 0, fmt.Errorf("blob read %s: replaced or deleted while being read: %w", o.key, err)
			}
			return 0, fmt.Errorf("blob read %s: %w", o.key, err)
		}
		o.body = out.Body
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	switch {
	case err == io.EOF && o.off < o.size:
		o.closeBody()
		return n, fmt.Errorf("blob read %s: %w", o.key, io.ErrUnexpectedEOF)
	case err == io.EOF || o.off >= o.size:
		o.closeBody()
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	case err != nil:
		o.closeBody()
		return n, fmt.Errorf("blob read %s: %w", o.key, err)
	}
	return n, nil
}

// changed reports whether err says that the object is no longer the one
// opened.
func changed(err error) bool {
	var api smithy.APIError
	return isNotFound(err) || errors.As(err, &api) && api.ErrorCode() == "PreconditionFailed"
}

// Seek moves the offset; the GET in progress, if any, ends unless the
// offset stays where it is.
func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	if o.closed {
		return 0, errClosed
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("blob seek %s: bad whence %d", o.key, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("blob seek %s: negative offset %d", o.key, abs)
	}
	if abs != o.off {
		o.closeBody()
	}
	o.off = abs
	return abs, nil
}

// Close ends the GET in progress, if any.
func (o *s3Object) Close() error {
	if o.closed {
		return errClosed
	}
	o.closed = true
	o.closeBody()
	return nil
}

func (o *s3Object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

// errClosed is the error of an Object used after Close.
var errClosed = errors.New("blob: object closed")
