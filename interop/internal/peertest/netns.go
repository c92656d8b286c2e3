//go:build linux

package peertest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// SkipNetns is the marker an inner run logs to say that its namespace
// lacks something the test needs (a TUN device, a route); InNetns then
// skips the outer test instead of failing it.
const SkipNetns = "SKIP-NETNS"

// InNetns runs the calling test again, as a child process, in a fresh
// user and network namespace, where it may make a TUN device and talk
// only to addresses of its own, and reports whether this is that inner
// run. The outer run returns false once the inner run has passed; it
// fails with the inner run's output if that failed, and skips the test
// where namespaces cannot be made or the inner run logged SkipNetns.
func InNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("TCPFSM_NETNS") == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.timeout=300s")
	cmd.Env = append(os.Environ(), "TCPFSM_NETNS="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte(SkipNetns)) {
		t.Skip("no namespaces or TUN here: " + string(out))
	}
	var ee *exec.Error
	if errors.As(err, &ee) || (err != nil && len(out) == 0) {
		t.Skipf("cannot create a user and network namespace: %v", err)
	}
	if err != nil {
		t.Fatalf("inner run failed: %v\n%s", err, out)
	}
	t.Logf("inner run:\n%s", out)
	return false
}
