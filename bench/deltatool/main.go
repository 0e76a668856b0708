// Command deltatool makes and applies tufota deltas for bench/delta.sh:
//
//	deltatool make [-workers N] OLD NEW PATCH
//	deltatool apply [-memory BYTES] OLD PATCH OUT
//
// Each prints one line: the operation, its wall time, the process's peak
// RSS (getrusage) and the sizes, so that the script can run each operation
// in a process of its own.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/tufota/tufota/delta"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "deltatool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: deltatool make [-workers N] OLD NEW PATCH | apply [-memory BYTES] OLD PATCH OUT")
	}
	ctx := context.Background()
	start := time.Now()
	switch args[0] {
	case "make":
		fs := flag.NewFlagSet("make", flag.ContinueOnError)
		workers := fs.Int("workers", 1, "match-search workers")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 3 {
			return fmt.Errorf("usage: deltatool make [-workers N] OLD NEW PATCH")
		}
		old, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		new, err := os.Open(fs.Arg(1))
		if err != nil {
			return err
		}
		ost, err := old.Stat()
		if err != nil {
			return err
		}
		nst, err := new.Stat()
		if err != nil {
			return err
		}
		out, err := os.Create(fs.Arg(2))
		if err != nil {
			return err
		}
		if err := delta.Make(ctx, old, ost.Size(), new, nst.Size(), out, delta.MakeOptions{Workers: *workers}); err != nil {
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		st, _ := os.Stat(fs.Arg(2))
		report("make", start, st.Size())
	case "apply":
		fs := flag.NewFlagSet("apply", flag.ContinueOnError)
		memory := fs.Int64("memory", 16<<20, "memory bound")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 3 {
			return fmt.Errorf("usage: deltatool apply [-memory BYTES] OLD PATCH OUT")
		}
		old, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		patch, err := os.Open(fs.Arg(1))
		if err != nil {
			return err
		}
		h, err := delta.ReadHeader(patch)
		if err != nil {
			return err
		}
		if _, err := patch.Seek(0, io.SeekStart); err != nil {
			return err
		}
		ost, err := old.Stat()
		if err != nil {
			return err
		}
		out, err := os.Create(fs.Arg(2))
		if err != nil {
			return err
		}
		oldSum := sha256ofFile(fs.Arg(0))
		err = delta.Apply(ctx, old, patch, out, delta.Expect{OldSize: ost.Size(), OldSHA256: oldSum, NewSize: h.NewSize, NewSHA256: h.NewSHA256[:]}, delta.Limits{Memory: *memory})
		if err != nil {
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		report("apply", start, h.NewSize)
	default:
		return fmt.Errorf("unknown operation %q", args[0])
	}
	return nil
}

func sha256ofFile(name string) []byte {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil
	}
	return h.Sum(nil)
}

func report(op string, start time.Time, size int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("%s seconds=%.2f cpu_seconds=%.2f max_rss_kib=%d bytes=%d\n", op, time.Since(start).Seconds(),
		float64(ru.Utime.Sec+ru.Stime.Sec)+float64(ru.Utime.Usec+ru.Stime.Usec)/1e6, ru.Maxrss, size)
}
