package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/access"
	"github.com/tufota/tufota/audit"
	"github.com/tufota/tufota/internal/datadir"
	"github.com/tufota/tufota/internal/leader"
	"github.com/tufota/tufota/rollout"
	"github.com/tufota/tufota/server"
	"github.com/tufota/tufota/signer"
	"github.com/tufota/tufota/storage"
)

// deps are the opened parts of one repository.
type deps struct {
	db       *storage.DB
	blobs    storage.Blobs
	repo     *signer.Repository
	releases *signer.Releases
	tokens   *access.Tokens
	audit    *audit.Log
	rollouts *rollout.Service
	keys     *signer.Keyring // owns the open keys (HSM sessions)
}

func (d *deps) Close() error {
	if c, ok := d.blobs.(io.Closer); ok {
		_ = c.Close()
	}
	if d.keys != nil {
		_ = d.keys.Close()
	}
	return d.db.Close()
}

// openRepo opens the repository in dir with its online keys. Keys are
// opened through one Keyring (keys in one HSM token share its sessions),
// closed by deps.Close.
func (a *app) openRepo(ctx context.Context, dir string, log *slog.Logger, alerts *server.Alerter, auditOpts ...audit.Option) (_ *deps, err error) {
	cfg, err := datadir.Load(dir)
	if err != nil {
		return nil, err
	}
	pass, err := a.passphrase(false)
	if err != nil {
		return nil, err
	}
	keys := signer.NewKeyring(signer.WithPassphrase(func() ([]byte, error) { return pass, nil }))
	var (
		blobs storage.Blobs
		db    *storage.DB
	)
	defer func() {
		if err == nil {
			return
		}
		_ = keys.Close()
		if c, ok := blobs.(io.Closer); ok {
			_ = c.Close()
		}
		if db != nil {
			_ = db.Close()
		}
	}()
	if blobs, err = a.openBlobs(ctx, dir, cfg.Storage, false); err != nil {
		return nil, err
	}
	// Every repository write (publish, refresh) holds this lock: one
	// writer at a time across all replicas on PostgreSQL.
	if db, err = storage.OpenDB(ctx, datadir.Resolve(dir, cfg.DB)); err != nil {
		return nil, err
	}
	repo := signer.NewRepository(blobs, signer.WithLogger(log), signer.WithLocker(db.Locker(repositoryLock)))
	// With a targets threshold above one the server holds no targets key:
	// every release stays pending until that many key holders have signed
	// it (tufota release sign). With a threshold of one it signs itself.
	targetsThreshold, err := datadir.RootThreshold(ctx, repo, signer.RoleTargets)
	if err != nil {
		return nil, err
	}
	var s signer.Signers
	if targetsThreshold <= 1 {
		for _, uri := range cfg.Keys.Targets {
			k, err := keys.Open(ctx, datadir.Resolve(dir, uri))
			if err != nil {
				return nil, fmt.Errorf("open targets key: %w", err)
			}
			s.Targets = append(s.Targets, k)
		}
	} else {
		log.Info("targets threshold above one: releases wait for key holders' signatures (tufota release sign)", "threshold", targetsThreshold)
	}
	if err := datadir.CheckLayout(ctx, repo, cfg, s); err != nil {
		return nil, err
	}
	if s.Snapshot, err = keys.Open(ctx, datadir.Resolve(dir, cfg.Keys.Snapshot)); err != nil {
		return nil, fmt.Errorf("open snapshot key: %w", err)
	}
	if s.Timestamp, err = keys.Open(ctx, datadir.Resolve(dir, cfg.Keys.Timestamp)); err != nil {
		return nil, fmt.Errorf("open timestamp key: %w", err)
	}
	auditKey, err := keys.Open(ctx, datadir.Resolve(dir, cfg.Keys.Audit))
	if err != nil {
		return nil, fmt.Errorf("open audit key: %w", err)
	}
	cs, ok := auditKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("audit key %s cannot sign checkpoints", cfg.Keys.Audit)
	}
	alog, err := datadir.OpenAudit(ctx, db, cfg.AuditOrigin, cs, log, auditOpts...)
	if err != nil {
		return nil, err
	}
	// Root rotations may introduce new online keys by URI; the server opens
	// them like its own, and after a restart uses the ones of the newest root.
	releases := signer.NewReleases(db, repo, s, signer.WithKeyOpener(func(ctx context.Context, uri string) (signature.SignerVerifier, error) {
		return keys.Open(ctx, datadir.Resolve(dir, uri))
	}))
	if err := releases.RestoreOnlineKeys(ctx); err != nil {
		return nil, fmt.Errorf("online keys: %w", err)
	}
	// What reconciliation records (publishes finished, publishes rolled
	// back) commits with an audit entry of the system's.
	if n, err := releases.Reconcile(signer.WithAudit(ctx, server.SystemAudit(alog, "start-up reconciliation of interrupted publishes"))); err != nil {
		log.Warn("reconcile releases", "err", err)
	} else if n > 0 {
		log.Warn("recorded releases published before a crash", "count", n)
	}
	return &deps{
		audit:    alog,
		rollouts: rollout.NewService(db, server.ReleaseLookup(releases), rollout.WithLogger(log)),
		db:       db,
		blobs:    blobs,
		repo:     repo,
		releases: releases,
		tokens:   access.NewTokens(db, nil),
		keys:     keys,
	}, nil
}

