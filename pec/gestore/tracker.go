package gestore

import (
	"context"
	"fmt"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/queue"
)

// The timeouts of RFC 6109 §3.1.6.
const (
	// Timeout12h is when a recipient with neither a ricevuta di presa in
	// carico nor one of consegna gets the first avviso.
	Timeout12h = 12 * time.Hour
	// Timeout24h is when a recipient without a ricevuta di consegna gets
	// the second, final avviso.
	Timeout24h = 24 * time.Hour
	// trackWindow is how far back the tracker looks for buste when it
	// rebuilds its table after a start.
	trackWindow = 72 * time.Hour
)

// runTracker emits the avvisi di mancata consegna per superamento dei
// tempi massimi until ctx is done. Its state is the ledger: a restart
// rebuilds the deadline table from it and loses nothing.
func (s *Server) runTracker(ctx context.Context) error {
	t := time.NewTicker(s.opts.TrackInterval)
	defer t.Stop()
	for {
		if _, err := s.Track(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("tracker", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Track looks once, at the server's clock, for buste di trasporto we sent
// whose certified recipients are overdue (RFC 6109 §3.1.6), emits the 12-
// and 24-hour avvisi they are due, and returns how many it emitted. The
// scenarios of the rules hold: a presa in carico within 12 hours and no
// consegna gives only the 24-hour avviso; no presa in carico and a
// consegna after 12 hours only the 12-hour one; neither gives both.
//
// It reads only the ledger's entries appended since the last look and the
// transactions whose deadlines have come (see tracker): its cost does not
// grow with the ledger's age. The first look after a start rebuilds the
// table from the buste of the last 72 hours.
func (s *Server) Track(ctx context.Context) (int, error) {
	s.trackMu.Lock()
	defer s.trackMu.Unlock()
	if s.tracker == nil {
		s.tracker = newTracker(s.opts.Ledger, s.g.Name())
	}
	return s.tracker.tick(ctx, s.now(), s.emitAvviso)
}

// emitAvviso emits the avviso di mancata consegna of deadline d for busta
// and commits it.
func (s *Server) emitAvviso(ctx context.Context, busta *ledger.Entry, d deadline) error {
	tx := &pec.Transaction{
		Identificativo: busta.Identificativo,
		Time:           s.now(),
		Mittente:       busta.Mittente,
		Subject:        busta.Oggetto,
		MessageID:      busta.ClientMessageID,
	}
	for _, r := range busta.Destinatari {
		tipo := daticert.DestinatarioCertificato
		if r.Tipo == ledger.TipoEsterno {
			tipo = daticert.DestinatarioEsterno
		}
		tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Address: r.Address, Tipo: tipo})
	}
	b, err := s.g.PreavvisoMancataConsegna(tx, d.rcpt, d.after)
	if err != nil {
		return fmt.Errorf("gestore: tracker: avviso %dh for %s: %w", d.after, busta.Identificativo, err)
	}
	kind := ledger.KindPreavvisoErroreConsegna12
	if d.after == pec.Timeout24h {
		kind = ledger.KindPreavvisoErroreConsegna24
	}
	ev := event(kind, tx, s.g.Name(), b.Message, b.MessageID)
	ev.Details["destinatario"] = d.rcpt
	if ev.ArchiveKey, err = s.archive(ctx, tx.Mittente, b.Kind, tx, b.Message); err != nil {
		return err
	}
	item := queue.Item{
		ID:          itemID(string(kind), busta.Identificativo, d.rcpt),
		Destination: s.destinationOf(tx.Mittente),
		From:        s.g.Address(),
		To:          []string{tx.Mittente},
		Message:     b.Message,
	}
	if err := s.commit(ctx, []queue.Item{item}, ev); err != nil {
		return fmt.Errorf("gestore: tracker: commit avviso %dh for %s: %w", d.after, busta.Identificativo, err)
	}
	s.log.Info("tracker: avviso di mancata consegna", "identificativo", busta.Identificativo, "destinatario", d.rcpt, "after_hours", int(d.after))
	return nil
}
