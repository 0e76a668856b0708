package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/storage"
)

// Example shows the whole life of the audit log: append, checkpoint,
// export, and a reviewer's verification of the export against the
// published key.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := storage.OpenDB(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// The checkpoint key: any Ed25519 crypto.Signer (a signer package file
	// key, an HSM key). A fixed seed keeps this example's output stable.
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	ns, err := audit.NewNoteSigner("tufota.example/audit", key)
	if err != nil {
		log.Fatal(err)
	}
	clock := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	l, err := audit.New(ctx, db, ns, audit.WithNow(func() time.Time { return clock }))
	if err != nil {
		log.Fatal(err)
	}

	e, err := l.Append(ctx, audit.Entry{
		Actor: "alice", Role: "operator", Source: "192.0.2.10:51234",
		Action: "rollout.pause", Object: "rollout/r-42", Outcome: audit.OutcomeOK,
		Details: map[string]string{"reason": "wave 2 failure rate above 5%"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("appended entry", e.Seq, "at", e.Time.Format(time.RFC3339))

	cp, err := l.Checkpoint(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// The root of a one-entry tree is its leaf hash, SHA-256(0x00 ||
	// canonical JSON): any language can recompute it.
	fmt.Printf("checkpoint:\n%s", strings.SplitAfter(string(cp), "\n\n")[0])

	var exp bytes.Buffer
	if err := l.Export(ctx, &exp, "json", time.Time{}, time.Time{}); err != nil {
		log.Fatal(err)
	}
	rep, err := audit.VerifyExport(&exp, audit.WithTrustedKey(ns.VerifierKey()))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("export verified:", rep.OK, rep.Entries, "entries, head", rep.Head.Size)
	// Output:
	// appended entry 0 at 2025-06-01T12:00:00Z
	// checkpoint:
	// tufota.example/audit
	// 1
	// kaCxsuqlAivYJHJvAKrCI/HghWMnWnZTE/Wz04OWico=
	//
	// export verified: true 1 entries, head 1
}
