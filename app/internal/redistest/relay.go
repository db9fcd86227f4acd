package redistest

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Relay stands between a client and the server, on an address of its own,
// to stage what a real Redis does when it exits mid-command: it runs the
// command, and the client never gets the reply.
type Relay struct {
	Addr   string
	target string
	t      testing.TB

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	lose  atomic.Bool // the next command runs, its reply is lost, and the relay goes down
}

// Relay starts a relay to s, closed when the test ends.
func (s *Server) Relay() *Relay {
	s.t.Helper()
	r := &Relay{target: s.Addr, t: s.t, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	r.Addr = ln.Addr().String()
	r.serve(ln)
	s.t.Cleanup(r.down)
	return r
}

// LoseNextReply makes the next command reach Redis and run, then drops its
// reply and goes down: every connection closed, new ones refused, until Up.
func (r *Relay) LoseNextReply() { r.lose.Store(true) }

// Up listens again on the same address, as a restarted Redis would.
func (r *Relay) Up() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.Addr)
	if err != nil {
		r.t.Fatalf("relay up again on %s: %v", r.Addr, err)
	}
	r.serve(ln)
}

func (r *Relay) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go r.relay(client)
		}
	}()
}

// down closes the listener and every connection, as an exiting Redis does.
func (r *Relay) down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
}

func (r *Relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil { // went down while this connection was being set up
		return false
	}
	for _, c := range conns {
		r.conns[c] = true
	}
	return true
}

func (r *Relay) relay(client net.Conn) {
	server, err := net.Dial("tcp", r.target)
	if err != nil || !r.track(client, server) {
		client.Close()
		if server != nil {
			server.Close()
		}
		return
	}
	defer func() {
		r.mu.Lock()
		delete(r.conns, client)
		delete(r.conns, server)
		r.mu.Unlock()
	}()
	var dropping atomic.Bool
	go func() { // replies, unless this connection is losing one
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !dropping.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			losing := r.lose.CompareAndSwap(true, false)
			dropping.Store(losing)
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
			if losing {
				// Let Redis run it, then go away without a word.
				time.Sleep(100 * time.Millisecond)
				r.down()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				server.Close()
			}
			return
		}
	}
}
