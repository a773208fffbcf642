package export

import (
	"context"
	"errors"
	"fmt"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailaddr"
)

// ReceiptKindNames lists, for messages, the names ReceiptKind knows.
const ReceiptKindNames = "accettazione, non-accettazione, presa-in-carico, avvenuta-consegna, errore-consegna or busta"

// ReceiptKind returns the ledger kind whose entry stands for a ricevuta,
// avviso or busta a titolare holds, by the name custode export receipt and
// the HTTP API give it.
func ReceiptKind(name string) (ledger.Kind, bool) {
	switch name {
	case "accettazione":
		return ledger.KindAccettazione, true
	case "non-accettazione":
		return ledger.KindNonAccettazione, true
	case "presa-in-carico":
		return ledger.KindPresaInCarico, true
	case "avvenuta-consegna":
		return ledger.KindAvvenutaConsegna, true
	case "errore-consegna":
		return ledger.KindErroreConsegna, true
	case "busta":
		return ledger.KindPostaCertificata, true
	}
	return "", false
}

// Errors of FindReceipt.
var (
	ErrNoReceipt = errors.New("no such entry in the ledger")
	// ErrRecipientNeeded means a consegna of a transaction with several
	// recipients was asked for without naming the recipient.
	ErrRecipientNeeded = errors.New("the transaction has several recipients: name one")
)

// FindReceipt returns the ledger entry of the ricevuta of kind for the
// transaction identificativo: for a consegna (avvenuta or errore), the one
// of recipient, which is required when the transaction has several. When
// there are several entries (a retried delivery), it returns the last.
// Recipients are compared by mailaddr.Same (canonical forms, byte for
// byte).
func FindReceipt(ctx context.Context, l *ledger.Ledger, identificativo string, kind ledger.Kind, recipient string) (*ledger.Entry, error) {
	q := ledger.Query{Identificativo: identificativo}
	var found []*ledger.Entry
	for e, err := range ledger.FindAll(ctx, l.Find, q) {
		if err != nil {
			return nil, fmt.Errorf("export: receipt of %s: %w", identificativo, err)
		}
		if e.Kind == kind && e.Identificativo == identificativo && (recipient == "" || mailaddr.Same(e.Details["destinatario"], recipient)) {
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("export: %s entry of %s: %w", kind, identificativo, ErrNoReceipt)
	}
	entry := found[len(found)-1]
	if recipient == "" && (kind == ledger.KindAvvenutaConsegna || kind == ledger.KindErroreConsegna) {
		for _, e := range found {
			if !mailaddr.Same(e.Details["destinatario"], entry.Details["destinatario"]) {
				return nil, fmt.Errorf("export: %s entry of %s: %w", kind, identificativo, ErrRecipientNeeded)
			}
		}
	}
	return entry, nil
}
