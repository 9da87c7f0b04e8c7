package main

// WAN latency emulation, identical to parsec/model/latency.py (the model every testbed
// implementation shares):
//
//   - region of a peer = f(peer id bytes): u = first 8 bytes of sha256(id) big-endian / 2^64,
//     the first region whose cumulative weight share exceeds u (Python's bisect_right).
//   - every kad message a peer writes reaches the wire rtt[a][b]/2 times
//     max(0, 1 + jitter*N(0,1)) later, or never, with probability loss;
//   - the dialer waits dial_rtts * rtt[a][b] before dialling.
//
// Applied by wrapping the host handed to the DHT: streams the DHT opens (NewStream) and
// streams handed to its handlers (SetStreamHandler) delay what they write (see
// slowStream: the writer does not block, delivery is in order); Connect and NewStream to a
// peer we are not connected to wait the dial delay first. Identify and the other
// libp2p-internal protocols run on the inner host and are not delayed. A lost message
// costs the requester go-libp2p-kad-dht's own read timeout (10 s) for that peer.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// LatencyModel is the region-pair RTT matrix with jitter, loss and the dial cost.
type LatencyModel struct {
	Regions    []string    `json:"regions"`
	RttMs      [][]float64 `json:"rtt_ms"`
	Weights    []float64   `json:"weights"`
	Jitter     float64     `json:"jitter"`
	Loss       float64     `json:"loss"`
	DialRtts   *float64    `json:"dial_rtts"`
	cumulative []float64

	rngMu sync.Mutex
	rng   *rand.Rand

	regionCache sync.Map // peer.ID -> int
}

// LoadLatency reads a matrix file in the format of parsec/data/region-rtt.json.
func LoadLatency(path string, seed uint64) (*LatencyModel, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read latency matrix %s: %w", path, err)
	}
	m := &LatencyModel{}
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("cannot read latency matrix %s: %w", path, err)
	}
	if err := m.init(seed); err != nil {
		return nil, fmt.Errorf("latency matrix %s: %w", path, err)
	}
	return m, nil
}

func (m *LatencyModel) init(seed uint64) error {
	n := len(m.Regions)
	if n == 0 || len(m.RttMs) != n {
		return fmt.Errorf("the RTT matrix must be %dx%d for %d regions", n, n, n)
	}
	for _, row := range m.RttMs {
		if len(row) != n {
			return fmt.Errorf("the RTT matrix must be %dx%d for %d regions", n, n, n)
		}
		for _, v := range row {
			if v < 0 || math.IsNaN(v) {
				return fmt.Errorf("RTTs must be non-negative")
			}
		}
	}
	if len(m.Weights) == 0 {
		m.Weights = make([]float64, n)
		for i := range m.Weights {
			m.Weights[i] = 1
		}
	}
	total := 0.0
	for _, w := range m.Weights {
		if w < 0 {
			return fmt.Errorf("weights: one non-negative number per region, not all zero")
		}
		total += w
	}
	if len(m.Weights) != n || !(total > 0) {
		return fmt.Errorf("weights: one non-negative number per region, not all zero")
	}
	if m.DialRtts == nil {
		two := 2.0
		m.DialRtts = &two
	}
	if m.Loss < 0 || m.Loss >= 1 || m.Jitter < 0 || *m.DialRtts < 0 {
		return fmt.Errorf("loss must be in [0, 1), jitter and dial_rtts >= 0")
	}
	// Same float operations, in the same order, as LatencyModel.__post_init__.
	running := 0.0
	m.cumulative = make([]float64, n)
	for i, w := range m.Weights {
		running += w / total
		m.cumulative[i] = running
	}
	m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return nil
}

// RegionIndexOf is LatencyModel.region_index_of: a function of the peer id bytes alone.
func (m *LatencyModel) RegionIndexOf(p peer.ID) int {
	if v, ok := m.regionCache.Load(p); ok {
		return v.(int)
	}
	sum := sha256.Sum256([]byte(p))
	u := float64(binary.BigEndian.Uint64(sum[:8])) / 18446744073709551616.0 // 2^64, exact
	// bisect_right(cumulative, u): the number of entries <= u.
	idx := sort.Search(len(m.cumulative), func(i int) bool { return m.cumulative[i] > u })
	if idx > len(m.Regions)-1 {
		idx = len(m.Regions) - 1
	}
	m.regionCache.Store(p, idx)
	return idx
}

func (m *LatencyModel) rtt(a, b int) time.Duration {
	return time.Duration(m.RttMs[a][b] * float64(time.Millisecond))
}

// OneWay is the delay of one message from region a to b (with jitter when set).
func (m *LatencyModel) OneWay(a, b int) time.Duration {
	base := float64(m.rtt(a, b)) / 2
	if m.Jitter > 0 {
		m.rngMu.Lock()
		g := m.rng.NormFloat64()
		m.rngMu.Unlock()
		base *= math.Max(0, 1+m.Jitter*g)
	}
	return time.Duration(base)
}

// DialDelay is dial_rtts * rtt: TCP handshake, Noise XX and multistream (~2 round trips).
func (m *LatencyModel) DialDelay(a, b int) time.Duration {
	return time.Duration(*m.DialRtts * float64(m.rtt(a, b)))
}

