package sqlstore

import (
	"context"
	"testing"
)

func TestTryLock(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		db, _ := openTestDB(t, engine)
		release, ok, err := db.TryLock(ctx, "upload a")
		if err != nil || !ok {
			t.Fatalf("first: %v, %v", ok, err)
		}
		if _, ok, err := db.TryLock(ctx, "upload a"); err != nil || ok {
			t.Fatalf("second while held: %v, %v; want not ok", ok, err)
		}
		other, ok, err := db.TryLock(ctx, "upload b")
		if err != nil || !ok {
			t.Fatalf("another key: %v, %v", ok, err)
		}
		other()
		release()
		again, ok, err := db.TryLock(ctx, "upload a")
		if err != nil || !ok {
			t.Fatalf("after release: %v, %v", ok, err)
		}
		// A dead holder's lease runs out.
		if err := db.write(ctx, "test", "", func(w *writeTx) error {
			_, err := w.exec(`UPDATE locks SET expires_at = 0`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		taken, ok, err := db.TryLock(ctx, "upload a")
		if err != nil || !ok {
			t.Fatalf("after the lease ran out: %v, %v", ok, err)
		}
		taken()
		again() // its row is another holder's now: nothing to delete
	})
}
