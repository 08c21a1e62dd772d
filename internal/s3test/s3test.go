// Package s3test gives tests a real S3-compatible server: SeaweedFS
// (`weed server -filer -s3`) on 127.0.0.1, one per test process, started
// on first use and killed when the tests end, with its data in a temporary
// folder. Each test takes a fresh bucket of its own (Bucket), dropped with
// its objects when the test ends.
//
// The weed command is built from the Go module proxy once per machine and
// cached (see Binary); a test that cannot build or start it fails saying
// why, it is never skipped. Build it ahead of the tests, with a longer
// timeout than a test's, with
//
//	go run ./internal/s3test/buildweed
//
// A test package that uses s3test calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { s3test.Main(m) }
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Region is the region the server answers for; any is accepted.
const Region = "us-east-1"

// startTimeout bounds the wait for a started server to store an object.
const startTimeout = 60 * time.Second

// server is this test process's SeaweedFS.
type server struct {
	cmd       *exec.Cmd
	dir       string // the data folder, removed at the end
	logPath   string
	endpoint  string
	accessKey string
	secretKey string
	client    *s3.Client
	exited    chan struct{} // closed when cmd has exited
	// sockets are the paths of the sockets that weed makes in /tmp for
	// its gRPC ports, which only a graceful exit removes.
	sockets []string
}

// process is the state of this test process: Start, called with nothing
// but a test, must find the server that Main stops at the end.
var process struct {
	mu sync.Mutex // guards the fields below
	// running is set while Main runs the tests.
	running bool
	// started is set once a start was tried; srv or err is its outcome.
	started bool
	srv     *server
	err     error
	// n numbers the buckets handed out.
	n int
}

// Main runs the tests of m, then stops the server if one was started,
// and exits with m.Run's code. Call it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain that does more.
func Run(m *testing.M) int { return Wrap(m.Run) }

// Start returns the endpoint ("http://127.0.0.1:<port>") and the
// credentials of this test process's S3 server, starting it on first use.
// It fails the test if the server cannot be built or started.
func Start(t testing.TB) (endpoint, accessKey, secretKey string) {
	t.Helper()
	srv := get(t)
	return srv.endpoint, srv.accessKey, srv.secretKey
}

// Bucket creates a new, empty bucket on the server for t and returns its
// name; the bucket and its objects are deleted when t ends.
func Bucket(t testing.TB) string {
	t.Helper()
	srv := get(t)
	process.mu.Lock()
	process.n++
	name := fmt.Sprintf("t%d-%d", os.Getpid(), process.n)
	process.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := srv.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The server deletes a bucket with its objects (-s3.allowDeleteBucketNotEmpty).
		if _, err := srv.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &name}); err != nil {
			t.Errorf("s3test: delete bucket %s: %v", name, err)
		}
	})
	return name
}

// get returns the server, starting it once.
func get(t testing.TB) *server {
	t.Helper()
	process.mu.Lock()
	defer process.mu.Unlock()
	if !process.running {
		t.Fatal("s3test: call s3test.Main from the package's TestMain, which stops the server at the end")
	}
	if !process.started {
		process.started = true
		sweepStale()
		process.srv, process.err = start()
	}
	if process.err != nil {
		t.Fatal(process.err)
	}
	return process.srv
}

// dirPrefix begins the name of every data folder, followed by the pid of
// the test process that made it.
const dirPrefix = "parley-s3test-"

