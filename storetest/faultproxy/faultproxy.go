// Package faultproxy is a TCP proxy for fault-injection tests of server
// backends: it stands between a store and its database and, on command,
// resets every open connection, refuses new ones (an outage), delays the
// traffic, or cuts the connection that sends a byte pattern (such as a
// COMMIT statement) after or instead of forwarding it.
//
//	p, err := faultproxy.Start("127.0.0.1:5432")
//	...
//	defer p.Close()
//	store := open(p.Addr()) // the store dials the proxy
//	p.ResetAll()            // every pooled connection is now dead
//
// The proxy copies bytes and understands no protocol; a pattern split
// across two reads of the client's stream is still found. It is safe for
// concurrent use.
package faultproxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections from Addr to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[*link]struct{}
	refuse  bool
	delay   time.Duration
	trap    *trap
	closed  bool
	wg      sync.WaitGroup
	dialed  atomic.Int64
	refused atomic.Int64
}

// trap is an armed CutOn.
type trap struct {
	pattern []byte
	forward bool
	fired   chan struct{}
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	once           sync.Once
	muted          atomic.Bool // the server's answers are no longer passed on
}

// reset closes both sides with an RST (SO_LINGER 0).
func (l *link) reset() { l.cut(false) }

// cut resets the client's side; the server's side is reset too, or, when
// delivered is true, closed normally so that the bytes already written
// reach the server before it sees the end of the stream.
func (l *link) cut(delivered bool) {
	l.once.Do(func() {
		abort(l.client)
		if delivered {
			l.server.Close()
		} else {
			abort(l.server)
		}
	})
}

// abort closes c with an RST where TCP allows it.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Start listens on a free port of 127.0.0.1 and forwards every connection
// to target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Close stops listening, resets every connection and waits for the
// proxy's goroutines to end. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.ResetAll()
	p.wg.Wait()
	return err
}

// ResetAll resets every open connection, as a server restart, a failover
// or an idle-timeout of a proxy or firewall does. New connections are
// forwarded as before.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
}

// Refuse makes the proxy close every new connection at once (on) or
// forward them again (off). With ResetAll it simulates an outage.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Delay holds every chunk the client sends for d before forwarding it
// (0: none).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// CutOn arms a one-shot trap: the first chunk a client sends that
// completes pattern is forwarded to the server (forward true) or dropped
// (false), and then that connection is reset, so the client never gets the
// answer. The returned channel is closed when the trap fires. Arming again
// replaces an unfired trap.
func (p *Proxy) CutOn(pattern []byte, forward bool) <-chan struct{} {
	t := &trap{pattern: bytes.Clone(pattern), forward: forward, fired: make(chan struct{})}
	p.mu.Lock()
	p.trap = t
	p.mu.Unlock()
	return t.fired
}

// Disarm removes an unfired trap.
func (p *Proxy) Disarm() {
	p.mu.Lock()
	p.trap = nil
	p.mu.Unlock()
}

// Stats returns how many connections were forwarded and refused.
func (p *Proxy) Stats() (forwarded, refused int64) { return p.dialed.Load(), p.refused.Load() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			p.refused.Add(1)
			abort(client)
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		p.dialed.Add(1)
		l := &link{client: client, server: server}
		p.mu.Lock()
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			l.downstream()
			l.reset()
		}()
		go func() {
			defer p.wg.Done()
			p.upstream(l)
			l.reset()
			p.mu.Lock()
			delete(p.conns, l)
			p.mu.Unlock()
		}()
	}
}

// upstream copies the client's bytes to the server, applying the delay
// and the trap.
func (p *Proxy) upstream(l *link) {
	buf := make([]byte, 32<<10)
	var tail []byte // the end of the previous chunk, for patterns split across reads
	for {
		n, err := l.client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			delay, t := p.delay, p.trap
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			if t != nil && bytes.Contains(append(tail, chunk...), t.pattern) {
				p.mu.Lock()
				mine := p.trap == t
				if mine {
					p.trap = nil
				}
				p.mu.Unlock()
				if mine {
					l.muted.Store(true) // the client never gets the answer
					if t.forward {
						l.server.Write(chunk)
					}
					close(t.fired) // before the client can see the cut
					l.cut(t.forward)
					return
				}
			}
			if _, werr := l.server.Write(chunk); werr != nil {
				return
			}
			if t != nil {
				keep := min(len(t.pattern)-1, len(chunk))
				tail = append(tail[:0], chunk[len(chunk)-keep:]...)
			}
		}
		if err != nil {
			return
		}
	}
}

// downstream copies the server's bytes to the client until the link is
// muted or either side closes.
func (l *link) downstream() {
	buf := make([]byte, 32<<10)
	for {
		n, err := l.server.Read(buf)
		if n > 0 && !l.muted.Load() {
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