// Dropped draws one loss event.
func (m *LatencyModel) Dropped() bool {
	if m.Loss <= 0 {
		return false
	}
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	return m.rng.Float64() < m.Loss
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// latencyHost is the host the DHT sees: the real host with delayed kad streams and dials.
type latencyHost struct {
	host.Host
	model  *LatencyModel
	region int
}

func newLatencyHost(h host.Host, model *LatencyModel) *latencyHost {
	return &latencyHost{Host: h, model: model, region: model.RegionIndexOf(h.ID())}
}

func (h *latencyHost) dialWait(ctx context.Context, p peer.ID) error {
	if p == h.ID() || h.Network().Connectedness(p) == network.Connected {
		return nil
	}
	return sleepCtx(ctx, h.model.DialDelay(h.region, h.model.RegionIndexOf(p)))
}

func (h *latencyHost) Connect(ctx context.Context, pi peer.AddrInfo) error {
	if err := h.dialWait(ctx, pi.ID); err != nil {
		return err
	}
	return h.Host.Connect(ctx, pi)
}

func (h *latencyHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.dialWait(ctx, p); err != nil {
		return nil, err
	}
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.wrap(s), nil
}

func (h *latencyHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.wrap(s)) })
}

func (h *latencyHost) SetStreamHandlerMatch(pid protocol.ID, match func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, match, func(s network.Stream) { handler(h.wrap(s)) })
}

func (h *latencyHost) wrap(s network.Stream) network.Stream {
	ss := &slowStream{Stream: s, host: h, remote: h.model.RegionIndexOf(s.Conn().RemotePeer())}
	ss.idle = sync.NewCond(&ss.mu)
	return ss
}

// continuationWindow: a write that follows the previous one on the same stream this
// closely, with no read in between, is the rest of the same message (the DHT writes a
// message through a 4 KiB bufio.Writer, so a large one arrives in several writes): it
// shares the loss draw of the message it continues.
const continuationWindow = 2 * time.Millisecond

// slowStream delivers what is written after the one-way delay, like a link would: Write
// queues a copy and returns at once (a sender does not wait for delivery; a request and
// its response still cost one RTT, a one-way message such as ADD_PROVIDER costs its
// sender nothing), and one goroutine per busy stream writes the queue in order, each
// chunk at its due time. Close and CloseWrite wait for the queue; Reset drops it. A write
// error surfaces on the next Write/Close.
type slowStream struct {
	network.Stream
	host   *latencyHost
	remote int

	mu        sync.Mutex
	idle      *sync.Cond // signalled when the delivery goroutine stops
	queue     []delayed
	sending   bool
	lastDue   time.Time
	err       error
	readSince bool
	lastWrite time.Time
	dropping  bool
}

type delayed struct {
	data []byte
	due  time.Time
}

func (s *slowStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if n > 0 {
		s.mu.Lock()
		s.readSince = true
		s.mu.Unlock()
	}
	return n, err
}

func (s *slowStream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	now := time.Now()
	continuation := !s.readSince && !s.lastWrite.IsZero() && now.Sub(s.lastWrite) < continuationWindow
	if !continuation {
		s.dropping = s.host.model.Dropped()
	}
	s.readSince, s.lastWrite = false, now
	if s.dropping {
		return len(b), nil // lost on the way; the writer does not know
	}
	due := now.Add(s.host.model.OneWay(s.host.region, s.remote))
	if due.Before(s.lastDue) {
		due = s.lastDue // in order, even with jitter
	}
	s.lastDue = due
	s.queue = append(s.queue, delayed{data: append([]byte(nil), b...), due: due})
	if !s.sending {
		s.sending = true
		go s.deliver()
	}
	return len(b), nil
}

func (s *slowStream) deliver() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.err != nil {
			s.queue, s.sending = nil, false
			s.idle.Broadcast()
			s.mu.Unlock()
			return
		}
		next := s.queue[0]
		s.mu.Unlock()
		if wait := time.Until(next.due); wait > 0 {
			time.Sleep(wait)
		}
		_, err := s.Stream.Write(next.data)
		s.mu.Lock()
		if len(s.queue) > 0 {
			s.queue = s.queue[1:]
		}
		if err != nil && s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
}

// flush waits until everything written so far was delivered (or failed).
func (s *slowStream) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.sending {
		s.idle.Wait()
	}
	return s.err
}

func (s *slowStream) Close() error {
	s.flush()
	return s.Stream.Close()
}

func (s *slowStream) CloseWrite() error {
	s.flush()
	return s.Stream.CloseWrite()
}

func (s *slowStream) Reset() error {
	s.mu.Lock()
	s.queue = nil
	if s.err == nil {
		s.err = network.ErrReset
	}
	s.mu.Unlock()
	return s.Stream.Reset()
}

func (s *slowStream) ResetWithError(code network.StreamErrorCode) error {
	s.mu.Lock()
	s.queue = nil
	if s.err == nil {
		s.err = network.ErrReset
	}
	s.mu.Unlock()
	return s.Stream.ResetWithError(code)
}
