package gestore

import (
	"context"
	"fmt"
	"strings"
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
	// trackWindow is how far back the tracker looks for buste.
	trackWindow = 72 * time.Hour
)

// runTracker emits the avvisi di mancata consegna per superamento dei
// tempi massimi until ctx is done. Its state is the ledger: a restart
// loses nothing.
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
func (s *Server) Track(ctx context.Context) (int, error) {
	s.trackMu.Lock()
	defer s.trackMu.Unlock()
	now := s.now()
	q := ledger.Query{Kind: ledger.KindPostaCertificata, From: now.Add(-trackWindow), To: now.Add(-Timeout12h + time.Nanosecond), Limit: 1000}
	emitted := 0
	for {
		page, err := s.opts.Ledger.Find(ctx, q)
		if err != nil {
			return emitted, fmt.Errorf("gestore: tracker: %w", err)
		}
		for _, busta := range page.Entries {
			if busta.Gestore != s.g.Name() {
				continue
			}
			n, err := s.trackOne(ctx, busta, now)
			emitted += n
			if err != nil {
				return emitted, err
			}
		}
		if page.Next == "" {
			return emitted, nil
		}
		q.Cursor = page.Next
	}
}

func (s *Server) trackOne(ctx context.Context, busta *ledger.Entry, now time.Time) (int, error) {
	age := now.Sub(busta.Time)
	entries, err := s.entriesOf(ctx, busta.Identificativo)
	if err != nil {
		return 0, err
	}
	has := func(kind ledger.Kind, rcpt string) bool {
		for _, e := range entries {
			if e.Kind != kind {
				continue
			}
			if kind == ledger.KindPresaInCarico {
				if coversAll(e.Details["ricezione"], []string{rcpt}) {
					return true
				}
			} else if recipientOf(e) == rcpt {
				return true
			}
		}
		return false
	}
	tx := &pec.Transaction{
		Identificativo: busta.Identificativo,
		Time:           now,
		Mittente:       busta.Mittente,
		Subject:        busta.Oggetto,
		MessageID:      busta.ClientMessageID,
	}
	for _, d := range busta.Destinatari {
		tipo := daticert.DestinatarioCertificato
		if d.Tipo == ledger.TipoEsterno {
			tipo = daticert.DestinatarioEsterno
		}
		tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Address: d.Address, Tipo: tipo})
	}
	emitted := 0
	for _, d := range busta.Destinatari {
		if d.Tipo != ledger.TipoCertificato {
			continue
		}
		rcpt := strings.ToLower(d.Address)
		consegna := has(ledger.KindAvvenutaConsegna, rcpt) || has(ledger.KindErroreConsegna, rcpt)
		presa := has(ledger.KindPresaInCarico, rcpt)
		var due []pec.Timeout
		if age >= Timeout12h && !presa && !consegna && !has(ledger.KindPreavvisoErroreConsegna12, rcpt) {
			due = append(due, pec.Timeout12h)
		}
		if age >= Timeout24h && !consegna && !has(ledger.KindPreavvisoErroreConsegna24, rcpt) {
			due = append(due, pec.Timeout24h)
		}
		for _, after := range due {
			b, err := s.g.PreavvisoMancataConsegna(tx, rcpt, after)
			if err != nil {
				return emitted, fmt.Errorf("gestore: tracker: avviso %dh for %s: %w", after, busta.Identificativo, err)
			}
			kind := ledger.KindPreavvisoErroreConsegna12
			if after == pec.Timeout24h {
				kind = ledger.KindPreavvisoErroreConsegna24
			}
			ev := event(kind, tx, s.g.Name(), b.Message, b.MessageID)
			ev.Details["destinatario"] = rcpt
			if ev.ArchiveKey, err = s.archive(ctx, tx.Mittente, b.Kind, tx, b.Message); err != nil {
				return emitted, err
			}
			item := queue.Item{
				ID:          itemID(string(kind), busta.Identificativo, rcpt),
				Destination: s.destinationOf(tx.Mittente),
				From:        s.g.Address(),
				To:          []string{tx.Mittente},
				Message:     b.Message,
			}
			if err := s.commit(ctx, []queue.Item{item}, ev); err != nil {
				return emitted, fmt.Errorf("gestore: tracker: commit avviso %dh for %s: %w", after, busta.Identificativo, err)
			}
			entries = append(entries, &ledger.Entry{Event: ev})
			emitted++
			s.log.Info("tracker: avviso di mancata consegna", "identificativo", busta.Identificativo, "destinatario", rcpt, "after_hours", int(after))
		}
	}
	return emitted, nil
}
