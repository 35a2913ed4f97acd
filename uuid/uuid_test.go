package uuid

import (
	"sync"
	"testing"
)

func TestNewIsValidVersion7AndIncreasing(t *testing.T) {
	t.Parallel()
	var g Generator
	prev := ""
	for i := 0; i < 20000; i++ {
		id := g.New()
		if !Valid(id) {
			t.Fatalf("invalid uuid %q", id)
		}
		if id[14] != '7' {
			t.Fatalf("version nibble of %q is %c, want 7", id, id[14])
		}
		if c := id[19]; c != '8' && c != '9' && c != 'a' && c != 'b' {
			t.Fatalf("variant of %q is %c", id, c)
		}
		if id <= prev {
			t.Fatalf("ids not increasing: %q then %q", prev, id)
		}
		prev = id
	}
}

func TestNewIsUniqueUnderConcurrency(t *testing.T) {
	t.Parallel()
	var g Generator
	var mu sync.Mutex
	seen := make(map[string]bool)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]string, 0, 2000)
			for i := 0; i < 2000; i++ {
				local = append(local, g.New())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

func TestValid(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"0190f6a0-3c1e-7b8e-9d2f-0123456789ab": true,
		NewRandom():                            true,
		"":                                     false,
		"0190f6a0-3c1e-7b8e-9d2f-0123456789a":  false,
		"0190f6a0x3c1e-7b8e-9d2f-0123456789ab": false,
		"0190f6a0-3c1e-7b8e-9d2f-0123456789ag": false,
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}
