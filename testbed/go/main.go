// parsec-go-peers hosts many go-libp2p-kad-dht server peers in one process for the
// parsec testbed and takes orders as JSON lines on stdin (parsec/testbed/external.py
// is the other end; the Node.js testbed program speaks the same protocol).
//
// Start-up: flags --peers N --host 127.0.0.1 --protocol-prefix /ipfs [--seed S]
// [--latency FILE]; once every peer listens it prints
//
//	{"event":"listening","peers":[{"id":"<base58>","addrs":["/ip4/127.0.0.1/tcp/PORT"]}, ...], ...}
//
// Then one command per stdin line, each with an "id" echoed in its reply
// ({"id":…,"ok":true,…} or {"id":…,"ok":false,"error":"…"}); commands run concurrently
// and replies may come out of order:
//
//	{"cmd":"fill","peers":[{"id","addrs"}...],       fill every routing table directly; the
//	 "ghosts":n,"listing":q}                          last n peers are unreachable ids, each
//	                                                  listed by a table with probability q
//	{"cmd":"provide","peer":i,"key":"<hex multihash>","timeout_s":180}
//	{"cmd":"find_first_provider","peer":i,"key":"<hex multihash>","timeout_s":60}
//	{"cmd":"bootstrap","peer":i,"peers":[{"id","addrs"}...],"timeout_s":60}
//	                                                  join via those peers + go's own refresh
//	{"cmd":"leave","peer":i}                          churn: peer i stops (host and DHT closed,
//	                                                  dials refused); key, port, fill list kept
//	{"cmd":"rejoin","peer":i,"timeout_s":30}          churn: peer i restarts, same key and port,
//	                                                  table refilled from the last fill list, then
//	                                                  go's self-lookup once -> rt_size, error
//	{"cmd":"stats"}                                   ("offline": peers that left, not rejoined)
//	{"cmd":"stop"}                                    (EOF on stdin also stops)
//
// Commands naming an offline peer (provide, ...) answer ok:false "peer i is offline".
//
// Only protocol lines go to stdout; diagnostics go to stderr.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	logging "github.com/ipfs/go-log/v2"
)

type output struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *output) send(v any) {
	line, err := json.Marshal(v)
	if err != nil {
		line, _ = json.Marshal(map[string]any{"event": "error", "error": err.Error()})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(line)
	o.w.WriteByte('\n')
	o.w.Flush()
}

type command struct {
	ID       json.RawMessage `json:"id"`
	Cmd      string          `json:"cmd"`
	Peer     *int            `json:"peer"`
	Key      string          `json:"key"`
	TimeoutS float64         `json:"timeout_s"`
	Peers    []PeerJSON      `json:"peers"`
	Ghosts   int             `json:"ghosts"`  // fill: the last Ghosts peers are unreachable ids
	Listing  *float64        `json:"listing"` // fill: the chance a table lists one (default 1)
	GC       bool            `json:"gc"`
	Kind     string          `json:"kind"`
	Path     string          `json:"path"`
}

func decodeHex(s string) ([]byte, error) {
	raw, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("key is not hex: %w", err)
	}
	return raw, nil
}

func versions() map[string]string {
	out := map[string]string{"libp2p": "go-libp2p", "go": runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			switch dep.Path {
			case "github.com/libp2p/go-libp2p":
				out["libp2p_version"] = dep.Version
			case "github.com/libp2p/go-libp2p-kad-dht":
				out["kad_dht_version"] = dep.Version
			}
		}
	}
	return out
}

