package export

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/custode/custode/ledger/durable"
)

// WriteFiles writes b durably to out or, when it is over the 30 MB a
// deposit in the processo civile telematico allows (see WriteParts), in
// parts named OUT-partI-of-N.zip beside it, OUT being out without its
// .zip. It returns the files written, in order.
func (b *Bundle) WriteFiles(out string) ([]string, error) {
	parts, err := b.WriteParts(0)
	if err != nil {
		return nil, err
	}
	names := []string{out}
	if len(parts) > 1 {
		names = names[:0]
		base := strings.TrimSuffix(out, ".zip")
		for i := range parts {
			names = append(names, fmt.Sprintf("%s-part%d-of-%d.zip", base, i+1, len(parts)))
		}
	}
	for i, p := range parts {
		if err := durable.WriteFile(names[i], p, 0o644); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	return names, nil
}

// WriteFiles writes the report durably into directory dir as
// report.json, report.txt and report.pdf, and the AgID datasets as P01.csv
// (for gestore code codGestPEC, with its domains and mailboxes counted)
// and P02.csv.
func (r *AuditReport) WriteFiles(dir, codGestPEC string, domains, mailboxes int) error {
	p01, err := r.P01(codGestPEC, domains, mailboxes)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("export: audit report: %w", err)
	}
	for name, b := range map[string][]byte{"report.json": js, "report.txt": []byte(r.Text()), "report.pdf": r.PDF(),
		"P01.csv": p01, "P02.csv": r.P02()} {
		if err := durable.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("export: audit report: %w", err)
		}
	}
	return nil
}

// Origin says where the bundle's receipt comes from: the original from the
// archivio di sicurezza, or a reproduction from the log and why.
func (b *Bundle) Origin() string {
	switch {
	case !b.Reproduction:
		return "the original receipt from the archivio di sicurezza"
	case b.ArchiveProblem != "":
		return "a reproduction from the log (the archived object is not the original: " + b.ArchiveProblem + ")"
	}
	return "a reproduction from the log (the original is not archived)"
}
