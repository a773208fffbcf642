// Package policies reads and validates the versioned policy files of a
// gestore: mailbox and domain options, retention classes and access rules.
package policies
