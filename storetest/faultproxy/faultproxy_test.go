package faultproxy_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux/storetest/faultproxy"
)

// echoServer answers every line with the same line, and reports the lines
// it received.
func echoServer(t *testing.T) (addr string, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					got <- strings.TrimSpace(line)
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return strings.TrimSpace(s), err
}

func TestProxy(t *testing.T) {
	target, lines := echoServer(t)
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	t.Run("forwards", func(t *testing.T) {
		c, r := dial(t, p)
		if got, err := roundTrip(c, r, "hello"); err != nil || got != "hello" {
			t.Fatalf("got %q, %v", got, err)
		}
		<-lines
	})
	t.Run("ResetAll kills open connections", func(t *testing.T) {
		c, r := dial(t, p)
		if _, err := roundTrip(c, r, "before"); err != nil {
			t.Fatal(err)
		}
		<-lines
		p.ResetAll()
		if _, err := roundTrip(c, r, "after"); err == nil {
			t.Fatal("a reset connection still answered")
		}
	})
	t.Run("Refuse closes new connections until lifted", func(t *testing.T) {
		p.Refuse(true)
		// The proxy resets the connection as soon as it accepts it: the
		// dial itself may see the reset, or the first read.
		if c, err := net.Dial("tcp", p.Addr()); err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := roundTrip(c, bufio.NewReader(c), "refused")
			c.Close()
			if err == nil {
				p.Refuse(false)
				t.Fatal("a refused connection answered")
			}
		}
		p.Refuse(false)
		c, r := dial(t, p)
		if got, err := roundTrip(c, r, "again"); err != nil || got != "again" {
			t.Fatalf("after Refuse(false): %q, %v", got, err)
		}
		<-lines
	})
	t.Run("Delay holds the client's bytes", func(t *testing.T) {
		c, r := dial(t, p)
		p.Delay(50 * time.Millisecond)
		start := time.Now()
		got, err := roundTrip(c, r, "slow")
		took := time.Since(start)
		p.Delay(0)
		if err != nil || got != "slow" {
			t.Fatalf("got %q, %v", got, err)
		}
		// Not a timing assertion on the system under test: the proxy
		// itself sleeps at least this long before forwarding.
		if took < 50*time.Millisecond {
			t.Fatalf("the round trip took %v, less than the delay", took)
		}
		for <-lines != "slow" {
		}
	})
	for _, forward := range []bool{true, false} {
		name := map[bool]string{true: "CutOn forwards the pattern, then cuts", false: "CutOn drops the pattern and cuts"}[forward]
		t.Run(name, func(t *testing.T) {
			c, r := dial(t, p)
			if _, err := roundTrip(c, r, "first"); err != nil {
				t.Fatal(err)
			}
			for <-lines != "first" {
				// skip what earlier cases left
			}
			fired := p.CutOn([]byte("COMMIT"), forward)
			if _, err := roundTrip(c, r, "COMMIT"); err == nil {
				t.Fatal("the client got an answer to the trapped chunk")
			}
			select {
			case <-fired:
			default:
				t.Fatal("the trap did not report firing")
			}
			select {
			case l := <-lines:
				if !forward || l != "COMMIT" {
					t.Fatalf("the server got %q (forward %v)", l, forward)
				}
			case <-time.After(time.Second):
				if forward {
					t.Fatal("the server never got the forwarded pattern")
				}
			}
		})
	}
}
