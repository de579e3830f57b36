package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// CPU accounting (Linux /proc). On two cores, throughput is decided by the
// CPU each request costs, so every point also reports the CPU time the
// processes serving it spent, per successful answer: a number much less
// at the mercy of a shared machine's neighbours than requests per second.

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on every
// Linux ABI).
const userHZ = 100

// procStat is one process's line of /proc/PID/stat, as far as needed.
type procStat struct {
	ppid int
	cpu  time.Duration // utime + stime + cutime + cstime
}

// maxStatLine bounds a /proc/PID/stat read.
const maxStatLine = 4 << 10

// readStat parses /proc/PID/stat: "pid (comm) state ppid ... utime stime
// cutime cstime ..." (fields 4 and 14–17; comm may hold spaces and
// parentheses, so fields are counted after its last ')').
func readStat(path string) (procStat, bool) {
	f, err := os.Open(path)
	if err != nil {
		return procStat{}, false
	}
	defer f.Close()
	buf := make([]byte, maxStatLine)
	n, _ := f.Read(buf)
	return parseStat(buf[:n])
}

func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, false
	}
	num := func(k int) int64 { // field k, 1-based
		v, err := strconv.ParseInt(string(f[k-3]), 10, 64)
		if err != nil || v < 0 || v > 1<<40 { // 1<<40 ticks: 348 years
			return 0
		}
		return v
	}
	ticks := num(14) + num(15) + num(16) + num(17)
	return procStat{ppid: int(num(4)), cpu: time.Duration(ticks) * time.Second / userHZ}, true
}

// procs reads /proc/PID/stat of every process.
func procs() map[int]procStat {
	entries, _ := filepath.Glob("/proc/[0-9]*/stat")
	stats := make(map[int]procStat, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if err != nil {
			continue
		}
		if st, ok := readStat(e); ok {
			stats[pid] = st
		}
	}
	return stats
}

// tree returns root and its live descendants in stats.
func tree(stats map[int]procStat, root int) []int {
	children := map[int][]int{}
	for pid, st := range stats {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var out []int
	seen := map[int]bool{}
	stack := []int{root}
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if _, ok := stats[pid]; ok {
			out = append(out, pid)
		}
		stack = append(stack, children[pid]...)
	}
	return out
}

// treeCPU returns the CPU time of process root and of its live
// descendants (with what their exited, waited-for children used).
func treeCPU(root int) time.Duration { return cpuOf(root, true) }

// DescendantsCPU returns the CPU time of process root's live descendants
// alone: an in-process platform's enclave runtimes, for the platform's
// benchmarks.
func DescendantsCPU(root int) time.Duration { return cpuOf(root, false) }

func cpuOf(root int, withRoot bool) time.Duration {
	stats := procs()
	var total time.Duration
	for _, pid := range tree(stats, root) {
		if withRoot || pid != root {
			total += stats[pid].cpu
		}
	}
	return total
}

// rss returns process pid's resident memory in bytes (/proc/PID/statm's
// second field, in pages); 0 if it cannot be read.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil || len(b) > maxStatLine {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || pages < 0 || pages > 1<<40 {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// memPeak is the highest resident memory seen of a server process and of
// its whole tree (with its enclave runtimes), in bytes.
type memPeak struct{ root, tree int64 }

// sampleRSS samples root's and its tree's resident memory every interval
// until the returned stop is called, which returns the peaks.
func sampleRSS(root int, interval time.Duration) (stop func() memPeak) {
	var (
		mu   sync.Mutex
		peak memPeak
		done = make(chan struct{})
		end  = make(chan struct{})
	)
	sample := func() {
		var sum, r int64
		for _, pid := range tree(procs(), root) {
			m := rss(pid)
			if pid == root {
				r = m
			}
			sum += m
		}
		mu.Lock()
		peak.root, peak.tree = max(peak.root, r), max(peak.tree, sum)
		mu.Unlock()
	}
	go func() {
		defer close(end)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() memPeak {
		close(done)
		<-end
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// cpuSample is the CPU time of this process's tree and of a server
// process's tree (0: the server runs in this process) at one moment.
type cpuSample struct{ self, server time.Duration }

func sampleCPU(server int) cpuSample {
	s := cpuSample{self: treeCPU(os.Getpid())}
	if server > 0 {
		s.server = treeCPU(server)
	}
	return s
}

// cpuPerRequest fills p's CPU figures from the samples around its load:
// the server's CPU per successful answer and, when the server is another
// process, the CPU the bench process (the load generator) spent per
// answer. For a platform in this process the server's figure includes the
// load generator.
func cpuPerRequest(p *Point, before, after cpuSample, server int) {
	ok := p.Requests // successful answers only
	if ok <= 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(ok) }
	if server == 0 {
		p.CPUUsPerReq = per(after.self - before.self)
		p.CPUIncludesClient = true
		return
	}
	srv := after.server - before.server
	p.CPUUsPerReq = per(srv)
	// This process's tree includes the server's (a child): take it off.
	p.ClientCPUUsPerReq = per(max(0, after.self-before.self-srv))
}
