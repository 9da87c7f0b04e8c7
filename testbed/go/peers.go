package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
)

// Options of the whole process (one set of flags for every peer).
type Options struct {
	Peers          int
	Host           string
	ProtocolPrefix string
	Seed           string
	Latency        *LatencyModel
	ConnLow        int
	ConnHigh       int
	AutoRefresh    bool
	FirstPort      int // TCP port of peer 0 (0: a random one, as every other peer's)
}

// Peer is one libp2p host with its DHT.
type Peer struct {
	Host host.Host // the real host
	DHT  *dht.IpfsDHT
}

// Peers hosts every peer of this process, plus what the last fill told us.
type Peers struct {
	opts  Options
	peers []*Peer // peers[i] is replaced when peer i rejoins (churn.go): read it through at()

	fillMu    sync.RWMutex
	fillAddrs map[peer.ID][]ma.Multiaddr // addresses given by fill: never forgotten for RT peers
	listing   float64                    // the last fill's chance that a table lists a ghost

	churn churnState // who is offline, their ports, the last fill list (churn.go)
}

func identity(seed string, i int) (crypto.PrivKey, error) {
	if seed == "" {
		priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
		return priv, err
	}
	// A reproducible Ed25519 identity per (seed, index). Different processes of one
	// testbed must get different seeds.
	s := sha256.Sum256([]byte(fmt.Sprintf("%s/go/%d", seed, i)))
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s[:]))
}

// newPeer starts peer i listening on port (0: a random one).
func newPeer(opts Options, i int, port int) (*Peer, error) {
	priv, err := identity(opts.Seed, i)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(opts.ConnLow, opts.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(fmt.Sprintf("/ip4/%s/tcp/%d", opts.Host, port)),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		// Hundreds of peers on loopback: no resource limits, a generous connection manager.
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.ConnectionManager(cm),
		libp2p.NonPublicAddrPublishing(true), // loopback addresses are all we have
		libp2p.DisableRelay(),
		libp2p.ForceReachabilityPublic(), // no AutoNAT probing between testbed peers
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
		libp2p.UserAgent("parsec-go-peers"),
	)
	if err != nil {
		return nil, err
	}
	var dhtHost host.Host = h
	if opts.Latency != nil {
		dhtHost = newLatencyHost(h, opts.Latency)
	}
	dopts := []dht.Option{
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(protocol.ID(opts.ProtocolPrefix)),
		dht.BucketSize(fillK),
		dht.BootstrapPeers(), // no public bootstrap peers: the testbed fills tables itself
	}
	if !opts.AutoRefresh {
		// The testbed fills routing tables directly (design.md); a network refresh from
		// every peer every 10 minutes would only add CPU load to the measurements.
		dopts = append(dopts, dht.DisableAutoRefresh())
	}
	d, err := dht.New(dhtHost, dopts...)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &Peer{Host: h, DHT: d}, nil
}

// StartPeers creates every host (in parallel, bounded) and its DHT.
func StartPeers(opts Options) (*Peers, error) {
	ps := &Peers{opts: opts, peers: make([]*Peer, opts.Peers), fillAddrs: map[peer.ID][]ma.Multiaddr{}}
	errs := make([]error, opts.Peers)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := range work {
				port := 0
				if i == 0 {
					port = opts.FirstPort
				}
				ps.peers[i], errs[i] = newPeer(opts, i, port)
			}
		})
	}
	for i := 0; i < opts.Peers; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		ps.Close()
		return nil, err
	}
	if err := ps.churn.init(ps.peers); err != nil {
		ps.Close()
		return nil, err
	}
	return ps, nil
}

// Close closes every DHT and host (of the peers online).
func (ps *Peers) Close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range ps.peers {
		p := ps.at(i)
		if p == nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p.DHT.Close()
			p.Host.Close()
		})
	}
	wg.Wait()
}

// get is peer i for a command: an error when i is out of range or the peer is offline.
func (ps *Peers) get(i int) (*Peer, error) {
	if i < 0 || i >= len(ps.peers) {
		return nil, fmt.Errorf("peer index %d out of range [0, %d)", i, len(ps.peers))
	}
	p := ps.at(i)
	if p == nil {
		return nil, fmt.Errorf("peer %d is offline (it left; rejoin brings it back)", i)
	}
	return p, nil
}

// PeerJSON is a peer of the control protocol.
type PeerJSON struct {
	ID     string   `json:"id"`
	Addrs  []string `json:"addrs"`
	Region string   `json:"region,omitempty"`
}

func listenAddrs(h host.Host) []string {
	var out []string
	for _, a := range h.Network().ListenAddresses() {
		out = append(out, a.String())
	}
	return out
}

