package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPorts: the ports are distinct, below the ephemeral range where it leaves room, and
// free for TCP and UDP on every interface once Ports has returned.
func TestPorts(t *testing.T) {
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := belowEphemeral()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		if lo < hi && (p < lo || p >= hi) {
			t.Errorf("port %d outside [%d, %d), below the ephemeral ports", p, lo, hi)
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free for TCP: %v", p, err)
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free for UDP: %v", p, err)
		}
		pc.Close()
	}
	addrs, err := Addrs(2)
	if err != nil || len(addrs) != 2 {
		t.Fatalf("Addrs(2) = %v, %v", addrs, err)
	}
	if host, _, _ := net.SplitHostPort(addrs[0]); host != "127.0.0.1" {
		t.Fatalf("Addrs gave %s, want a loopback address", addrs[0])
	}
}
