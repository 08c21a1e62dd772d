package blob

import "github.com/aws/aws-sdk-go-v2/service/s3"

// Client returns the S3 client, for what shares the bucket (tusd's
// s3store keeps partial uploads there).
func (s *S3) Client() *s3.Client { return s.client }

// Bucket returns the bucket's name.
func (s *S3) Bucket() string { return s.bucket }

// Prefix returns what is put before every key ("" or ending in '/').
func (s *S3) Prefix() string { return s.prefix }