// Describe lists the peers as the listening event reports them.
func (ps *Peers) Describe() []PeerJSON {
	out := make([]PeerJSON, len(ps.peers))
	for i, p := range ps.peers {
		out[i] = PeerJSON{ID: p.Host.ID().String(), Addrs: listenAddrs(p.Host)}
		if m := ps.opts.Latency; m != nil {
			out[i].Region = m.Regions[m.RegionIndexOf(p.Host.ID())]
		}
	}
	return out
}

type candidate struct {
	id     peer.ID
	key    kb.ID
	prefix uint64 // the key's first 64 bits: XOR of two prefixes ranks peers by distance
	addrs  []ma.Multiaddr
	ghost  bool // an unreachable id: listed by a table only if listsGhost says so
}

// listsGhost: whether the table of peer owner lists unreachable id ghost, a fixed draw per
// pair with the given probability: the first 8 bytes of sha256(owner || ghost), big-endian,
// below probability * 2^64 (parsec.model.stale.lists draws the same way for the py peers).
func listsGhost(owner, ghost peer.ID, probability float64) bool {
	if probability >= 1 {
		return true
	}
	if probability <= 0 {
		return false
	}
	sum := sha256.Sum256(append([]byte(owner), []byte(ghost)...))
	return float64(binary.BigEndian.Uint64(sum[:8])) < probability*18446744073709551616.0
}

// parsePeers reads peers of the control protocol ({"id","addrs"}); a trailing /p2p/<id>
// on an address is dropped (the peerstore keys addresses by peer already).
func parsePeers(given []PeerJSON) ([]candidate, error) {
	cands := make([]candidate, 0, len(given))
	for _, g := range given {
		id, err := peer.Decode(g.ID)
		if err != nil {
			return nil, fmt.Errorf("bad peer id %q: %w", g.ID, err)
		}
		var addrs []ma.Multiaddr
		for _, s := range g.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("bad address %q of %s: %w", s, g.ID, err)
			}
			if transport, last := ma.SplitLast(a); last != nil && last.Protocol().Code == ma.P_P2P {
				a = transport
			}
			if len(a) > 0 {
				addrs = append(addrs, a)
			}
		}
		key := kb.ConvertPeerID(id)
		cands = append(cands, candidate{id: id, key: key, prefix: binary.BigEndian.Uint64(key[:8]), addrs: addrs})
	}
	return cands, nil
}

// Fill puts the given peers straight into every local routing table (go's k-buckets
// decide who stays: at most 20 per bucket, only the last bucket splits). Candidates are
// offered closest to the local key first, so each bucket keeps the closest peers of its
// range as the py testbed does; passes repeat while the table keeps unfolding. Addresses
// go to the peerstore without expiry, for the peers that made it into the table only.
//
// The last ghosts of the given peers are unreachable ids; each table lists each of them
// with probability listing (parsec.model.stale: few tables list a given dead id).
func (ps *Peers) Fill(given []PeerJSON, ghosts int, listing float64) (map[string]any, error) {
	cands, err := parsePeers(given)
	if err != nil {
		return nil, err
	}
	if ghosts < 0 || ghosts > len(cands) || listing < 0 || listing > 1 {
		return nil, fmt.Errorf("bad fill: %d ghosts of %d peers, listing %g", ghosts, len(cands), listing)
	}
	for i := len(cands) - ghosts; i < len(cands); i++ {
		cands[i].ghost = true
	}
	ps.fillMu.Lock()
	for _, c := range cands {
		ps.fillAddrs[c.id] = c.addrs
	}
	ps.listing = listing
	ps.fillMu.Unlock()
	ps.churn.remember(cands)

	sizes := make([]int, len(ps.peers))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			order := make([]candidate, len(cands))
			for i := range work {
				if p := ps.at(i); p != nil { // an offline peer is filled when it rejoins
					sizes[i] = ps.fillOne(p, cands, order)
				}
			}
		})
	}
	for i := range ps.peers {
		work <- i
	}
	close(work)
	wg.Wait()
	total, lo, hi := 0, -1, 0
	for _, s := range sizes {
		total += s
		if lo < 0 || s < lo {
			lo = s
		}
		hi = max(hi, s)
	}
	mean := 0.0
	if len(sizes) > 0 {
		mean = float64(total) / float64(len(sizes))
	}
	return map[string]any{"peers": len(ps.peers), "mean_rt": mean, "min_rt": lo, "max_rt": hi}, nil
}

