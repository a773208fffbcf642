package gestore

import (
	"context"
	"maps"

	"github.com/custode/custode/archive/quarantine"
	"github.com/custode/custode/pec"
)

// Points where a virus is found, as the quarantine names them.
const (
	pointAccesso   = quarantine.PointAccesso
	pointRicezione = quarantine.PointRicezione
)

// Quarantine keeps the messages in which the scanner found a virus.
// *quarantine.Store is one. Put must return only once the message is
// durable: its key and SHA-256 go in the ledger entry of the virus event,
// written before the refusal is answered.
type Quarantine interface {
	Put(ctx context.Context, m quarantine.Message) (quarantine.Record, error)
}

// ScannerConfigured reports whether the server scans messages for
// viruses (Options.Scanner is set). Without a scanner, infected messages
// are accepted and delivered.
func (s *Server) ScannerConfigured() bool { return s.opts.Scanner != nil }

// quarantine keeps msg, found infected with virus at point, in the
// quarantine, if there is one, and returns the details the ledger entries
// of the virus event get: "quarantena" (the object's key) and
// "sha256_quarantena". Without a quarantine it returns none.
func (s *Server) quarantine(ctx context.Context, tx *pec.Transaction, point, virus string, msg []byte) (map[string]string, error) {
	if s.opts.Quarantine == nil {
		return nil, nil
	}
	m := quarantine.Message{Identificativo: tx.Identificativo, Mittente: tx.Mittente, Virus: virus, Point: point, Time: tx.Time, Data: msg}
	for _, d := range tx.Destinatari {
		m.Destinatari = append(m.Destinatari, d.Address)
	}
	r, err := s.opts.Quarantine.Put(ctx, m)
	if err != nil {
		s.log.Error("quarantine", "identificativo", tx.Identificativo, "point", point, "err", err)
		return nil, err
	}
	s.log.Warn("virus quarantined", "identificativo", tx.Identificativo, "point", point, "virus", virus, "key", r.Key)
	return map[string]string{"quarantena": r.Key, "sha256_quarantena": r.SHA256}, nil
}

// withDetails adds details to d.
func withDetails(d, details map[string]string) { maps.Copy(d, details) }
