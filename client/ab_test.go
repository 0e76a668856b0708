package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/client"
	repofixtures "github.com/tufota/tufota/repo-fixtures"
)

// image writes a firmware image for version and returns its path, bytes
// and the Update describing it.
func image(t *testing.T, dir, version string, size int) (string, []byte, *client.Update) {
	t.Helper()
	data := randomBytes(size, uint64(len(version))*7919+uint64(size))
	data = append([]byte("version "+version+"\n"), data...)
	p := filepath.Join(dir, "fw-"+version+".bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s256, s512 := repofixtures.Hashes(data)
	return p, data, &client.Update{
		Target: "pumpfw/" + version + "/fw.bin", Name: "pumpfw", Version: version,
		Length: int64(len(data)), Hashes: map[string]string{"sha256": s256, "sha512": s512},
	}
}

func mustBoot(t *testing.T, ab *client.ABInstaller) client.BootResult {
	t.Helper()
	res, err := ab.Boot(t.Context())
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	return res
}

func TestABInstallBootConfirm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ab := &client.ABInstaller{Dir: filepath.Join(dir, "slots")}
	if _, err := ab.Boot(t.Context()); !errors.Is(err, tufota.ErrNotFound) {
		t.Fatalf("Boot on an empty device = %v, want ErrNotFound", err)
	}
	p1, data1, u1 := image(t, dir, "1.0.0", 100_000)
	if err := ab.Install(t.Context(), p1, u1); err != nil {
		t.Fatal(err)
	}
	res := mustBoot(t, ab)
	if res.Slot != client.SlotA || res.Trial || res.Record.Version != "1.0.0" {
		t.Fatalf("first boot = %+v, want primary slot a on 1.0.0", res)
	}
	if got, _ := os.ReadFile(res.Image); !bytes.Equal(got, data1) {
		t.Fatal("slot a image differs")
	}

	p2, data2, u2 := image(t, dir, "2.0.0", 100_000)
	if err := ab.Install(t.Context(), p2, u2); err != nil {
		t.Fatal(err)
	}
	if err := ab.Install(t.Context(), p2, u2); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("Install during a trial = %v, want ErrConflict", err)
	}
	res = mustBoot(t, ab)
	if res.Slot != client.SlotB || !res.Trial || res.Record.Version != "2.0.0" {
		t.Fatalf("boot after install = %+v, want trial slot b on 2.0.0", res)
	}
	if err := ab.Confirm(t.Context()); err != nil {
		t.Fatal(err)
	}
	res = mustBoot(t, ab)
	if res.Slot != client.SlotB || res.Trial || res.Record.Version != "2.0.0" {
		t.Fatalf("boot after confirm = %+v, want primary slot b on 2.0.0", res)
	}
	if got, _ := os.ReadFile(res.Image); !bytes.Equal(got, data2) {
		t.Fatal("slot b image differs")
	}
	if err := ab.Rollback(t.Context()); !errors.Is(err, tufota.ErrConflict) {
		t.Fatalf("Rollback without a trial = %v, want ErrConflict", err)
	}
}

func TestABRevertsAfterMaxBoots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ab := &client.ABInstaller{Dir: filepath.Join(dir, "slots"), MaxBoots: 2}
	p1, _, u1 := image(t, dir, "1.0.0", 10_000)
	p2, _, u2 := image(t, dir, "2.0.0", 10_000)
	if err := ab.Install(t.Context(), p1, u1); err != nil {
		t.Fatal(err)
	}
	if err := ab.Install(t.Context(), p2, u2); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if res := mustBoot(t, ab); !res.Trial || res.Record.Version != "2.0.0" {
			t.Fatalf("boot %d = %+v, want trial 2.0.0", i, res)
		}
	}
	res := mustBoot(t, ab)
	if res.Trial || res.Slot != client.SlotA || res.Reverted == nil || res.Reverted.Version != "2.0.0" {
		t.Fatalf("boot after %d failed boots = %+v, want slot a with 2.0.0 reverted", 2, res)
	}
	if res := mustBoot(t, ab); res.Reverted != nil || res.Slot != client.SlotA {
		t.Fatalf("next boot = %+v, want plain slot a", res)
	}
}

func TestABRollbackAndBadTrial(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ab := &client.ABInstaller{Dir: filepath.Join(dir, "slots")}
	p1, _, u1 := image(t, dir, "1.0.0", 10_000)
	p2, _, u2 := image(t, dir, "2.0.0", 10_000)
	if err := ab.Install(t.Context(), p1, u1); err != nil {
		t.Fatal(err)
	}
	// Health check failed: roll back.
	if err := ab.Install(t.Context(), p2, u2); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, ab)
	if err := ab.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if res := mustBoot(t, ab); res.Slot != client.SlotA || res.Trial {
		t.Fatalf("boot after rollback = %+v, want slot a", res)
	}
	// The trial image rots on disk before its first boot: revert at once.
	if err := ab.Install(t.Context(), p2, u2); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(ab.Dir, "slot-b.img")
	b, _ := os.ReadFile(img)
	b[100] ^= 0xff
	os.WriteFile(img, b, 0o600)
	res := mustBoot(t, ab)
	if res.Slot != client.SlotA || res.Trial || res.Reverted == nil {
		t.Fatalf("boot with a corrupt trial = %+v, want slot a, trial reverted", res)
	}
}

func TestABInstallRefusesUnsignedBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ab := &client.ABInstaller{Dir: filepath.Join(dir, "slots")}
	p1, _, u1 := image(t, dir, "1.0.0", 10_000)
	if err := ab.Install(t.Context(), p1, u1); err != nil {
		t.Fatal(err)
	}
	p2, _, u2 := image(t, dir, "2.0.0", 10_000)
	bad := *u2
	bad.Hashes = map[string]string{"sha256": strings.Repeat("0", 64)}
	if err := ab.Install(t.Context(), p2, &bad); !errors.Is(err, client.ErrHashMismatch) {
		t.Fatalf("Install of a mismatching image = %v, want ErrHashMismatch", err)
	}
	short := *u2
	short.Length--
	if err := ab.Install(t.Context(), p2, &short); !errors.Is(err, client.ErrLengthMismatch) {
		t.Fatalf("Install of a longer image = %v, want ErrLengthMismatch", err)
	}
	if res := mustBoot(t, ab); res.Slot != client.SlotA || res.Trial {
		t.Fatalf("boot after refused installs = %+v, want slot a", res)
	}
}

// Environment of the power-loss child process.
const (
	envChild   = "TUFOTA_AB_CHILD"    // JSON childSpec
	envCrashAt = "TUFOTA_AB_CRASH_AT" // step number to die at; 0 = never
)

type childSpec struct {
	Dir    string         `json:"dir"`
	Image  string         `json:"image"`
	Update *client.Update `json:"update"`
}

// TestABPowerLossChild is not a test: the power-loss test re-executes the
// test binary to run it as the device's agent, which SIGKILLs itself at
// step TUFOTA_AB_CRASH_AT of install → boot → confirm.
func TestABPowerLossChild(t *testing.T) {
	spec := os.Getenv(envChild)
	if spec == "" {
		return // not a child process
	}
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		t.Fatal(err)
	}
	crashAt, _ := strconv.Atoi(os.Getenv(envCrashAt))
	ab := &client.ABInstaller{Dir: cs.Dir}
	steps := 0
	client.SetCrashHook(ab, func(string) {
		steps++
		if steps == crashAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	})
	ctx := context.Background()
	if err := ab.Install(ctx, cs.Image, cs.Update); err != nil {
		t.Fatal(err)
	}
	res, err := ab.Boot(ctx)
	if err != nil || !res.Trial {
		t.Fatalf("boot = %+v, %v", res, err)
	}
	if err := ab.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("steps=%d\n", steps)
}

func TestABPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING power-loss test: -short (it runs 51 subprocesses)")
	}
	t.Parallel()
	dir := t.TempDir()
	p1, data1, u1 := image(t, dir, "1.0.0", 1<<20)
	p2, data2, u2 := image(t, dir, "2.0.0", 1<<20)
	want := map[string][]byte{"1.0.0": data1, "2.0.0": data2}

	// The factory state: 1.0.0 confirmed in slot a, 2.0.0 downloaded.
	template := filepath.Join(dir, "template")
	if err := (&client.ABInstaller{Dir: template}).Install(t.Context(), p1, u1); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(childSpec{Image: p2, Update: u2})
	runChild := func(slots string, crashAt int) (string, error) {
		var cs childSpec
		json.Unmarshal(spec, &cs)
		cs.Dir = slots
		b, _ := json.Marshal(cs)
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestABPowerLossChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChild+"="+string(b), envCrashAt+"="+strconv.Itoa(crashAt))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// A run without a crash counts the steps.
	slots := copyDir(t, template, filepath.Join(dir, "count"))
	out, err := runChild(slots, 0)
	if err != nil {
		t.Fatalf("child without crash: %v\n%s", err, out)
	}
	var total int
	if _, err := fmt.Sscanf(out[strings.Index(out, "steps="):], "steps=%d", &total); err != nil || total < 50 {
		t.Fatalf("child reported %d steps (%v), want at least 50\n%s", total, err, out)
	}

	r := rand.New(rand.NewPCG(2026, 6))
	points := r.Perm(total)[:50]
	ended := map[string]int{}
	for _, p := range points {
		crashAt := p + 1
		slots := copyDir(t, template, filepath.Join(dir, "crash-"+strconv.Itoa(crashAt)))
		out, err := runChild(slots, crashAt)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("crash at %d: child ended with %v, want SIGKILL\n%s", crashAt, err, out)
		}
		// Power back on: the device boots a verified image, old or new,
		// and after the agent's health check and confirm it stays there.
		ab := &client.ABInstaller{Dir: slots}
		res, err := ab.Boot(t.Context())
		if err != nil {
			t.Fatalf("crash at %d: boot: %v", crashAt, err)
		}
		img, _ := os.ReadFile(res.Image)
		if w, ok := want[res.Record.Version]; !ok || !bytes.Equal(img, w) {
			t.Fatalf("crash at %d: booted %+v, image is not the signed %s", crashAt, res, res.Record.Version)
		}
		if res.Trial {
			if err := ab.Confirm(t.Context()); err != nil {
				t.Fatalf("crash at %d: confirm: %v", crashAt, err)
			}
		}
		again := mustBoot(t, ab)
		if again.Trial || again.Record.Version != res.Record.Version {
			t.Fatalf("crash at %d: boot after confirm = %+v, want %s confirmed", crashAt, again, res.Record.Version)
		}
		ended[again.Record.Version]++
	}
	t.Logf("%d steps; 50 crashes ended on: %v", total, ended)
	if ended["1.0.0"] == 0 || ended["2.0.0"] == 0 {
		t.Fatalf("crashes ended on %v; the points should cover both sides of the boot pointer flip", ended)
	}
}

func copyDir(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}
