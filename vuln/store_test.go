package vuln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// dbOpener opens a fresh state database: SQLite by default,
// PostgreSQL in TestStorePostgres.
type dbOpener func(t *testing.T) string

func sqliteURL(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "state.db") }

func openStoreWith(t *testing.T, url dbOpener) (*Store, *storage.DB) {
	t.Helper()
	db, err := storage.OpenDB(t.Context(), url(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewStore(db, func() time.Time { return time.Unix(1_800_000_000, 0) }), db
}

func openStore(t *testing.T) (*Store, *storage.DB) { return openStoreWith(t, sqliteURL) }

// TestStorePostgres runs the store scenarios on PostgreSQL (make test's
// integration environment; skipped without it, like the other PostgreSQL
// suites).
func TestStorePostgres(t *testing.T) {
	t.Parallel()
	pg := func(t *testing.T) string { return testenv.Postgres(t) }
	t.Run("ImportAndRecompute", func(t *testing.T) { testStoreImportAndRecompute(t, pg) })
	t.Run("ImportAtomic", func(t *testing.T) { testStoreImportAtomic(t, pg) })
	t.Run("ConcurrentSync", func(t *testing.T) { testStoreConcurrentSync(t, pg) })
	t.Run("ShippedVEX", func(t *testing.T) { testStoreShippedVEX(t, pg) })
}

func TestStoreShippedVEX(t *testing.T) {
	t.Parallel()
	testStoreShippedVEX(t, sqliteURL)
}

// testStoreShippedVEX: the VEX a release ships with applies to its
// findings without an import, only to that release, and goes when the
// release is re-indexed without it.
func testStoreShippedVEX(t *testing.T, url dbOpener) {
	s, db := openStoreWith(t, url)
	ctx := t.Context()
	doc := readFile(t, "vex/pumpd-1.0.0.vex.json")
	sum := sha256.Sum256(doc)
	withVEX := sbomRelease(t, "pumpd@1.0.0", "pumpd-1.0.0.cdx.json")
	withVEX.VEXSHA256, withVEX.LoadVEX = hex.EncodeToString(sum[:]), func(context.Context) ([]byte, error) { return doc, nil }
	// The document names pumpd@1.0.0; shipped with another release it
	// still speaks only for the release that ships it.
	other := sbomRelease(t, "pumpd-lite@1.0.0", "pumpd-1.0.0.cdx.json")
	if _, err := s.SyncReleases(ctx, []ReleaseSBOM{withVEX, other}); err != nil {
		t.Fatal(err)
	}
	terrapin, err := ReadJSON("GO-2023-2402.json", readFile(t, "osv/GO-2023-2402.json"))
	if err != nil {
		t.Fatal(err)
	}
	res := importFile(t, s, db, terrapin)
	if len(res.NewlyAffected) != 1 || res.NewlyAffected[0].Release != "pumpd-lite@1.0.0" {
		t.Fatalf("NewlyAffected = %+v, want pumpd-lite@1.0.0 only (pumpd@1.0.0 shipped not_affected)", res.NewlyAffected)
	}
	status := func() map[string]string {
		t.Helper()
		fs, err := s.Findings(ctx, "CVE-2023-48795")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, f := range fs {
			m[f.Release] = f.Status + "/" + f.Justification
		}
		return m
	}
	if got := status(); got["pumpd@1.0.0"] != "not_affected/code_not_reachable" || got["pumpd-lite@1.0.0"] != "affected/" {
		t.Fatalf("findings = %v, want pumpd@1.0.0 not_affected (code_not_reachable), pumpd-lite@1.0.0 affected", got)
	}
	// Re-indexed without its VEX (a changed key), the statement is gone.
	if changed, err := s.SyncReleases(ctx, []ReleaseSBOM{sbomRelease(t, "pumpd@1.0.0", "pumpd-1.0.0.cdx.json"), other}); err != nil || !changed {
		t.Fatalf("SyncReleases without the VEX = %v, %v; want true, nil", changed, err)
	}
	if got := status(); got["pumpd@1.0.0"] != "affected/" {
		t.Fatalf("after re-indexing without the VEX: %v, want pumpd@1.0.0 affected", got)
	}
	// A bad shipped VEX fails the sync and changes nothing.
	bad := withVEX
	bad.VEXSHA256, bad.LoadVEX = "00", func(context.Context) ([]byte, error) { return []byte(`{"bomFormat":"CycloneDX"}`), nil }
	if _, err := s.SyncReleases(ctx, []ReleaseSBOM{bad, other}); tufota.ErrorCode(err) != tufota.EInvalid {
		t.Fatalf("SyncReleases with a bad VEX: %v, want invalid", err)
	}
	if got := status(); got["pumpd@1.0.0"] != "affected/" {
		t.Fatalf("after a failed sync: %v", got)
	}
}

func TestStoreImportAndRecompute(t *testing.T) {
	t.Parallel()
	testStoreImportAndRecompute(t, sqliteURL)
}

func TestStoreImportAtomic(t *testing.T) {
	t.Parallel()
	testStoreImportAtomic(t, sqliteURL)
}

func sbomRelease(t *testing.T, ref, file string) ReleaseSBOM {
	t.Helper()
	b := readFile(t, file)
	sum := sha256.Sum256(b)
	return ReleaseSBOM{Ref: ref, SHA256: hex.EncodeToString(sum[:]), Load: func(context.Context) ([]byte, error) { return b, nil }}
}

func importFile(t *testing.T, s *Store, db *storage.DB, b Batch) ImportResult {
	t.Helper()
	var res ImportResult
	if err := db.Tx(t.Context(), func(tx *storage.Tx) error {
		var err error
		res, err = s.Import(t.Context(), tx, b, "test")
		return err
	}); err != nil {
		t.Fatalf("Import: %v", err)
	}
	return res
}

func testStoreImportAndRecompute(t *testing.T, url dbOpener) {
	s, db := openStoreWith(t, url)
	ctx := t.Context()
	rels := []ReleaseSBOM{sbomRelease(t, "pumpd@1.0.0", "pumpd-1.0.0.cdx.json")}
	if changed, err := s.SyncReleases(ctx, rels); err != nil || !changed {
		t.Fatalf("SyncReleases = %v, %v; want true, nil", changed, err)
	}
	terrapin, err := ReadJSON("GO-2023-2402.json", readFile(t, "osv/GO-2023-2402.json"))
	if err != nil {
		t.Fatal(err)
	}
	res := importFile(t, s, db, terrapin)
	if len(res.NewlyAffected) != 1 || res.NewlyAffected[0].Release != "pumpd@1.0.0" || res.NewlyAffected[0].Advisory != "CVE-2023-48795" {
		t.Fatalf("NewlyAffected = %+v, want CVE-2023-48795 in pumpd@1.0.0", res.NewlyAffected)
	}
	// The same advisory again, now as its GHSA alias: nothing is newly affected.
	ghsa, err := ReadJSON("GHSA.json", readFile(t, "osv/GHSA-45x7-px36-x8w8.json"))
	if err != nil {
		t.Fatal(err)
	}
	if res := importFile(t, s, db, ghsa); len(res.NewlyAffected) != 0 {
		t.Errorf("re-import via alias: NewlyAffected = %+v, want none", res.NewlyAffected)
	}
	// A new release is indexed and matched without a new import.
	rels = append(rels, sbomRelease(t, "pumpd@1.1.0", "pumpd-1.1.0.cdx.json"))
	if _, err := s.SyncReleases(ctx, rels); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.SyncReleases(ctx, rels); err != nil || changed {
		t.Errorf("second SyncReleases = %v, %v; want false, nil", changed, err)
	}
	fs, err := s.Findings(ctx, "GHSA-45x7-px36-x8w8")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Release != "pumpd@1.0.0" || fs[0].Status != StatusAffected {
		t.Fatalf("findings by GHSA alias = %+v, want pumpd@1.0.0 affected only", fs)
	}
	// VEX not_affected changes the stored status.
	vex, err := ReadJSON("vex.json", readFile(t, "vex/pumpd-1.0.0.vex.json"))
	if err != nil {
		t.Fatal(err)
	}
	importFile(t, s, db, vex)
	fs, err = s.Findings(ctx, "CVE-2023-48795")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Status != StatusNotAffected || fs[0].Justification != "code_not_reachable" {
		t.Fatalf("after VEX: %+v, want not_affected (code_not_reachable)", fs)
	}
	// A release that goes away takes its findings along.
	if _, err := s.SyncReleases(ctx, rels[1:]); err != nil {
		t.Fatal(err)
	}
	if fs, _ := s.Findings(ctx, "CVE-2023-48795"); len(fs) != 0 {
		t.Errorf("after dropping pumpd@1.0.0: %+v, want none", fs)
	}
	if _, err := s.Findings(ctx, "CVE-2000-0001"); tufota.ErrorCode(err) != tufota.ENotFound {
		t.Errorf("Findings(unknown) error = %v, want not_found", err)
	}
}

func TestStoreWithdrawn(t *testing.T) {
	t.Parallel()
	s, db := openStore(t)
	if _, err := s.SyncReleases(t.Context(), []ReleaseSBOM{sbomRelease(t, "pumpd@1.0.0", "pumpd-1.0.0.cdx.json")}); err != nil {
		t.Fatal(err)
	}
	b, err := ReadJSON("w.json", readFile(t, "osv/TUFOTA-TEST-WITHDRAWN.json"))
	if err != nil {
		t.Fatal(err)
	}
	res := importFile(t, s, db, b)
	if res.Withdrawn != 1 || len(res.NewlyAffected) != 0 {
		t.Errorf("withdrawn import = %+v, want 1 withdrawn and nothing affected", res)
	}
	// Without the withdrawal, the same record matches x/text 0.14.0.
	live := b.Advisories[0]
	live.Withdrawn = nil
	if fs := Match([]Advisory{live}, nil, testReleases(t)[:1]); len(fs) != 1 {
		t.Errorf("the record, not withdrawn, matches %d components, want 1 (the test would prove nothing)", len(fs))
	}
}

// testStoreImportAtomic: an import whose transaction fails leaves nothing.
func testStoreImportAtomic(t *testing.T, url dbOpener) {
	s, db := openStoreWith(t, url)
	b, err := ReadFS(os.DirFS("testdata"), "osv")
	if err != nil {
		t.Fatal(err)
	}
	boom := tufota.Errorf(tufota.EInternal, "audit append failed")
	err = db.Tx(t.Context(), func(tx *storage.Tx) error {
		if _, err := s.Import(t.Context(), tx, b, "test"); err != nil {
			return err
		}
		return boom
	})
	if err == nil {
		t.Fatal("Tx = nil error")
	}
	var n int
	if err := db.QueryRow(t.Context(), `SELECT COUNT(*) FROM vuln_advisories`).Scan(&n); err != nil || n != 0 {
		t.Errorf("advisories after a failed import = %d (%v), want 0", n, err)
	}
}

// TestStoreConcurrentSync: reports that race to index the same new
// releases all succeed.
func TestStoreConcurrentSync(t *testing.T) {
	t.Parallel()
	testStoreConcurrentSync(t, sqliteURL)
}

func testStoreConcurrentSync(t *testing.T, url dbOpener) {
	s, _ := openStoreWith(t, url)
	rels := []ReleaseSBOM{sbomRelease(t, "pumpd@1.0.0", "pumpd-1.0.0.cdx.json"), sbomRelease(t, "pumpd@1.1.0", "pumpd-1.1.0.cdx.json")}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := s.SyncReleases(t.Context(), rels)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent SyncReleases: %v", err)
		}
	}
	idx, err := s.Indexed(t.Context())
	if err != nil || len(idx) != 2 {
		t.Errorf("indexed = %v, %v; want both releases", idx, err)
	}
}
