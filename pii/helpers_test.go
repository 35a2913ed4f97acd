package pii_test

import (
	"encoding/json"
	"time"
)

func now() time.Time { return time.Now() }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
