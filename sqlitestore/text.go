package sqlitestore

import "unsafe"

// JSON is stored as TEXT, as PostgreSQL and MariaDB show it: `sqlite3
// .dump` prints it as a string literal and json_extract reads it (SQLite
// takes a BLOB handed to its JSON functions for its binary JSONB format).
// The driver stores a []byte argument as a BLOB and a string as TEXT
// whatever the column's declared type, so JSON bytes are bound through
// text. Reads scan into []byte or string, which accept both storage
// classes: rows written as BLOBs before schema version 3 still read back
// byte for byte until Migrate converts them.

// text returns b as a string for binding as a TEXT parameter, without
// copying it. The driver copies the bytes into SQLite while the statement
// executes and keeps no reference afterwards, so b need only stay
// unchanged until the Exec that binds it returns.
func text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
