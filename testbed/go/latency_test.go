package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Vectors from parsec/model/latency.py: LatencyModel.region_index_of(b"peer-<i>").
func TestRegionsMatchThePythonModel(t *testing.T) {
	cases := []struct {
		file string
		want []int
	}{
		{"../../parsec/data/region-rtt.json", []int{1, 2, 2, 3, 4, 6, 5, 6, 2, 4, 6, 2, 1, 1, 2, 1, 5, 6, 7, 6, 7, 1, 1, 2}},
		{"", []int{0, 2, 2, 2, 2, 2, 2, 2, 0, 2, 2, 0, 0, 0, 2, 0, 2, 2, 2, 2, 2, 0, 0, 0}},
	}
	for _, c := range cases {
		path := c.file
		if path == "" {
			path = filepath.Join(t.TempDir(), "m.json")
			doc := `{"regions":["a","b","c"],"rtt_ms":[[0,1,2],[1,0,3],[2,3,0]],"weights":[0.2,0,0.8]}`
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		m, err := LoadLatency(path, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range c.want {
			if got := m.RegionIndexOf(peer.ID(fmt.Sprintf("peer-%d", i))); got != want {
				t.Errorf("%s: peer-%d in region %d, python says %d", c.file, i, got, want)
			}
		}
	}
}

func TestDelays(t *testing.T) {
	m, err := LoadLatency("../../parsec/data/region-rtt.json", 1)
	if err != nil {
		t.Fatal(err)
	}
	// us-east-2 (1) to eu-central-1 (3): 104 ms RTT
	if got := m.OneWay(1, 3); got != 52*time.Millisecond {
		t.Errorf("one-way %v", got)
	}
	if got := m.DialDelay(1, 3); got != 208*time.Millisecond {
		t.Errorf("dial %v", got)
	}
	if m.Dropped() {
		t.Errorf("loss 0 dropped a message")
	}
}

func TestBadMatrices(t *testing.T) {
	for _, doc := range []string{
		`{"regions":["a","b"],"rtt_ms":[[0,1]]}`,
		`{"regions":["a"],"rtt_ms":[[0]],"weights":[0]}`,
		`{"regions":["a"],"rtt_ms":[[-1]]}`,
		`{"regions":["a"],"rtt_ms":[[0]],"loss":1}`,
	} {
		path := filepath.Join(t.TempDir(), "m.json")
		os.WriteFile(path, []byte(doc), 0o644)
		if _, err := LoadLatency(path, 1); err == nil {
			t.Errorf("accepted %s", doc)
		}
	}
}
