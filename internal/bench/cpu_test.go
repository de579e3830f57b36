package bench

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
		ppid       int
		cpu        time.Duration
	}{
		{"plain", "4242 (workerd) S 17 4242 17 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 100 0 0", true, 17, 3100 * time.Millisecond},
		{"comm with spaces and parentheses", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0 1 0 0", true, 1, 2 * time.Second},
		{"no comm end", "7 (abc R 1 7", false, 0, 0},
		{"truncated", "7 (x) S 1 2 3", false, 0, 0},
		{"empty", "", false, 0, 0},
		{"negative times count as 0", "9 (x) S 2 0 0 0 0 0 0 0 0 0 -5 10 0 0 0", true, 2, 100 * time.Millisecond},
	} {
		st, ok := parseStat([]byte(tc.line))
		if ok != tc.ok || ok && (st.ppid != tc.ppid || st.cpu != tc.cpu) {
			t.Errorf("%s: %+v %v, want ppid %d cpu %v ok %v", tc.name, st, ok, tc.ppid, tc.cpu, tc.ok)
		}
	}
}

func TestTreeCPUSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	st, ok := readStat("/proc/self/stat")
	if !ok || st.ppid != os.Getppid() {
		t.Fatalf("/proc/self/stat: %+v %v (ppid %d)", st, ok, os.Getppid())
	}
	// The tree holds at least the process itself.
	if tree := treeCPU(os.Getpid()); tree < st.cpu {
		t.Fatalf("tree CPU %v < own %v", tree, st.cpu)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (workerd) S 17 4242 17 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 100 0 0"))
	f.Add([]byte("1 ()) R 0"))
	f.Add([]byte("9 (x) S 2 0 0 0 0 0 0 0 0 0 9223372036854775807 9223372036854775807 0 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, ok := parseStat(b); ok && (st.cpu < 0 || st.ppid < 0) {
			t.Fatalf("negative: %+v", st)
		}
	})
}

func TestSampleRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no /proc")
	}
	stop := sampleRSS(os.Getpid(), time.Millisecond)
	peak := stop()
	if peak.root <= 0 || peak.tree < peak.root {
		t.Fatalf("peaks %+v", peak)
	}
	if rss(-1) != 0 {
		t.Fatal("rss of no process")
	}
}

// settle waits for a quiet process tree and gives up on a busy one.
func TestSettle(t *testing.T) {
	start := func(script string) int {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd.Process.Pid
	}
	ctx := context.Background()
	if !settle(ctx, start("sleep 60"), 20*time.Second) {
		t.Error("a sleeping process was not found quiet")
	}
	if settle(ctx, start("while :; do :; done"), time.Second) {
		t.Error("a spinning process was found quiet")
	}
}
