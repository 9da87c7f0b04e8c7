package main

// Churn: a peer leaves (its DHT and host close, so dials to its address are refused while
// the other peers keep their stale entries of it) and later rejoins as a restarted node:
// same key, same listen port, its routing table refilled from the last fill list, then
// go-libp2p-kad-dht's own self-lookup once. When peers leave and come back is decided by
// the Python side (parsec.model.churn.ChurnSchedule); this file only carries the orders out.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// churnState: which peers are offline, the port each listens on, the last fill list.
type churnState struct {
	mu       sync.RWMutex // guards Peers.peers[i] replacement, offline and lastFill
	offline  []bool
	ports    []int
	perPeer  []sync.Mutex // one leave or rejoin of a given peer at a time
	lastFill []candidate
}

func (c *churnState) init(peers []*Peer) error {
	c.offline = make([]bool, len(peers))
	c.ports = make([]int, len(peers))
	c.perPeer = make([]sync.Mutex, len(peers))
	for i, p := range peers {
		port, err := tcpPort(p)
		if err != nil {
			return fmt.Errorf("peer %d: %w", i, err)
		}
		c.ports[i] = port
	}
	return nil
}

func tcpPort(p *Peer) (int, error) {
	for _, a := range p.Host.Network().ListenAddresses() {
		if text, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			return strconv.Atoi(text)
		}
	}
	return 0, errors.New("no TCP listen address")
}

func (c *churnState) remember(cands []candidate) {
	c.mu.Lock()
	c.lastFill = cands
	c.mu.Unlock()
}

// at is peer i, or nil while it is offline.
func (ps *Peers) at(i int) *Peer {
	ps.churn.mu.RLock()
	defer ps.churn.mu.RUnlock()
	if ps.churn.offline != nil && ps.churn.offline[i] {
		return nil
	}
	return ps.peers[i]
}

// OfflineCount is how many peers have left and not rejoined.
func (ps *Peers) OfflineCount() int {
	ps.churn.mu.RLock()
	defer ps.churn.mu.RUnlock()
	n := 0
	for _, off := range ps.churn.offline {
		if off {
			n++
		}
	}
	return n
}

func (ps *Peers) checkIndex(i int) error {
	if i < 0 || i >= len(ps.peers) {
		return fmt.Errorf("peer index %d out of range [0, %d)", i, len(ps.peers))
	}
	return nil
}

// Leave stops peer i: its DHT and host close (listener included), key and port are kept.
func (ps *Peers) Leave(i int) (map[string]any, error) {
	if err := ps.checkIndex(i); err != nil {
		return nil, err
	}
	ps.churn.perPeer[i].Lock()
	defer ps.churn.perPeer[i].Unlock()
	ps.churn.mu.Lock()
	if ps.churn.offline[i] {
		ps.churn.mu.Unlock()
		return nil, fmt.Errorf("peer %d is already offline", i)
	}
	ps.churn.offline[i] = true // from now on commands on it answer "offline"
	p := ps.peers[i]
	ps.churn.mu.Unlock()
	p.DHT.Close()
	p.Host.Close()
	return map[string]any{"offline": ps.OfflineCount()}, nil
}

// Rejoin starts peer i again with its key and port, refills its routing table from the
// last fill list (as fill does for one node), then runs go's self-lookup (GetClosestPeers
// of its own id, what the refresh manager's self-query does) once, bounded by timeout.
// A lookup that fails or times out leaves the peer online and reports "error".
func (ps *Peers) Rejoin(ctx context.Context, i int, timeout time.Duration) (map[string]any, error) {
	if err := ps.checkIndex(i); err != nil {
		return nil, err
	}
	start := time.Now()
	ps.churn.perPeer[i].Lock()
	ps.churn.mu.RLock()
	offline, port, cands := ps.churn.offline[i], ps.churn.ports[i], ps.churn.lastFill
	ps.churn.mu.RUnlock()
	if !offline {
		ps.churn.perPeer[i].Unlock()
		return nil, fmt.Errorf("peer %d is online (only a peer that left can rejoin)", i)
	}
	p, err := newPeer(ps.opts, i, port)
	if err != nil {
		ps.churn.perPeer[i].Unlock()
		return nil, fmt.Errorf("peer %d could not restart on port %d: %w", i, port, err)
	}
	ps.fillOne(p, cands, make([]candidate, len(cands)))
	ps.churn.mu.Lock()
	ps.peers[i] = p
	ps.churn.offline[i] = false
	ps.churn.mu.Unlock()
	ps.churn.perPeer[i].Unlock() // online: a leave may now close it, even mid-lookup

	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errText := ""
	if _, lerr := p.DHT.GetClosestPeers(lctx, string(p.Host.ID())); lerr != nil {
		errText = "self-lookup: " + lerr.Error()
	}
	return map[string]any{"rt_size": p.DHT.RoutingTable().Size(), "duration_ns": time.Since(start).Nanoseconds(),
		"error": errText, "offline": ps.OfflineCount()}, nil
}