// repositoryLock names the database lock that serialises writes to the TUF
// repository across replicas.
const repositoryLock = "tuf-repository"

type serverOptions struct {
	dir             string
	addr            string
	tlsCert         string
	tlsKey          string
	selfSigned      bool
	insecureHTTP    bool
	maxUpload       int64
	refreshMargin   time.Duration
	urlFile         string
	clientCA        string
	alertWebhook    string
	alertSecretFile string
	controllerEvery time.Duration
	deltaEvery      time.Duration
	leasePeriod     time.Duration
	targetsURL      string
	auditArchive    string
	auditRetention  time.Duration
	requireSBOM     bool
	stagingMaxAge   time.Duration
	stagingSweep    time.Duration
	trustedProxies  []string
}

func (a *app) serverCommand() *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server --dir DIR --addr HOST:PORT (--tls-cert F --tls-key F | --tls-self-signed | --insecure-http)",
		Short: "Serve the repository, the management API and the device API",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.urlFile == "" {
				return a.runServer(cmd.Context(), o, nil)
			}
			ready := make(chan listening, 1)
			errc := make(chan error, 1)
			go func() { errc <- a.runServer(cmd.Context(), o, ready) }()
			select {
			case l := <-ready:
				if err := datadir.WriteFileAtomic(o.urlFile, []byte(l.URL+"\n"), 0o644); err != nil {
					return fmt.Errorf("write --url-file: %w", err)
				}
				return <-errc
			case err := <-errc:
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "repository data directory (required)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:8443", "listen address HOST:PORT")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate chain")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.BoolVar(&o.selfSigned, "tls-self-signed", false, "serve TLS with a new self-signed certificate (written to DIR/tls-self-signed.pem for clients' --ca)")
	f.BoolVar(&o.insecureHTTP, "insecure-http", false, "serve plain HTTP; allowed only on a loopback address")
	f.Int64Var(&o.maxUpload, "max-upload-bytes", server.DefaultMaxUploadBytes, "largest firmware image accepted")
	f.BoolVar(&o.requireSBOM, "require-sbom", false, "refuse a release push without an SBOM (release push --sbom FILE, CycloneDX or SPDX JSON)")
	f.DurationVar(&o.refreshMargin, "refresh-margin", 12*time.Hour, "re-sign timestamp and snapshot when they expire within this margin")
	f.DurationVar(&o.controllerEvery, "controller-interval", 10*time.Second, "how often the rollout controller evaluates active rollouts")
	f.DurationVar(&o.deltaEvery, "delta-interval", 0, "how often the background worker makes binary deltas between published releases (0: no deltas)")
	f.DurationVar(&o.leasePeriod, "lease-period", leader.DefaultPeriod, "leader lease: one replica runs the background jobs (refresher, rollout controller, audit checkpoints); renewed every third of it, taken over by another replica at most this long (plus a third) after the leader dies")
	f.StringVar(&o.alertWebhook, "alert-webhook", "", "URL that receives HMAC-signed JSON security alerts")
	f.StringVar(&o.alertSecretFile, "alert-secret-file", "", "file holding the alert HMAC secret (at least 16 bytes)")
	f.StringVar(&o.clientCA, "client-ca", "", "PEM CA whose client certificates identify devices (mTLS; device ID = subject common name)")
	f.StringVar(&o.targetsURL, "targets-url", "", "base URL (S3 bucket or CDN) that devices fetch target bytes from: /tuf/targets/P answers 307 to BASE/targets/P; metadata stays here")
	f.StringVar(&o.auditArchive, "audit-archive", "", "write every signed audit checkpoint once to this write-once store: s3://BUCKET/PREFIX?endpoint=...&object-lock=compliance[&retention=2196d] (S3 Object Lock, compliance mode)")
	f.DurationVar(&o.auditRetention, "audit-retention", audit.DefaultRetention, "how long audit records must be kept (at least six years, HIPAA); the retention of --audit-archive objects when its URL names none")
	f.DurationVar(&o.stagingMaxAge, "staging-max-age", signer.DefaultStagingMaxAge, "remove what crashed uploads left in staging/ once it is this old (uploads in progress on this server are never removed; the age protects those of other replicas)")
	f.DurationVar(&o.stagingSweep, "staging-sweep-interval", 10*time.Minute, "how often to sweep staging/ (also once at start)")
	f.StringArrayVar(&o.trustedProxies, "trusted-proxy", nil, "CIDR of a reverse proxy or load balancer whose X-Forwarded-For names the client (repeatable); without it the audit source is the peer address and the header is ignored")
	f.StringVar(&o.urlFile, "url-file", "", "write the server's URL to this file once it listens (for scripts and tests; use with --addr 127.0.0.1:0)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// listening reports the address and CA file of a started server.
type listening struct {
	URL    string
	CAFile string
}

// runServer serves until ctx ends. ready, if not nil, receives the address
// once the listener is open.
func (a *app) runServer(ctx context.Context, o serverOptions, ready chan<- listening) error {
	modes := 0
	for _, on := range []bool{o.tlsCert != "" || o.tlsKey != "", o.selfSigned, o.insecureHTTP} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return tufota.Errorf(tufota.EInvalid, "server: choose exactly one of --tls-cert/--tls-key, --tls-self-signed or --insecure-http")
	}
	if o.insecureHTTP && !server.IsLoopback(o.addr) {
		return tufota.Errorf(tufota.EInvalid, "server: --insecure-http is allowed only on a loopback address, not %q", o.addr)
	}
	log := a.logger()
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	var alerts *server.Alerter
	if o.alertWebhook != "" {
		if o.alertSecretFile == "" {
			return tufota.Errorf(tufota.EInvalid, "server: --alert-webhook needs --alert-secret-file (alerts are always HMAC-signed)")
		}
		secret, err := os.ReadFile(o.alertSecretFile)
		if err != nil {
			return fmt.Errorf("server: --alert-secret-file: %w", err)
		}
		if alerts, err = server.NewAlerter(o.alertWebhook, bytes.TrimSpace(secret), nil, log); err != nil {
			return tufota.Errorf(tufota.EInvalid, "server: %v", err)
		}
		defer alerts.Wait()
	}
	if o.stagingMaxAge <= 0 || o.stagingSweep <= 0 {
		return tufota.Errorf(tufota.EInvalid, "server: --staging-max-age and --staging-sweep-interval must be positive")
	}
	if o.leasePeriod < 3*time.Second {
		return tufota.Errorf(tufota.EInvalid, "server: --lease-period %v is too short (at least 3s)", o.leasePeriod)
	}
	proxies, err := parseTrustedProxies(o.trustedProxies)
	if err != nil {
		return err
	}
	if o.auditRetention < audit.DefaultRetention { // before the data dir is locked, like every flag check
		return tufota.Errorf(tufota.EInvalid, "server: --audit-retention %s is shorter than the six-year minimum", o.auditRetention)
	}
	auditOpts := []audit.Option{audit.WithRetention(o.auditRetention)}
	if o.auditArchive != "" {
		archive, err := a.openAuditArchive(ctx, o.auditArchive, o.auditRetention)
		if err != nil {
			return err
		}
		if c, ok := archive.(io.Closer); ok {
			defer c.Close()
		}
		auditOpts = append(auditOpts, audit.WithArchive(archive))
	}
	unlock, err := datadir.Lock(dir, time.Now())
	if err != nil {
		return err
	}
	defer unlock()
	d, err := a.openRepo(ctx, dir, log, alerts, auditOpts...)
	if err != nil {
		return err
	}
	defer d.Close()
	// Unlocking each file key ran scrypt, which allocates 64 MiB at a time:
	// the garbage collector's heap goal grew to about twice that, and an
	// idle server allocates too little to bring it down again, so the
	// runtime kept ~130 MiB it no longer uses (idle RSS 178 MiB). Collect
	// now and give the memory back.
	debug.FreeOSMemory()
	// Sweep staging/ at start and then periodically, on every replica (each
	// knows its own uploads in progress); stopped before d closes.
	sweepCtx, stopSweep := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweepStaging(sweepCtx, d.releases, o.stagingMaxAge, o.stagingSweep, log)
	}()
	defer func() { stopSweep(); <-sweepDone }()
	elector, err := leader.New(leader.Config{Leases: d.db, Holder: replicaID(), Period: o.leasePeriod, Logger: log})
	if err != nil {
		return err
	}

	var tlsConfig *tls.Config
	var clientCAs *x509.CertPool
	if o.clientCA != "" {
		if o.insecureHTTP {
			return tufota.Errorf(tufota.EInvalid, "server: --client-ca needs TLS, not --insecure-http")
		}
		if clientCAs, err = server.LoadCertPool(o.clientCA); err != nil {
			return err
		}
	}
	caFile := ""
	switch {
	case o.insecureHTTP:
		log.Warn("serving plain HTTP without TLS: for local testing only", "addr", o.addr)
	case o.selfSigned:
		host, _, _ := net.SplitHostPort(o.addr)
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if host != "" && host != "0.0.0.0" && host != "::" {
			hosts = append(hosts, host)
		}
		cert, leaf, err := server.SelfSignedCertificate(hosts, time.Now())
		if err != nil {
			return err
		}
		caFile = filepath.Join(dir, "tls-self-signed.pem")
		if err := datadir.WriteFileAtomic(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644); err != nil {
			return fmt.Errorf("write self-signed certificate: %w", err)
		}
		tlsConfig = server.TLSConfig(cert, clientCAs)
	default:
		cert, err := server.LoadCertificate(o.tlsCert, o.tlsKey)
		if err != nil {
			return err
		}
		tlsConfig = server.TLSConfig(cert, clientCAs)
	}
	srvCfg := server.Config{
		Blobs:           d.blobs,
		DB:              d.db,
		Repo:            d.repo,
		Releases:        d.releases,
		Tokens:          d.tokens,
		Audit:           d.audit,
		Rollouts:        d.rollouts,
		Alerts:          alerts,
		ControllerEvery: o.controllerEvery,
		Deltas:          server.DeltaConfig{Every: o.deltaEvery},
		Elector:         elector,
		RefreshMargin:   o.refreshMargin,
		MaxUploadBytes:  o.maxUpload,
		RequireSBOM:     o.requireSBOM,
		TrustedProxies:  proxies,
		Logger:          log,
	}
	if o.targetsURL != "" {
		if srvCfg, err = server.WithTargetsURL(srvCfg, o.targetsURL); err != nil {
			return err
		}
	}
	srv, err := server.New(srvCfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	scheme := "https"
	if tlsConfig == nil {
		scheme = "http"
	}
	url := fmt.Sprintf("%s://%s", scheme, ln.Addr().String())
	log.Info("tufota server listening", "url", url, "dir", dir, "replica", elector.Status().Holder)
	if ready != nil {
		ready <- listening{URL: url, CAFile: caFile}
	}
	return srv.Serve(ctx, ln, tlsConfig)
}

// sweepStaging removes abandoned staging uploads older than maxAge at once
// and then every interval until ctx ends (signer.Releases.SweepStaging).
func sweepStaging(ctx context.Context, rels *signer.Releases, maxAge, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := rels.SweepStaging(ctx, time.Now().Add(-maxAge))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("sweep staging", "err", err)
		case n > 0:
			log.Info("swept abandoned staging uploads", "removed", n, "older_than", maxAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// replicaID names this server process among replicas: host, pid and a
// random suffix (a restarted process never reuses a lease of its
// predecessor's).
func replicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// openAuditArchive opens the write-once audit archive. An S3 Object Lock
// URL without a retention gets the audit retention; one with a shorter
// retention than the audit retention is refused.
func (a *app) openAuditArchive(ctx context.Context, rawURL string, retention time.Duration) (storage.Blobs, error) {
	if !storage.IsObjectLockURL(rawURL) {
		return nil, tufota.Errorf(tufota.EInvalid, "server: --audit-archive %q is not write-once storage: want s3://BUCKET/PREFIX?endpoint=...&object-lock=compliance", redactArchiveURL(rawURL))
	}
	if !strings.Contains(rawURL, "retention=") {
		days := int64((retention + 24*time.Hour - 1) / (24 * time.Hour))
		rawURL += fmt.Sprintf("&retention=%dd", days)
	}
	archive, err := a.openArchive(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if l, ok := archive.(*storage.LockedS3); ok && l.Retention() < retention {
		_ = l.Close()
		return nil, tufota.Errorf(tufota.EInvalid, "server: --audit-archive retention %s is shorter than --audit-retention %s", l.Retention(), retention)
	}
	return archive, nil
}
