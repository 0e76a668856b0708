package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// openBlobs opens the repository's blob store: a directory under dir by
// default, or S3 with credentials from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (or AWS_SHARED_CREDENTIALS_FILE). create makes a
// missing bucket.
func (a *app) openBlobs(ctx context.Context, dir, url string, create bool) (storage.Blobs, error) {
	var opts []storage.BlobsOption
	if a.env["AWS_ACCESS_KEY_ID"] != "" {
		opts = append(opts, storage.WithS3Credentials(a.env["AWS_ACCESS_KEY_ID"], a.env["AWS_SECRET_ACCESS_KEY"]))
	} else if f := a.env["AWS_SHARED_CREDENTIALS_FILE"]; f != "" {
		opts = append(opts, storage.WithS3CredentialsFile(f, a.env["AWS_PROFILE"]))
	}
	if create {
		opts = append(opts, storage.WithCreateBucket())
	}
	b, err := storage.OpenBlobs(ctx, url, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return b, nil
}

// passphrase returns the key passphrase from TUFOTA_KEY_PASSPHRASE, or asks
// on the terminal (twice when confirm is set). It never falls back to a
// default.
func (a *app) passphrase(confirm bool) ([]byte, error) {
	if p := a.env["TUFOTA_KEY_PASSPHRASE"]; p != "" {
		return []byte(p), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, tufota.Errorf(tufota.EInvalid, "no key passphrase: set TUFOTA_KEY_PASSPHRASE or run on a terminal to be asked")
	}
	fmt.Fprint(a.stderr, "Key passphrase: ")
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, tufota.Errorf(tufota.EInvalid, "empty key passphrase")
	}
	if confirm {
		fmt.Fprint(a.stderr, "Repeat passphrase: ")
		q, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if !bytes.Equal(p, q) {
			return nil, tufota.Errorf(tufota.EInvalid, "passphrases differ")
		}
	}
	return p, nil
}
