package fluxcli

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRelayPublishesTheLogAndServesItsMetrics runs 'flux relay' on a demo
// store against the test NATS server (FLUX_TEST_NATS_URL): every event
// reaches a fresh JetStream stream once, and the metrics endpoint shows
// the relay's batches and lag.
func TestRelayPublishesTheLogAndServesItsMetrics(t *testing.T) {
	url := os.Getenv("FLUX_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal("FLUX_TEST_NATS_URL is not set and FLUX_TEST_REQUIRE is: set it, e.g. to nats://127.0.0.1:4222")
		}
		t.Skip("FLUX_TEST_NATS_URL is not set; set it, e.g. to nats://127.0.0.1:4222, to run the relay test")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strings.ToUpper(randomName(""))
	stream, prefix := "FLUXCLI_"+suffix, "fluxcli"+strings.ToLower(suffix)
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })

	db := fixture(t)
	m, _, _ := testMain()
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	m.Stdout, m.Stderr = out, errOut
	m.Getenv = func(k string) string { return map[string]string{"FLUX_DSN": db}[k] }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int)
	go func() {
		done <- m.Run(ctx, []string{"relay", "--nats", url, "--stream", stream, "--subject-prefix", prefix, "--metrics-addr", "127.0.0.1:0"})
	}()

	deadline := time.Now().Add(20 * time.Second)
	re := regexp.MustCompile(`http://([0-9.:]+)/metrics`)
	var addr, body string
	for time.Now().Before(deadline) {
		if mm := re.FindStringSubmatch(errOut.String()); mm != nil && addr == "" {
			addr = mm[1]
		}
		if addr != "" {
			if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				if strings.Contains(body, `flux_relay_events_total{flux_relay="natsrelay"`) && regexp.MustCompile(`flux_projection_lag_events\{flux_projection="natsrelay"[^}]*\} 0`).MatchString(body) {
					break
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatalf("the relay made no stream %s: %v (stderr %s)", stream, err, errOut)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := info.CachedInfo().State.Msgs; n != 27 {
		t.Errorf("%d messages in %s, want the demo's 27 records (26 events and a SubjectForgotten)", n, stream)
	}
	for _, want := range []string{
		`flux_relay_events_total{flux_relay="natsrelay"`,
		`flux_relay_publish_duration_seconds_count{flux_outcome="ok",flux_relay="natsrelay"`,
		`flux_projection_lag_events{flux_projection="natsrelay"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	if got := out.String(); !strings.Contains(got, "relaying "+db+" to JetStream stream "+stream) || !strings.Contains(got, "stopped at position 27 of 27") {
		t.Errorf("output:\n%s", got)
	}
}