func (ps *Peers) fillOne(p *Peer, cands []candidate, order []candidate) int {
	self := p.Host.ID()
	selfPrefix := binary.BigEndian.Uint64(kb.ConvertPeerID(self)[:8])
	// rank by the first 64 bits of the XOR distance (ties need > 2^32 peers to matter),
	// then keep the k closest of every common-prefix length: all a standard table can hold,
	// so the table is offered ~k*log2(N/k) peers instead of all N
	order = order[:0]
	ps.fillMu.RLock()
	listing := ps.listing
	ps.fillMu.RUnlock()
	for _, c := range cands {
		if c.id != self && (!c.ghost || listsGhost(self, c.id, listing)) {
			order = append(order, c)
		}
	}
	sort.Slice(order, func(a, b int) bool { return order[a].prefix^selfPrefix < order[b].prefix^selfPrefix })
	perCpl := make(map[int]int)
	kept := order[:0]
	for _, c := range order {
		cpl := bits.LeadingZeros64(c.prefix ^ selfPrefix)
		if perCpl[cpl] < fillK {
			perCpl[cpl]++
			kept = append(kept, c)
		}
	}
	order = kept
	rt := p.DHT.RoutingTable()
	in := make(map[peer.ID]bool, len(order))
	for _, id := range rt.ListPeers() {
		in[id] = true
	}
	for pass := 0; pass < 8; pass++ {
		added := 0
		for _, c := range order {
			if in[c.id] {
				continue
			}
			if ok, _ := rt.TryAddPeer(c.id, true, false); ok {
				in[c.id] = true
				added++
			}
		}
		if added == 0 {
			break
		}
	}
	byID := make(map[peer.ID][]ma.Multiaddr, len(order))
	for _, c := range order {
		byID[c.id] = c.addrs
	}
	pstore := p.Host.Peerstore()
	for _, id := range rt.ListPeers() {
		if addrs := byID[id]; len(addrs) > 0 {
			pstore.AddAddrs(id, addrs, peerstore.PermanentAddrTTL)
		}
	}
	return rt.Size()
}

// ParseKey reads a hex sha2-256 multihash as a CID (the DHT key is its multihash).
func ParseKey(text string) (cid.Cid, error) {
	raw, err := decodeHex(text)
	if err != nil {
		return cid.Undef, err
	}
	decoded, err := mh.Decode(raw)
	if err != nil {
		return cid.Undef, fmt.Errorf("key is not a multihash: %w", err)
	}
	if decoded.Code != mh.SHA2_256 || decoded.Length != 32 {
		return cid.Undef, fmt.Errorf("key must be a sha2-256 multihash, got code 0x%x length %d", decoded.Code, decoded.Length)
	}
	return cid.NewCidV1(cid.Raw, mh.Multihash(raw)), nil
}

// Provide runs go-libp2p-kad-dht's own Provide and times that call alone.
func (ps *Peers) Provide(ctx context.Context, i int, key cid.Cid) (map[string]any, error) {
	p, err := ps.get(i)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	perr := p.DHT.Provide(ctx, key, true)
	elapsed := time.Since(start)
	out := map[string]any{"duration_ns": elapsed.Nanoseconds(), "error": "", "rt_size": p.DHT.RoutingTable().Size()}
	if perr != nil {
		out["error"] = perr.Error()
	}
	return out, nil
}

