package blob_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/blob"
	"github.com/parley-chat/parley/internal/blob/blobtest"
)

func newDir(t *testing.T, root string) *blob.Dir {
	t.Helper()
	d, err := blob.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDir(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newDir(t, t.TempDir()) })
}

// files lists the files and folders below root, with their modes.
func files(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	found := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		found[filepath.ToSlash(rel)] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestDirLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "blobs") // made by NewDir
	d := newDir(t, root)
	ctx := context.Background()
	for _, key := range []string{"media/x", "media/x/thumb"} {
		if err := d.Put(ctx, key, strings.NewReader(key), -1, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A failed Put leaves no temporary file.
	if err := d.Put(ctx, "media/y", strings.NewReader("short"), 100, ""); err == nil {
		t.Fatal("Put of a short reader succeeded")
	}
	got := files(t, root)
	want := map[string]fs.FileMode{
		"media":          fs.ModeDir | 0o700,
		"media/x@":       0o600,
		"media/x":        fs.ModeDir | 0o700,
		"media/x/thumb@": 0o600,
	}
	if !maps.Equal(got, want) {
		t.Errorf("files = %v, want %v", got, want)
	}
	if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("root: %v, %v; want mode 0700", fi.Mode(), err)
	}

	// Deletes remove the folders they leave empty, not the root.
	if err := d.Delete(ctx, "media/x/thumb"); err != nil {
		t.Fatal(err)
	}
	if got := keys(files(t, root)); !slices.Equal(got, []string{"media", "media/x@"}) {
		t.Errorf("after deleting media/x/thumb: %v", got)
	}
	if err := d.Delete(ctx, "media/x"); err != nil {
		t.Fatal(err)
	}
	if got := keys(files(t, root)); len(got) != 0 {
		t.Errorf("after deleting everything: %v", got)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root: %v", err)
	}
}

func TestDirTraversal(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret@"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDir(t, root)
	ctx := context.Background()

	for _, key := range blobtest.InvalidKeys {
		if err := d.Put(ctx, key, strings.NewReader("x"), 1, ""); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, key := range []string{"../outside/secret", "root/../outside/secret", "../../etc/passwd"} {
		if _, err := d.Open(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Open(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := d.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}

	// Symbolic links placed in the folder do not lead out of it either.
	for name, target := range map[string]string{
		"rel": "../outside",
		"abs": outside,
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
		if obj, err := d.Open(ctx, name+"/secret"); err == nil {
			obj.Close()
			t.Errorf("Open(%s/secret) through a link to %s succeeded", name, target)
		}
		if err := d.Put(ctx, name+"/new", strings.NewReader("x"), 1, ""); err == nil {
			t.Errorf("Put(%s/new) through a link to %s succeeded", name, target)
		}
		if err := d.Delete(ctx, name+"/secret"); err != nil {
			t.Logf("Delete(%s/secret): %v", name, err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "secret@"), filepath.Join(root, "file@")); err != nil {
		t.Fatal(err)
	}
	if obj, err := d.Open(ctx, "file"); err == nil {
		obj.Close()
		t.Error("Open(file) through a link to a file outside succeeded")
	}
	if got := keys(files(t, outside)); !slices.Equal(got, []string{"secret@"}) {
		t.Errorf("outside the folder: %v, want only secret@", got)
	}
	if data, err := os.ReadFile(filepath.Join(outside, "secret@")); err != nil || string(data) != "secret" {
		t.Errorf("the file outside: %q, %v", data, err)
	}
}

func TestCheckKey(t *testing.T) {
	for _, key := range []string{"a", "media/0192f3e4-7b1c-7d2e-8f90-123456789abc", "media/x/thumb", "A-Z_0.9/.x/x.", "...", "a..b", strings.Repeat("a", blob.MaxKeyLen)} {
		if err := blob.CheckKey(key); err != nil {
			t.Errorf("CheckKey(%q) = %v", key, err)
		}
	}
	for _, key := range blobtest.InvalidKeys {
		if err := blob.CheckKey(key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("CheckKey(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

func keys(m map[string]fs.FileMode) []string { return slices.Sorted(maps.Keys(m)) }
