package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles this command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "go-router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// main's own part of the contract (docs/spec.md sections 1 and 8): bad flags exit 2 with
// one "error:" line, --help exits 0, SIGTERM ends a running router with exit 0.
func TestExitCodes(t *testing.T) {
	bin := build(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--bogus")
	cmd.Stderr = &stderr
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 ||
		!strings.HasPrefix(stderr.String(), "error:") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("--bogus: %v, stderr %q", err, stderr.String())
	}
	for _, args := range [][]string{{"--tls-cert", "c.pem"}, {"--tls-key", "k.pem"}, {"--client-ca", "ca.pem"}} {
		stderr.Reset()
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 ||
			!strings.HasPrefix(stderr.String(), "error:") || strings.Count(stderr.String(), "\n") != 1 {
			t.Fatalf("%v: %v, stderr %q", args, err, stderr.String())
		}
	}
	if out, err := exec.Command(bin, "--help").Output(); err != nil || !strings.Contains(string(out), "--listen") || !strings.Contains(string(out), "--tls-cert") {
		t.Fatalf("--help: %v %q", err, out)
	}

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd = exec.Command(bin, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--state-dir", t.TempDir())
		pipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the "listening on" line: the signal handler is installed before Run.
		started, eof := make(chan bool, 1), make(chan struct{})
		go func() {
			defer close(eof)
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "listening on") {
					started <- true
				}
			}
			started <- false
		}()
		select {
		case ok := <-started:
			if !ok {
				t.Fatalf("%v: router exited before listening", sig)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: no start", sig)
		}
		// SIGHUP on a plain listener is ignored (docs/spec.md section 3: it reloads TLS
		// files only); without the router's handler it would end the process.
		_ = cmd.Process.Signal(syscall.SIGHUP)
		_ = cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { <-eof; done <- cmd.Wait() }() // Wait only after the pipe is read to its end
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: %v", sig, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: no exit", sig)
		}
	}
	_ = os.Remove(bin)
}
