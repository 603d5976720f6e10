// Package freeport finds ports for the servers tests start in processes of their own
// (bbsim, Dovecot, PostgreSQL), which bind them a moment after they were found free.
//
// The ports are drawn at random below the kernel's range of ephemeral ports when it
// leaves room: an ephemeral port found free can be taken in that moment by any outgoing
// connection or listener on port 0 of the machine, those of tests running beside this one
// included, and the server then fails with "address in use".
package freeport

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
)

// Ports returns n distinct ports, each free at the time of the call for TCP and UDP alike
// on every interface (a test may give one to a DNS server, or bind one beyond loopback).
func Ports(n int) ([]int, error) {
	lo, hi := belowEphemeral()
	var out []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("freeport: no %d free ports in %d tries", n, tries)
		}
		port := "0" // the kernel's choice, where there is no room below its range
		if lo < hi {
			port = strconv.Itoa(lo + rand.IntN(hi-lo))
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("", port))
		if err != nil {
			continue
		}
		held = append(held, ln)
		p := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		held = append(held, pc)
		out = append(out, p)
	}
	return out, nil
}

// Addrs returns n loopback addresses ("127.0.0.1:port") of Ports.
func Addrs(n int) ([]string, error) {
	ports, err := Ports(n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out, nil
}

// belowEphemeral is a range of ports, lo inclusive and hi exclusive, below the kernel's
// ephemeral ones; empty where those start too low to leave room, or are not known.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first int
	if _, err := fmt.Sscan(string(b), &first); err != nil || first <= 12000 {
		return 0, 0
	}
	return 10000, first
}
