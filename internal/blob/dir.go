package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"
)

// Dir is a Store in a folder of the local file system, for a single node.
// The blob under key "a/b/c" is the file "a/b/c@" below the root: the '@',
// which keys cannot contain, keeps "media/x" (a file) and "media/x/thumb"
// (a file in the folder "media/x") apart. Folders are made as needed with
// mode 0700, files with 0600; a Delete removes the folders it leaves empty.
//
// All access goes through an os.Root, so neither a key nor a symbolic
// link placed in the folder can reach outside it. Dir is safe for
// concurrent use; Close it when done.
type Dir struct {
	root *os.Root
}

var _ Store = (*Dir)(nil)

// blobSuffix ends the name of every blob file. Temporary files are named
// ".<name>@tmp-<random>": with the '@' inside, they are neither a blob
// file nor a folder of a key.
const blobSuffix = "@"

// errNotDir is the error of a path with a file where a folder should be.
var errNotDir = syscall.ENOTDIR

// NewDir returns a Dir keeping blobs under the folder root, creating it
// (mode 0700) if needed.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("blob dir: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("blob dir: %w", err)
	}
	return &Dir{root: r}, nil
}

// Close releases the folder. The Dir must not be used after.
func (d *Dir) Close() error { return d.root.Close() }

// filePath returns the path, relative to the root, of the blob file of
// key, or an error wrapping ErrInvalidKey.
func filePath(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.FromSlash(key) + blobSuffix, nil
}

// Put writes r to a temporary file next to the blob's, syncs it, renames it
// over the blob's name and syncs the folder, so that a crash leaves the old
// blob or the new one.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (err error) {
	name, err := filePath(key)
	if err != nil {
		return fmt.Errorf("blob put: %w", err)
	}
	f, tmp, made, err := d.createTemp(name)
	if err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			d.root.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, &countingReader{r: ctxReader{ctx, r}, want: size}); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	if err := d.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("blob put %s: %w", key, err)
	}
	// The rename is durable once the folder is synced, and a folder
	// made for it once its parent is; the blob is in place whatever
	// happens here. A folder gone meanwhile was emptied by a Delete of
	// this blob, which came after the Put and won.
	for folder := filepath.Dir(name); ; folder = filepath.Dir(folder) {
		if err := d.syncDir(folder); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob put %s: sync folder: %w", key, err)
		}
		if !made || folder == "." {
			break
		}
	}
	return nil
}

// createTemp creates a new temporary file in the folder of name, creating
// the folder as needed (made reports that it did). A Delete may remove an
// empty folder between the two steps: then it tries again.
func (d *Dir) createTemp(name string) (f *os.File, tmp string, made bool, err error) {
	folder := filepath.Dir(name)
	var random [8]byte
	for range 10 {
		rand.Read(random[:])
		tmp := filepath.Join(folder, "."+filepath.Base(name)+"tmp-"+hex.EncodeToString(random[:]))
		if _, err := d.root.Stat(folder); err != nil {
			made = true
			err := d.root.MkdirAll(folder, 0o700)
			if errors.Is(err, fs.ErrNotExist) {
				continue // a parent made was removed meanwhile
			}
			if err != nil {
				return nil, "", false, err
			}
		}
		f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, tmp, made, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrExist) {
			return nil, "", false, err
		}
	}
	return nil, "", false, fmt.Errorf("create a temporary file in %s: gave up", folder)
}

// syncDir flushes the entries of the folder name to disk.
func (d *Dir) syncDir(name string) error {
	f, err := d.root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Open opens the blob file. The Object keeps reading the bytes it opened
// even if the blob is replaced or deleted meanwhile.
func (d *Dir) Open(ctx context.Context, key string) (Object, error) {
	name, err := filePath(key)
	if err != nil {
		return nil, fmt.Errorf("blob open: %w", err)
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("blob open %s: %w", key, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob open %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob open %s: not a regular file", key)
	}
	return &dirObject{File: f, size: fi.Size(), mod: fi.ModTime()}, nil
}

// Stat returns the blob file's size and modification time.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	name, err := filePath(key)
	if err != nil {
		return Info{}, fmt.Errorf("blob stat: %w", err)
	}
	fi, err := d.root.Stat(name)
	if err != nil {
		return Info{}, fmt.Errorf("blob stat %s: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("blob stat %s: not a regular file", key)
	}
	return Info{Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the blob file, then the folders above it that it leaves
// empty (but not the root).
func (d *Dir) Delete(ctx context.Context, key string) error {
	name, err := filePath(key)
	if err != nil {
		return fmt.Errorf("blob delete: %w", err)
	}
	if err := d.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob delete %s: %w", key, err)
	}
	// Remove fails on a folder that is not empty: that one, and those
	// above it, stay. A Put racing to fill a folder retries (createTemp).
	for folder := path.Dir(key); folder != "."; folder = path.Dir(folder) {
		if d.root.Remove(filepath.FromSlash(folder)) != nil {
			break
		}
	}
	return nil
}

// notFound wraps ErrNotFound around err when it says the file does not
// exist (or a part of its path is not a folder).
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// dirObject is an open blob file.
type dirObject struct {
	*os.File
	size int64
	mod  time.Time
}

func (o *dirObject) Size() int64        { return o.size }
func (o *dirObject) ModTime() time.Time { return o.mod }
