package backend

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

// CheckForgetting reports whether f may be recorded by a KeyStore's
// ForgetSubject. Every backend calls it before any I/O, so that the same
// tombstone is accepted or refused by all of them: the subject must not be
// empty, and the subject, By and Reason must be valid UTF-8 without NUL
// characters (which PostgreSQL cannot store). The error wraps
// flux.ErrPersonalData and names the subject and the field at fault.
// Backend-specific limits (such as a column's length) are checked by the
// backend after this.
func CheckForgetting(f pii.Forgetting) error {
	if f.Subject == "" {
		return fmt.Errorf("%w: forget subject: the subject is empty; give the subject whose key is to be deleted", flux.ErrPersonalData)
	}
	for _, field := range []struct{ name, v string }{{"subject", f.Subject}, {"by", f.By}, {"reason", f.Reason}} {
		if !utf8.ValidString(field.v) {
			return fmt.Errorf("%w: forget subject %q: the %s is not valid UTF-8", flux.ErrPersonalData, f.Subject, field.name)
		}
		if strings.IndexByte(field.v, 0) >= 0 {
			return fmt.Errorf("%w: forget subject %q: the %s contains a NUL character, which not every store can keep; remove it", flux.ErrPersonalData, f.Subject, field.name)
		}
	}
	return nil
}
