package storetest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/projection"
)

// lastWriteWins saves checkpoints as the backends did before writes were
// conditional: create or replace, whatever is stored.
type lastWriteWins struct{ *memstore.Store }

func (s lastWriteWins) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	cp.Supersedes = projection.AnyPosition
	return s.Store.SaveCheckpoint(ctx, cp)
}

func TestUnconditionalCheckpoints(t *testing.T) {
	if os.Getenv("STORETEST_LAST_WRITE_WINS") == "" {
		t.Skip("run by TestSuiteCatchesUnconditionalCheckpoints")
	}
	h := Harness{New: func(t *testing.T) flux.EventStore { return lastWriteWins{memstore.New()} }, Short: true}
	t.Run("writes", func(t *testing.T) { testCheckpointWrites(t, h) })
	t.Run("concurrent writers", func(t *testing.T) { testConcurrentCheckpointWriters(t, h) })
}

func TestSuiteCatchesUnconditionalCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestUnconditionalCheckpoints$", "-test.v")
	cmd.Env = append(os.Environ(), "STORETEST_LAST_WRITE_WINS=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a store whose checkpoint writes are unconditional:\n%s", out)
	}
	for _, want := range []string{"want a *projection.CheckpointBehindError", "want exactly 1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the suite failed, but not saying %q:\n%s", want, out)
		}
	}
}