func seedNumber(seed string) uint64 {
	if seed == "" {
		return uint64(time.Now().UnixNano())
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	return h.Sum64()
}

func main() {
	var opts Options
	var latencyFile string
	flag.IntVar(&opts.Peers, "peers", 10, "number of DHT peers in this process")
	flag.StringVar(&opts.Host, "host", "127.0.0.1", "IPv4 address to listen on (random TCP ports)")
	flag.StringVar(&opts.ProtocolPrefix, "protocol-prefix", "/ipfs", "DHT protocol prefix (/ipfs -> /ipfs/kad/1.0.0)")
	flag.StringVar(&opts.Seed, "seed", "", "deterministic identities (and jitter/loss draws) from this seed")
	flag.StringVar(&latencyFile, "latency", "", "region RTT matrix (JSON as parsec/data/region-rtt.json); none: no delay")
	flag.IntVar(&opts.ConnLow, "conn-low", 400, "connection manager low water mark per peer")
	flag.IntVar(&opts.ConnHigh, "conn-high", 800, "connection manager high water mark per peer")
	flag.IntVar(&opts.FirstPort, "port", 0, "TCP port of the first peer (a parsec server's own peer); 0: random, as the others")
	flag.BoolVar(&opts.AutoRefresh, "auto-refresh", false, "keep go-libp2p-kad-dht's periodic routing table refresh")
	logLevel := flag.String("log-level", "error", "go-log level for libp2p internals (stderr)")
	flag.Parse()

	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "parsec-go-peers: "+format+"\n", args...)
		os.Exit(2)
	}
	if opts.Peers < 1 {
		fail("--peers must be at least 1")
	}
	if lvl, err := logging.LevelFromString(*logLevel); err == nil {
		logging.SetAllLoggers(lvl)
	}
	if latencyFile != "" {
		m, err := LoadLatency(latencyFile, seedNumber(opts.Seed))
		if err != nil {
			fail("%v", err)
		}
		opts.Latency = m
	}

	started := time.Now()
	peers, err := StartPeers(opts)
	if err != nil {
		fail("starting peers: %v", err)
	}
	out := &output{w: bufio.NewWriterSize(os.Stdout, 1<<16)}
	out.send(map[string]any{
		"event":          "listening",
		"peers":          peers.Describe(),
		"implementation": versions(),
		"startup_s":      time.Since(started).Seconds(),
		"pid":            os.Getpid(),
	})

	ctx, cancel := context.WithCancel(context.Background())
	var inflight sync.WaitGroup
	stopOnce := sync.Once{}
	shutdown := func(code int) {
		stopOnce.Do(func() {
			cancel()
			done := make(chan struct{})
			go func() { peers.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				fmt.Fprintln(os.Stderr, "parsec-go-peers: closing hosts took over 20 s; exiting anyway")
			}
			os.Exit(code)
		})
	}

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var cmd command
			if jerr := json.Unmarshal(line, &cmd); jerr != nil {
				out.send(map[string]any{"id": nil, "ok": false, "error": "bad command line: " + jerr.Error()})
			} else if cmd.Cmd == "stop" {
				out.send(map[string]any{"id": cmd.ID, "ok": true})
				shutdown(0)
			} else {
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					handle(ctx, peers, out, cmd)
				}()
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "parsec-go-peers: reading stdin: %v\n", err)
			}
			shutdown(0)
		}
	}
}

