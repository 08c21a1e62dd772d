package s3test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Module and Version name the SeaweedFS release that s3test runs: its
// weed command is built from the Go module proxy's copy of the module,
// with the module's own go.mod and go.sum (so nothing of it enters this
// project's go.mod).
const (
	Module  = "github.com/seaweedfs/seaweedfs"
	Version = "v0.0.0-20261109003541-7506e5f91cd6"
)

// EnvWeed names the environment variable that points at a weed binary to
// use instead of the cached build.
const EnvWeed = "PARLEY_WEED"

// Binary returns the path of the weed command, building it first if the
// cache has none: the binary in PARLEY_WEED if set, else
// <user cache dir>/parley/weed-<Version>/weed. The first build takes many
// minutes (more than 20 on 2 cores; the compiled packages then stay in the
// Go build cache too); concurrent callers, in this process or others, wait
// for one build. logf, if not nil, hears what is going on.
func Binary(logf func(format string, args ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if p := os.Getenv(EnvWeed); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("s3test: %s=%s: %w", EnvWeed, p, err)
		}
		return p, nil
	}
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weed")
	if executable(bin) == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	// One build at a time on the machine: test binaries of several
	// packages may get here together.
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("s3test: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if executable(bin) == nil {
		return bin, nil // built by another process while this one waited
	}
	// Under the lock, a temporary binary is one that a killed build left.
	if stale, _ := filepath.Glob(filepath.Join(dir, ".weed-*")); len(stale) > 0 {
		for _, path := range stale {
			os.Remove(path)
		}
	}
	logf("s3test: building SeaweedFS %s into %s, once per machine (it takes many minutes)", Version, bin)
	start := time.Now()
	if err := build(bin); err != nil {
		return "", err
	}
	logf("s3test: built %s in %s", bin, time.Since(start).Round(time.Second))
	return bin, nil
}

// cacheDir is where the build of Version is kept.
func cacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("s3test: no cache folder for the weed binary (set %s to a weed binary): %w", EnvWeed, err)
	}
	return filepath.Join(base, "parley", "weed-"+Version), nil
}

// executable returns nil if path is a regular file that may be run.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

// build downloads the module (go mod download, checked against the
// checksum database) and builds its weed command into bin.
func build(bin string) error {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("s3test: building SeaweedFS needs the go command in PATH: %w", err)
	}
	work, err := os.MkdirTemp("", "parley-weed-build-")
	if err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	defer os.RemoveAll(work)
	env := buildEnv()

	download := exec.Command(goCmd, "mod", "download", "-json", Module+"@"+Version)
	download.Dir = work // outside any module: the project's go.mod stays as it is
	download.Env = env
	var stderr bytes.Buffer
	download.Stderr = &stderr
	out, err := download.Output()
	if err != nil {
		return fmt.Errorf("s3test: go mod download %s@%s: %v\n%s%s", Module, Version, err, stderr.Bytes(), out)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("s3test: go mod download %s@%s: %v %s", Module, Version, err, mod.Error)
	}

	tmp := filepath.Join(filepath.Dir(bin), fmt.Sprintf(".weed-%d", os.Getpid()))
	defer os.Remove(tmp)
	cmd := exec.Command(goCmd, "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./weed")
	cmd.Dir = mod.Dir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("s3test: go build %s/weed (in %s): %v\n%s", Module, mod.Dir, err, tail(out, 4000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return fmt.Errorf("s3test: %w", err)
	}
	return nil
}

// buildEnv is the environment of the go commands that build weed: the
// module's own go.mod and go.sum, no workspace, no cgo.
func buildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GOFLAGS", "GOWORK", "CGO_ENABLED", "GO111MODULE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOFLAGS=-mod=readonly", "GOWORK=off", "CGO_ENABLED=0", "GO111MODULE=on")
}

// tail returns the last n bytes of b, at most.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// errNoBinary is wrapped by the error of a server that could not start
// because weed could not be had.
var errNoBinary = errors.New("no weed binary")
