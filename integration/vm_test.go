package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/integration/lab"
)

// The VM step's limits: the build is about 1 minute from scratch and a few
// seconds cached, the VM run about 1 minute; these only bound a hang, well
// inside CI's total.
const (
	vmBuildLimit = 10 * time.Minute
	vmRunLimit   = 7 * time.Minute
	vmRunTimeout = "360" // seconds, vm/run.sh's own limit on the VM (BTNSD_VM_TIMEOUT)
)

// TestKernelESPInVM is the VM step: this machine's kernel has no ESP, so
// the product's default data plane (charon's kernel-netlink, transport
// mode, kernel ESP SAs) is tested in a QEMU VM booting a Debian kernel, with
// hosts a, b and c as network namespaces running charon and btnsd. It runs
// vm/build.sh (the base image is cached in $BTNSD_VM_CACHE, default
// /var/cache/btnsd-vm) and vm/run.sh, and fails with the scenarios' reasons.
// vm/README.md says what each scenario proves.
func TestKernelESPInVM(t *testing.T) {
	lab.Require(t)
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "debootstrap", "cpio", "zstd", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := "the VM step needs " + strings.Join(missing, ", ") + "; run scripts/setup.sh as root"
		if lab.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if testing.Short() && !lab.Required() {
		t.Skip("the VM step takes a minute or more; skipped in -short mode")
	}

	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.MkdirTemp("", "btnsd-vm-")
	if err != nil {
		t.Fatal(err)
	}
	keep := false
	defer func() {
		if keep {
			t.Logf("the VM's image and whole console log are kept in %s", out)
		} else {
			os.RemoveAll(out)
		}
	}()
	env := append(os.Environ(), "BTNSD_VM_OUT="+out, "BTNSD_VM_TIMEOUT="+vmRunTimeout)

	buildOut, buildTime, err := runVMScript(repo, env, vmBuildLimit, "vm/build.sh")
	base := "unknown"
	if m := regexp.MustCompile(`build: base (cold|cached)`).FindStringSubmatch(buildOut); m != nil {
		base = map[string]string{"cold": "built from scratch", "cached": "cached"}[m[1]]
	}
	if err != nil {
		keep = true
		t.Fatalf("vm/build.sh failed after %v: %v\n%s", buildTime.Round(100*time.Millisecond), err, vmTail(buildOut, 30))
	}
	t.Logf("vm/build.sh: %v wall, base image %s", buildTime.Round(100*time.Millisecond), base)
	for _, l := range strings.Split(buildOut, "\n") {
		if strings.HasPrefix(l, "base: ") || strings.HasPrefix(l, "build: base ") {
			t.Log("  " + l)
		}
	}

	runOut, runTime, err := runVMScript(repo, env, vmRunLimit, "vm/run.sh")
	t.Logf("vm/run.sh: %v wall (QEMU, software emulation)", runTime.Round(100*time.Millisecond))
	var results []string
	for _, l := range strings.Split(runOut, "\n") {
		if strings.HasPrefix(l, "VMTEST ") {
			results = append(results, l)
		}
	}
	if err == nil {
		for _, l := range results {
			t.Log("  " + l)
		}
		return
	}
	keep = true
	// vm/run.sh prints the verdict ("run: FAIL: ..."), the failed
	// scenarios with their reasons, and the VM's evidence.
	reason := "vm/run.sh: " + err.Error()
	var failed []string
	for _, l := range strings.Split(runOut, "\n") {
		if strings.HasPrefix(l, "run: FAIL: ") {
			reason = strings.TrimPrefix(l, "run: FAIL: ")
		}
		if strings.HasPrefix(l, "VMTEST ") && strings.Contains(l, ": FAIL") && !strings.HasPrefix(l, "VMTEST RESULT:") {
			failed = append(failed, strings.TrimPrefix(l, "VMTEST "))
		}
	}
	if len(failed) > 0 {
		reason += "\n  " + strings.Join(failed, "\n  ")
	}
	t.Fatalf("kernel ESP in the VM: %s\n\nvm/run.sh said:\n%s", reason, vmTail(runOut, 200))
}

// runVMScript runs one of the VM scripts from the repository root in its own
// process group (QEMU included), killing the group when limit passes.
func runVMScript(repo string, env []string, limit time.Duration, script string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repo, script))
	cmd.Dir = repo
	cmd.Env = env
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		err = ctx.Err()
		buf.WriteString("\n" + script + " killed after " + limit.String() + "\n")
	}
	return buf.String(), took, err
}

func vmTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
