package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/api"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/storage"
)

func (a *app) auditCommand() *cobra.Command {
	return group("audit", "Read, export and verify the tamper-evident audit log", a.auditLogCommand(), a.auditExportCommand(), a.auditVerifyCommand(), a.auditCheckpointCommand())
}

func (a *app) auditLogCommand() *cobra.Command {
	var since, until, actor, action, object string
	var limit int
	cmd := &cobra.Command{
		Use:   "log [--since 24h|TIME] [--until TIME] [--actor A] [--action A] [--object O]",
		Short: "List audit entries",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			if limit == 0 { // the client leaves 0 to the server's default; the server refuses it
				return tufota.Errorf(tufota.EInvalid, "limit %q: want 1 to 100000", "0")
			}
			entries, err := c.AuditList(cmd.Context(), api.AuditFilter{Since: since, Until: until, Actor: actor, Action: action, Object: object, Limit: limit})
			if err != nil {
				return err
			}
			return a.print(entries, func(w io.Writer) {
				row(w, "SEQ", "TIME", "ACTOR", "ROLE", "SOURCE", "ACTION", "OBJECT", "OUTCOME", "DETAILS")
				for _, e := range entries {
					row(w, e.Seq, e.Time.UTC().Format("2006-01-02T15:04:05Z"), e.Actor, dash(e.Role), dash(e.Source), e.Action, e.Object, e.Outcome, details(e.Details))
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "entries at or after this RFC 3339 time, or this long ago (24h)")
	f.StringVar(&until, "until", "", "entries before this RFC 3339 time")
	f.StringVar(&actor, "actor", "", "only this actor")
	f.StringVar(&action, "action", "", "only this action, e.g. release.push")
	f.StringVar(&object, "object", "", "only this object, e.g. release/pump-fw@1.4.2")
	f.IntVar(&limit, "limit", 1000, "at most this many entries")
	return cmd
}

func details(d map[string]string) string {
	if len(d) == 0 {
		return "-"
	}
	var b bytes.Buffer
	for _, k := range sortedKeys(d) {
		if d[k] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, d[k])
	}
	return b.String()
}

func (a *app) auditExportCommand() *cobra.Command {
	var format, since, until, out, to string
	cmd := &cobra.Command{
		Use:   "export --format json|csv [--since T] [--until T] [--out FILE | --to URL]",
		Short: "Export entries with their signed checkpoints, ending with a fresh checkpoint",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "csv" {
				return tufota.Errorf(tufota.EInvalid, "audit export: --format %q: want json or csv", format)
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := c.AuditExport(cmd.Context(), format, since, until, &buf); err != nil {
				return err
			}
			if to != "" {
				store, err := a.openArchive(cmd.Context(), to)
				if err != nil {
					return err
				}
				key := audit.ArchiveExportKey(time.Now(), format)
				if _, err := store.Put(cmd.Context(), key, bytes.NewReader(buf.Bytes())); err != nil {
					return fmt.Errorf("audit export: write to archive: %w", err)
				}
				res := map[string]string{"archive": redactArchiveURL(to), "key": key}
				return a.print(res, func(w io.Writer) { row(w, "Archived export:", key) })
			}
			if out == "" {
				_, err := a.stdout.Write(buf.Bytes())
				return err
			}
			return datadir.WriteFileAtomic(out, buf.Bytes(), 0o600)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "json", "json or csv")
	f.StringVar(&since, "since", "", "entries at or after this RFC 3339 time, or this long ago")
	f.StringVar(&until, "until", "", "entries before this RFC 3339 time")
	f.StringVar(&out, "out", "", "write to FILE instead of standard output")
	f.StringVar(&to, "to", "", "write to a blob store instead: s3://BUCKET/PREFIX?endpoint=...&object-lock=compliance&retention=2190d (write-once, S3 Object Lock) or file:DIR, as exports/<time>.<format>")
	cmd.MarkFlagsMutuallyExclusive("out", "to")
	return cmd
}

func (a *app) auditVerifyCommand() *cobra.Command {
	var export, sinceExport, key string
	cmd := &cobra.Command{
		Use:   "verify [--export FILE [--since-export OLD]] [--key VERIFIER_KEY]",
		Short: "Verify the audit log: every entry hash, the Merkle tree and every signed checkpoint",
		Long: `verify recomputes every entry's hash and the Merkle tree and checks every signed
checkpoint. With --export it checks an export file offline; without, it fetches a
fresh export from the server and checks it here (not trusting the server's word),
and asks the server to check its stored tree too. --since-export OLD proves that
the export extends the older export OLD (a consistency proof). --key pins the
checkpoint verifier key (printed by init); without it the export's own key is
reported for you to compare. The first broken entry is named.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []audit.VerifyOption
			if key != "" {
				opts = append(opts, audit.WithTrustedKey(key))
			}
			var data []byte
			var serverRep *api.AuditReport
			if export != "" {
				b, err := os.ReadFile(export)
				if err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
				data = b
			} else {
				c, err := a.api()
				if err != nil {
					return err
				}
				var buf bytes.Buffer
				if err := c.AuditExport(cmd.Context(), "json", "", "", &buf); err != nil {
					return err
				}
				data = buf.Bytes()
				rep, err := c.AuditVerify(cmd.Context())
				if err != nil {
					return err
				}
				serverRep = &rep
			}
			rep, err := audit.VerifyExport(bytes.NewReader(data), opts...)
			if err == nil && sinceExport != "" {
				old, rerr := os.ReadFile(sinceExport)
				if rerr != nil {
					return fmt.Errorf("audit verify: %w", rerr)
				}
				err = audit.VerifyConsistency(bytes.NewReader(old), bytes.NewReader(data), opts...)
			}
			if err == nil && serverRep != nil && !serverRep.OK {
				err = tufota.Errorf(tufota.EInvalid, "the server's stored log is broken at entry %d: %s", serverRep.BrokenSeq, serverRep.Problem)
			}
			type result struct {
				Export      audit.Report     `json:"export"`
				Server      *api.AuditReport `json:"server,omitempty"`
				Consistency string           `json:"consistency,omitempty"`
				Error       string           `json:"error,omitempty"`
			}
			res := result{Export: rep, Server: serverRep}
			if sinceExport != "" && err == nil {
				res.Consistency = "extends " + sinceExport
			}
			if err != nil {
				res.Error = err.Error()
			}
			if perr := a.print(res, func(w io.Writer) {
				row(w, "Origin:", rep.Origin)
				row(w, "Verifier key:", rep.VerifierKey)
				row(w, "Entries:", fmt.Sprintf("%d (seq %d to %d)", rep.Entries, rep.FirstSeq, rep.Size-1))
				row(w, "Checkpoints:", rep.Checkpoints)
				if res.Consistency != "" {
					row(w, "Consistency:", res.Consistency)
				}
				if err == nil {
					row(w, "Result:", "OK")
				}
			}); perr != nil {
				return perr
			}
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&export, "export", "", "verify this export file offline")
	f.StringVar(&sinceExport, "since-export", "", "prove that --export extends this older export")
	f.StringVar(&key, "key", "", "pin the checkpoint verifier key")
	return cmd
}

func (a *app) auditCheckpointCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Have the server sign a checkpoint of the audit log now (admin only)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			res, err := c.AuditCheckpoint(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(res, func(w io.Writer) { fmt.Fprint(w, res.Checkpoint) })
		},
	}
}

// openArchive opens an audit archive: a write-once S3 Object Lock store for
// an s3:// URL with object-lock=compliance (the bucket is created with
// object locking when missing), any other blob store URL otherwise.
// Credentials come from the environment as for the repository's store.
func (a *app) openArchive(ctx context.Context, url string) (storage.Blobs, error) {
	if !storage.IsObjectLockURL(url) {
		return a.openBlobs(ctx, "", url, false)
	}
	opts := []storage.BlobsOption{storage.WithCreateBucket()}
	if a.env["AWS_ACCESS_KEY_ID"] != "" {
		opts = append(opts, storage.WithS3Credentials(a.env["AWS_ACCESS_KEY_ID"], a.env["AWS_SECRET_ACCESS_KEY"]))
	} else if f := a.env["AWS_SHARED_CREDENTIALS_FILE"]; f != "" {
		opts = append(opts, storage.WithS3CredentialsFile(f, a.env["AWS_PROFILE"]))
	}
	l, err := storage.OpenLockedS3(ctx, url, opts...)
	if err != nil {
		return nil, fmt.Errorf("open audit archive: %w", err)
	}
	return l, nil
}

func redactArchiveURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}
