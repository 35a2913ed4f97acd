// Package pii encrypts personal data in events and snapshots with one key
// per data subject, so that deleting the key forgets the person everywhere
// at once (crypto-shredding), though events are immutable.
package pii