// start builds weed if needed, then starts a server on free loopback
// ports and waits until it stores an object.
func start() (*server, error) {
	bin, err := Binary(func(format string, args ...any) {
		// A test's log shows only at its end: say it now.
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w\nBuild it ahead with `go run ./internal/s3test/buildweed` (or set %s to a weed binary)", errNoBinary, err, EnvWeed)
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	srv := &server{
		dir:       dir,
		logPath:   filepath.Join(dir, "weed.log"),
		accessKey: "parley" + randomHex(6),
		secretKey: randomHex(20),
	}
	// A port picked free may be taken before weed binds it: try again.
	for range 3 {
		if err = srv.run(bin); err == nil {
			return srv, nil
		}
		srv.kill()
	}
	os.RemoveAll(dir)
	return nil, err
}

// run starts weed and waits until it is ready.
func (srv *server) run(bin string) error {
	data := filepath.Join(srv.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	config := filepath.Join(srv.dir, "s3.json")
	identities := fmt.Sprintf(`{"identities":[{"name":"parley","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","List","Tagging","Write"]}]}`,
		srv.accessKey, srv.secretKey)
	if err := os.WriteFile(config, []byte(identities), 0o600); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	ports, err := freePorts(8)
	if err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	srv.sockets = []string{
		"/tmp/seaweedfs-master-grpc-" + ports[1] + ".sock",
		"/tmp/seaweedfs-volume-grpc-" + ports[3] + ".sock",
		"/tmp/seaweedfs-filer-grpc-" + ports[5] + ".sock",
		"/tmp/seaweedfs-s3-grpc-" + ports[7] + ".sock",
	}
	// For sweepStale, if this process dies before it removes them.
	if err := os.WriteFile(filepath.Join(srv.dir, socketList), []byte(strings.Join(srv.sockets, "\n")), 0o600); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	args := []string{
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + data,
		"-master.port=" + ports[0], "-master.port.grpc=" + ports[1],
		"-master.telemetry=false", // it would report to the internet
		"-master.volumeSizeLimitMB=64",
		"-volume.port=" + ports[2], "-volume.port.grpc=" + ports[3],
		"-volume.max=0", // as many volumes as the disk holds: each bucket takes some
		"-filer", "-filer.port=" + ports[4], "-filer.port.grpc=" + ports[5],
		"-filer.localSocket=" + filepath.Join(srv.dir, "filer.sock"),
		"-s3", "-s3.port=" + ports[6], "-s3.port.grpc=" + ports[7],
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.localSocket=" + filepath.Join(srv.dir, "s3.sock"),
		"-s3.config=" + config,
		"-s3.allowDeleteBucketNotEmpty=true",
	}
	logFile, err := os.Create(srv.logPath)
	if err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = srv.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = weedEnv()
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("s3test: start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	srv.cmd, srv.exited = cmd, exited

	srv.endpoint = "http://127.0.0.1:" + ports[6]
	srv.client = s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.endpoint),
		Region:       Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.accessKey, srv.secretKey, ""),
		HTTPClient:   &http.Client{Timeout: 10 * time.Second},
	})
	if err := srv.waitReady(); err != nil {
		return fmt.Errorf("s3test: SeaweedFS (%s %s) did not become ready: %w\n--- the end of %s:\n%s",
			bin, strings.Join(args, " "), err, srv.logPath, srv.logTail())
	}
	return nil
}

// waitReady polls until the server stores and deletes an object in a
// bucket of its own: the S3 gateway answers, and a volume server is
// there to take the bytes.
func (srv *server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	bucket := "s3test-ready"
	key := "probe"
	var last error
	for {
		last = func() error {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := srv.client.CreateBucket(c, &s3.CreateBucketInput{Bucket: &bucket})
			if err != nil && !strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") && !strings.Contains(err.Error(), "BucketAlreadyExists") {
				return err
			}
			if _, err := srv.client.PutObject(c, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("ready")}); err != nil {
				return err
			}
			if _, err := srv.client.DeleteBucket(c, &s3.DeleteBucketInput{Bucket: &bucket}); err != nil {
				return err
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		select {
		case <-srv.exited:
			return fmt.Errorf("weed exited: %v (last answer: %v)", srv.cmd.ProcessState, last)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", startTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop kills the server and removes its data.
func (srv *server) stop() {
	srv.kill()
	os.RemoveAll(srv.dir)
}

// kill kills the server, if it runs, and waits for it to exit. Test data
// need no graceful shutdown, which takes weed seconds.
func (srv *server) kill() {
	if srv.cmd == nil {
		return
	}
	srv.cmd.Process.Kill()
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
	}
	srv.cmd = nil
	for _, path := range srv.sockets {
		os.Remove(path)
	}
}

// logTail returns the end of the server's log.
func (srv *server) logTail() string {
	b, err := os.ReadFile(srv.logPath)
	if err != nil {
		return err.Error()
	}
	return string(tail(b, 6000))
}

// weedEnv is weed's environment: this process's, less the AWS variables
// that would add identities or change how it signs.
func weedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]string, error) {
	var ports []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// sweepStale removes the data folders and sockets of test processes that
// are gone (killed before Main could remove them). Their servers died with
// them (setDeathSignal).
func sweepStale() {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // not ours, or its process still runs
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		if list, err := os.ReadFile(filepath.Join(dir, socketList)); err == nil {
			for _, path := range strings.Split(string(list), "\n") {
				if strings.HasPrefix(path, "/tmp/seaweedfs-") && strings.HasSuffix(path, ".sock") {
					os.Remove(path)
				}
			}
		}
		os.RemoveAll(dir)
	}
}

// socketList names the file, in a server's folder, that lists the sockets
// it made in /tmp.
const socketList = "sockets"

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
