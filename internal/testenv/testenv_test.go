package testenv

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func TestLookup(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "a", "B": "b"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name      string
		short     bool
		names     []string
		wantVals  []string
		wantSkip  string // substring
		wantFatal string // substring
	}{
		{name: "all set", names: []string{"A", "B"}, wantVals: []string{"a", "b"}},
		{name: "short skips even when set", short: true, names: []string{"A"}, wantSkip: "SKIPPING integration test TestX (needs Svc): -short"},
		{name: "short skips when unset", short: true, names: []string{"C"}, wantSkip: "SKIPPING"},
		{name: "one missing", names: []string{"A", "C"}, wantFatal: "C not set: run make test"},
		{name: "all missing named", names: []string{"C", "D"}, wantFatal: "C, D not set: run make test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vals, skip, fatal := lookup(tt.short, getenv, "TestX", "Svc", tt.names...)
			if tt.wantSkip != "" || skip != "" {
				if tt.wantSkip == "" || !strings.Contains(skip, tt.wantSkip) {
					t.Fatalf("skip = %q, want it to contain %q", skip, tt.wantSkip)
				}
			}
			if tt.wantFatal != "" || fatal != "" {
				if tt.wantFatal == "" || !strings.Contains(fatal, tt.wantFatal) {
					t.Fatalf("fatal = %q, want it to contain %q", fatal, tt.wantFatal)
				}
			}
			if strings.Join(vals, ",") != strings.Join(tt.wantVals, ",") {
				t.Fatalf("vals = %q, want %q", vals, tt.wantVals)
			}
		})
	}
}

func TestMinIO(t *testing.T) {
	t.Parallel()
	endpoint, access, secret := MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatalf("minio.New: %v", err)
	}
	bucket := "testenv-" + randomHex(6)
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("MakeBucket: %v", err)
	}
	t.Cleanup(func() {
		if err := mc.RemoveBucket(context.Background(), bucket); err != nil {
			t.Errorf("RemoveBucket: %v", err)
		}
	})

	want := []byte("firmware bytes")
	if _, err := mc.PutObject(ctx, bucket, "a/b.bin", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	obj, err := mc.GetObject(ctx, bucket, "a/b.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatalf("read object: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("object = %q, want %q", got, want)
	}
	_, err = mc.StatObject(ctx, bucket, "missing", minio.StatObjectOptions{})
	if code := minio.ToErrorResponse(err).Code; code != minio.NoSuchKey {
		t.Fatalf("StatObject(missing): code %q (err %v), want %s", code, err, minio.NoSuchKey)
	}
	if err := mc.RemoveObject(ctx, bucket, "a/b.bin", minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("RemoveObject: %v", err)
	}

	// No default credentials: MinIO's well-known defaults must be refused.
	anon, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4("minioadmin", "minioadmin", "")})
	if err != nil {
		t.Fatalf("minio.New: %v", err)
	}
	if _, err := anon.BucketExists(ctx, bucket); err == nil {
		t.Fatalf("BucketExists with minioadmin/minioadmin succeeded; want the default credentials refused")
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var first string
	t.Run("fresh database", func(t *testing.T) {
		first = Postgres(t)
		conn, err := pgx.Connect(ctx, first)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var db string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			t.Fatalf("current_database: %v", err)
		}
		if want := strings.TrimPrefix(mustParse(t, first).Path, "/"); db != want || !strings.HasPrefix(db, "tufota_test_") {
			t.Fatalf("current_database() = %q, want %q (tufota_test_…)", db, want)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&tables); err != nil {
			t.Fatalf("count tables: %v", err)
		}
		if tables != 0 {
			t.Fatalf("fresh database has %d tables, want 0", tables)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)"); err != nil {
			t.Fatalf("create table: %v", err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO t VALUES ($1, $2)", 1, "x"); err != nil {
			t.Fatalf("insert: %v", err)
		}
		// Left open on purpose: cleanup must drop the database anyway.
		leak, err := pgx.Connect(ctx, first)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { leak.Close(context.Background()) })

		if second := Postgres(t); second == first {
			t.Fatalf("two calls returned the same database %q", first)
		}
	})

	// After the subtest, its databases are gone.
	admin, err := pgx.Connect(ctx, mustEnv(t, EnvPostgresURL))
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer admin.Close(ctx)
	var n int
	name := strings.TrimPrefix(mustParse(t, first).Path, "/")
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatalf("query pg_database: %v", err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after the test's cleanup", name)
	}
}

// TestSoftHSM makes two tokens one after the other in one process, as separate
// tests do, and uses each through PKCS#11 (crypto11): generate an ECDSA P-256
// key in the token, sign, verify; a wrong PIN is refused.
func TestSoftHSM(t *testing.T) {
	for _, name := range []string{"first token", "second token"} {
		t.Run(name, func(t *testing.T) {
			h := SoftHSM(t)
			if _, err := crypto11.Configure(&crypto11.Config{Path: h.Module, TokenLabel: h.TokenLabel, Pin: "wrong" + h.PIN}); err == nil {
				t.Fatalf("Configure with a wrong PIN succeeded")
			}
			ctx, err := crypto11.Configure(&crypto11.Config{Path: h.Module, TokenLabel: h.TokenLabel, Pin: h.PIN})
			if err != nil {
				t.Fatalf("Configure(token %q): %v", h.TokenLabel, err)
			}
			defer ctx.Close()
			if others, err := ctx.FindAllKeyPairs(); err != nil || len(others) != 0 {
				t.Fatalf("new token holds %d key pairs (err %v), want 0", len(others), err)
			}
			signer, err := ctx.GenerateECDSAKeyPairWithLabel([]byte("id-1"), []byte("targets-1"), elliptic.P256())
			if err != nil {
				t.Fatalf("generate key: %v", err)
			}
			digest := sha256.Sum256([]byte("metadata"))
			sig, err := signer.Sign(nil, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			pub, ok := signer.Public().(*ecdsa.PublicKey)
			if !ok {
				t.Fatalf("public key is %T, want *ecdsa.PublicKey", signer.Public())
			}
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Fatalf("signature from the token does not verify")
			}
			uri := h.KeyURI("targets-1")
			if want := "pkcs11:token=" + h.TokenLabel + ";object=targets-1?module-path=" + h.Module + "&pin-value=" + h.PIN; uri != want {
				t.Fatalf("KeyURI = %q, want %q", uri, want)
			}
		})
	}
}

func mustEnv(t *testing.T, name string) string {
	t.Helper()
	v := require(t, "the test environment", name)
	return v[0]
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return u
}
