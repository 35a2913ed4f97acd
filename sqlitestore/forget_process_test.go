package sqlitestore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/pii/piitest"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

const (
	forgetWriterEnv = "FLUX_TEST_FORGET_WRITER_DB"
	forgetSecret    = "forget-race-secret-0123456789abcdef"
	forgetRounds    = 200
)

func forgetRepo(t testing.TB, s *sqlitestore.Store, cacheTTL time.Duration, policy flux.SnapshotPolicy) (*flux.Repository, *pii.Protector) {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Person", func() *piitest.Person { return new(piitest.Person) },
		flux.EventType[piitest.Profile]("Profile", 1),
		flux.EventType[piitest.Renamed]("Renamed", 1),
		flux.Snapshots(policy)))
	if err != nil {
		t.Fatal(err)
	}
	prot, err := pii.New(pii.Config{Keys: s, Secret: []byte(forgetSecret), Replacement: "[forgotten]", CacheTTL: cacheTTL})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg, Protector: prot})
	if err != nil {
		t.Fatal(err)
	}
	return repo, prot
}

func subjectOf(round int) string { return "racer-" + strconv.Itoa(round) }

// TestForgetWithWritesInFlightFromAnotherProcess forgets 200 people while
// another OS process keeps saving their aggregates (a snapshot with every
// save): whatever that process wrote after the key was deleted — events
// or snapshots, encrypted with a key it still had cached or refused
// because it saw the tombstone — nothing of a forgotten person decrypts
// afterwards, no new key is ever created for them, and every one of them
// loads, from snapshots and by replay, as forgotten.
func TestForgetWithWritesInFlightFromAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "forget.db")
	ctx := t.Context()
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, prot := forgetRepo(t, s, time.Millisecond, flux.SnapshotPolicy{Every: 1, Keep: 100})

	cmd := exec.Command(os.Args[0], "-test.run=^TestForgetWriterProcess$", "-test.v")
	cmd.Env = append(os.Environ(), forgetWriterEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The writer says "writing N" once the key of person N exists and it
	// keeps saving them; it moves on when a save is refused.
	lines := bufio.NewScanner(stdout)
	refusedAfterForget, savedTotal := 0, 0
	for round := 0; round < forgetRounds; round++ {
		want := "writing " + strconv.Itoa(round)
		for lines.Scan() && lines.Text() != want {
		}
		if lines.Err() != nil {
			t.Fatal(lines.Err())
		}
		rep, err := prot.Forget(ctx, subjectOf(round), pii.ForgetOptions{By: "race test"})
		if err != nil || !rep.KeyDeleted {
			t.Fatalf("round %d: Forget = %+v, %v", round, rep, err)
		}
	}
	for lines.Scan() {
		if n, ok := strings.CutPrefix(lines.Text(), "done "); ok {
			fmt.Sscanf(n, "%d %d", &savedTotal, &refusedAfterForget)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("writer process: %v", err)
	}
	if refusedAfterForget != forgetRounds {
		t.Fatalf("the writer saw %d of %d forgets", refusedAfterForget, forgetRounds)
	}
	t.Logf("the writer saved %d times in %d rounds", savedTotal, forgetRounds)

	cold, coldProt := forgetRepo(t, s, time.Minute, flux.SnapshotPolicy{Every: 1, Keep: 100})
	replay, _ := forgetRepo(t, s, time.Minute, flux.SnapshotPolicy{Disabled: true})
	var infos []flux.SnapshotInfo
	for info, err := range s.ListSnapshots(ctx, "Person") {
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	snapshots := 0
	for round := 0; round < forgetRounds; round++ {
		subj := subjectOf(round)
		if _, err := s.LoadKey(ctx, subj); !errors.Is(err, pii.ErrForgotten) {
			t.Fatalf("%s: key after Forget: %v (a new key was created)", subj, err)
		}
		for _, info := range infos {
			if info.StreamID != subj {
				continue
			}
			sn, _, err := s.LoadSnapshot(ctx, subj, flux.SnapshotQuery{SchemaVersion: info.SchemaVersion, MaxVersion: info.Version})
			if err != nil {
				t.Fatal(err)
			}
			var p piitest.Person
			p.SetID(subj)
			forgotten, err := coldProt.Unprotect(ctx, sn.Data, &p, fmt.Sprintf("snapshot:%s@%d", subj, sn.Version))
			if err != nil || len(forgotten) != 2 || strings.Contains(p.Email+p.Name, "CANARY") {
				t.Fatalf("%s snapshot at %d decrypts after Forget: %+v forgotten=%v err=%v", subj, sn.Version, p, forgotten, err)
			}
			snapshots++
		}
		for _, r := range []*flux.Repository{cold, replay} {
			p, err := flux.Load[*piitest.Person](ctx, r, subj)
			if err != nil || !p.LoadInfo().Forgotten || p.Name != "[forgotten]" {
				t.Fatalf("%s after Forget: %+v %+v, %v", subj, p, p.LoadInfo(), err)
			}
		}
	}
	if snapshots < forgetRounds {
		t.Fatalf("only %d snapshots checked", snapshots)
	}
}

// TestForgetWriterProcess is the writer of the test above, run in its
// own process.
func TestForgetWriterProcess(t *testing.T) {
	path := os.Getenv(forgetWriterEnv)
	if path == "" {
		t.Skip("run by TestForgetWithWritesInFlightFromAnotherProcess")
	}
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A short cache TTL makes the writer notice the tombstone between
	// saves; saves in between use the key it still has cached.
	repo, _ := forgetRepo(t, s, time.Millisecond, flux.SnapshotPolicy{Every: 1, Keep: 100})
	saved, refused := 0, 0
	for round := 0; round < forgetRounds; round++ {
		subj := subjectOf(round)
		p := new(piitest.Person)
		p.SetID(subj)
		ev := piitest.Profile{UserID: subj, Email: "CANARY-" + subj + "@example.com", Name: "CANARY-" + subj}
		flux.Raise(p, ev)
		if err := repo.Save(ctx, p); err != nil {
			t.Fatal(err)
		}
		fmt.Println("writing", round)
		for i := 0; ; i++ {
			flux.Raise(p, piitest.Renamed{UserID: subj, Name: fmt.Sprintf("CANARY-%s-%d", subj, i)})
			err := repo.Save(ctx, p)
			if errors.Is(err, flux.ErrSubjectForgotten) {
				refused++
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			saved++
			if i > 100_000 {
				t.Fatalf("%s: never saw the forget", subj)
			}
		}
	}
	fmt.Println("done", saved, refused)
}