// FindFirstProvider times FindProvidersAsync(ctx, key, 1) up to the first provider record
// (TTFPR); afterwards the provider's connections are closed and its addresses forgotten
// (kept only when it sits in our routing table, with the addresses fill gave).
func (ps *Peers) FindFirstProvider(ctx context.Context, i int, key cid.Cid, timeout time.Duration) (map[string]any, error) {
	p, err := ps.get(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	ch := p.DHT.FindProvidersAsync(ctx, key, 1)
	var found peer.AddrInfo
	var ok bool
	select {
	case found, ok = <-ch:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	cancel()
	out := map[string]any{"duration_ns": elapsed.Nanoseconds(), "provider": "", "error": "",
		"rt_size": p.DHT.RoutingTable().Size()}
	switch {
	case ok:
		out["provider"] = found.ID.String()
		ps.forget(p, found.ID)
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled):
		out["error"] = fmt.Sprintf("no provider within %s: %v", timeout, ctx.Err())
	default:
		out["error"] = "not found"
	}
	return out, nil
}

func (ps *Peers) forget(p *Peer, other peer.ID) {
	if other == p.Host.ID() {
		return
	}
	pstore := p.Host.Peerstore()
	before := pstore.Addrs(other)
	_ = p.Host.Network().ClosePeer(other)
	pstore.ClearAddrs(other)
	if p.DHT.RoutingTable().Find(other) != "" {
		ps.fillMu.RLock()
		addrs := ps.fillAddrs[other]
		ps.fillMu.RUnlock()
		if len(addrs) > 0 {
			pstore.AddAddrs(other, addrs, peerstore.PermanentAddrTTL)
		} else if len(before) > 0 {
			// A routing-table peer learned at run time (a bootstrapped peer's table is
			// mostly such peers): keep what we knew, with the TTL go's DHT keeps
			// extending for table peers (persistRTPeersInPeerStore).
			pstore.AddAddrs(other, before, peerstore.RecentlyConnectedAddrTTL)
		}
	}
}

// bootstrapAdmitWait bounds the wait for connected bootstrap peers to enter the routing
// table (identify, then go's FIND_NODE liveness check, run asynchronously).
const bootstrapAdmitWait = 10 * time.Second

// fillK is the bucket size k of every peer's table (as the py and js testbed peers)
const fillK = 20

// Bootstrap joins local peer i to the DHT the way a go-libp2p-kad-dht node joins, instead
// of a direct fill: the bootstrap peers' addresses go to the peerstore and each is dialled
// (host.Connect, as go's fixLowPeers does for its BootstrapPeers); identify then hands
// them to the DHT (EvtPeerIdentificationCompleted -> peerFound -> FIND_NODE check -> table);
// once they are in the table, go's own routing-table refresh runs once: the refresh manager's
// self-query plus one lookup per common-prefix length (what IpfsDHT.Bootstrap triggers
// with RefreshNoWait; RefreshRoutingTable is the same request, whose channel tells when
// it is done). Auto-refresh stays off: this is a one-shot join. The whole command is
// bounded by timeout. The reply reports the routing-table size afterwards and the time
// the whole join took; a join that did not complete answers with error set.
func (ps *Peers) Bootstrap(ctx context.Context, i int, given []PeerJSON, timeout time.Duration) (map[string]any, error) {
	p, err := ps.get(i)
	if err != nil {
		return nil, err
	}
	cands, err := parsePeers(given)
	if err != nil {
		return nil, err
	}
	self := p.Host.ID()
	targets := make([]candidate, 0, len(cands))
	for _, c := range cands {
		if c.id != self && len(c.addrs) > 0 {
			targets = append(targets, c)
		}
	}
	if len(targets) == 0 {
		return nil, errors.New(`bootstrap needs "peers": [{"id","addrs"}...] other than the peer itself, with addresses`)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	rt := p.DHT.RoutingTable()
	result := func(connected int, errText string) map[string]any {
		return map[string]any{"rt_size": rt.Size(), "duration_ns": time.Since(start).Nanoseconds(),
			"error": errText, "connected": connected}
	}

	// 1. Addresses to the peerstore (remembered like fill's: forget keeps them for table
	//    peers), then dial, a few at a time. The DHT's host: with --latency, dials pay
	//    the dial delay.
	h := p.DHT.Host()
	ps.fillMu.Lock()
	for _, c := range targets {
		ps.fillAddrs[c.id] = c.addrs
	}
	ps.fillMu.Unlock()
	var mu sync.Mutex
	var connected []peer.ID
	var dialErrs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, c := range targets {
		h.Peerstore().AddAddrs(c.id, c.addrs, peerstore.PermanentAddrTTL)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := h.Connect(ctx, peer.AddrInfo{ID: c.id, Addrs: c.addrs})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				dialErrs = append(dialErrs, fmt.Errorf("%s: %w", c.id, err))
			} else {
				connected = append(connected, c.id)
			}
		})
	}
	wg.Wait()
	if len(connected) == 0 {
		return result(0, fmt.Sprintf("could not connect to any bootstrap peer: %v", errors.Join(dialErrs...))), nil
	}

	// 2. Wait (bounded) until the connected bootstrap peers are in the routing table.
	admit, stopAdmit := context.WithTimeout(ctx, bootstrapAdmitWait)
	for {
		in := 0
		for _, id := range connected {
			if rt.Find(id) != "" {
				in++
			}
		}
		if in == len(connected) || sleepCtx(admit, 20*time.Millisecond) != nil {
			break
		}
	}
	stopAdmit()
	if rt.Size() == 0 {
		if ctx.Err() != nil {
			return result(len(connected), fmt.Sprintf("bootstrap not done within %s: %v", timeout, ctx.Err())), nil
		}
		return result(len(connected), "no bootstrap peer entered the routing table"), nil
	}

	// 3. go's own routing-table refresh, once, waited for.
	select {
	case rerr := <-p.DHT.RefreshRoutingTable():
		if rerr != nil {
			return result(len(connected), "refresh: "+rerr.Error()), nil
		}
	case <-ctx.Done():
		return result(len(connected), fmt.Sprintf("bootstrap not done within %s: %v", timeout, ctx.Err())), nil
	}
	return result(len(connected), ""), nil
}

// RoutingTableSizes of every local peer, in order.
func (ps *Peers) RoutingTableSizes() []int {
	out := make([]int, len(ps.peers))
	for i := range ps.peers {
		if p := ps.at(i); p != nil {
			out[i] = p.DHT.RoutingTable().Size()
		}
	}
	return out
}

// Connections open across all local hosts.
func (ps *Peers) Connections() int {
	n := 0
	for i := range ps.peers {
		if p := ps.at(i); p != nil {
			n += len(p.Host.Network().Conns())
		}
	}
	return n
}