func handle(ctx context.Context, peers *Peers, out *output, cmd command) {
	reply := func(fields map[string]any, err error) {
		if err != nil {
			out.send(map[string]any{"id": cmd.ID, "ok": false, "error": err.Error()})
			return
		}
		fields["id"] = cmd.ID
		fields["ok"] = true
		out.send(fields)
	}
	defer func() {
		if r := recover(); r != nil {
			reply(nil, fmt.Errorf("panic in %s: %v", cmd.Cmd, r))
		}
	}()
	timeout := func(def float64) time.Duration {
		if cmd.TimeoutS > 0 {
			return time.Duration(cmd.TimeoutS * float64(time.Second))
		}
		return time.Duration(def * float64(time.Second))
	}
	peerIndex := func() (int, error) {
		if cmd.Peer == nil {
			return 0, errors.New(`missing "peer"`)
		}
		return *cmd.Peer, nil
	}
	// provide and find_first_provider both name a peer and a key
	peerAndKey := func() (int, cid.Cid, error) {
		i, err := peerIndex()
		if err != nil {
			return 0, cid.Undef, err
		}
		key, err := ParseKey(cmd.Key)
		return i, key, err
	}
	switch cmd.Cmd {
	case "fill":
		listing := 1.0
		if cmd.Listing != nil {
			listing = *cmd.Listing
		}
		res, err := peers.Fill(cmd.Peers, cmd.Ghosts, listing)
		debug.FreeOSMemory() // filling leaves much garbage behind: give it back now
		reply(res, err)
	case "provide":
		i, key, err := peerAndKey()
		if err != nil {
			reply(nil, err)
			return
		}
		pctx, cancel := context.WithTimeout(ctx, timeout(180))
		defer cancel()
		reply(peers.Provide(pctx, i, key))
	case "find_first_provider":
		i, key, err := peerAndKey()
		if err != nil {
			reply(nil, err)
			return
		}
		reply(peers.FindFirstProvider(ctx, i, key, timeout(60)))
	case "bootstrap":
		i, err := peerIndex()
		if err != nil {
			reply(nil, err)
			return
		}
		reply(peers.Bootstrap(ctx, i, cmd.Peers, timeout(60)))
	case "leave":
		i, err := peerIndex()
		if err != nil {
			reply(nil, err)
			return
		}
		reply(peers.Leave(i))
	case "rejoin":
		i, err := peerIndex()
		if err != nil {
			reply(nil, err)
			return
		}
		reply(peers.Rejoin(ctx, i, timeout(30)))
	case "stats":
		if cmd.GC {
			debug.FreeOSMemory() // a full collection, memory returned to the OS
		}
		var mem runtime.MemStats
		runtime.ReadMemStats(&mem)
		sizes := peers.RoutingTableSizes()
		total := 0
		for _, s := range sizes {
			total += s
		}
		reply(map[string]any{
			"peers":          len(sizes),
			"offline":        peers.OfflineCount(),
			"rt_sizes":       sizes,
			"mean_rt":        float64(total) / float64(max(len(sizes), 1)),
			"connections":    peers.Connections(),
			"goroutines":     runtime.NumGoroutine(),
			"mem_sys":        mem.Sys,
			"heap_inuse":     mem.HeapInuse,
			"heap_alloc":     mem.HeapAlloc,
			"stack_inuse":    mem.StackInuse,
			"sys_per_peer":   float64(mem.Sys) / float64(max(len(sizes), 1)),
			"rss":            rss(),
			"rss_per_peer":   float64(rss()) / float64(max(len(sizes), 1)),
			"heap_per_peer":  float64(mem.HeapInuse) / float64(max(len(sizes), 1)),
			"num_gc":         mem.NumGC,
			"implementation": versions(),
		}, nil)
	case "ping":
		reply(map[string]any{}, nil)
	case "debug_profile":
		// Diagnostics: {"cmd":"debug_profile","kind":"heap"|"cpu","path":FILE,"timeout_s":S}
		reply(profile(cmd), nil)
	default:
		reply(nil, fmt.Errorf("unknown command %q", cmd.Cmd))
	}
}

func profile(cmd command) map[string]any {
	f, err := os.Create(cmd.Path)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	defer f.Close()
	switch cmd.Kind {
	case "cpu":
		if err := pprof.StartCPUProfile(f); err != nil {
			return map[string]any{"error": err.Error()}
		}
		time.Sleep(time.Duration(cmd.TimeoutS * float64(time.Second)))
		pprof.StopCPUProfile()
	default:
		runtime.GC()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return map[string]any{"error": err.Error()}
		}
	}
	return map[string]any{"error": "", "path": cmd.Path}
}

// rss is the resident set size in bytes (Linux /proc; 0 elsewhere).
func rss() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb uint64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}
