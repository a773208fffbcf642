package gestore

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Outcome is what the RFC 6109 engine (the punto di accesso, the punto di
// ricezione, the punto di consegna) decides about a command or a message.
// The engine knows nothing of SMTP: the sessions map an Outcome to a reply
// in one place (see reply, in replies.go), and the in-process delivery of
// the queue maps it to a queue outcome.
//
// A nil *Outcome means that the step succeeded with nothing to report; an
// Outcome whose Reason is ReasonOK succeeded and names its transaction.
type Outcome struct {
	// Reason says what happened; it determines the Kind.
	Reason Reason
	// Subject is what the outcome is about, when the reply or the avviso
	// names it: an address, a virus, a number of seconds, a subsystem.
	Subject string
	// Identificativo is the transaction's: the one accepted or taken in
	// charge, or the one whose avviso di non accettazione was sent.
	Identificativo string
	// Testo is the Italian sentence an avviso gives for the reason (its
	// daticert errore-esteso), from the table of Italian reasons; empty
	// for the outcomes that make no avviso.
	Testo string
	// Detail is the technical cause, for the logs only: never written in
	// a reply or an avviso.
	Detail error
}

// OutcomeKind says whether a refusal may succeed if tried again.
type OutcomeKind int

// The kinds of outcome.
const (
	// Success: the message or command was taken.
	Success OutcomeKind = iota
	// Temporary: the same step may succeed later.
	Temporary
	// Permanent: the same step can never succeed.
	Permanent
)

// Reason is the code of an outcome, stable and written in logs and in
// the refusal entries of the ledger (Details "causa").
type Reason string

// The reasons of the engine's outcomes.
const (
	// ReasonOK: accepted, or taken in charge.
	ReasonOK Reason = "ok"

	// Sessions.
	ReasonAuthRequired    Reason = "auth-required"
	ReasonAuthFailed      Reason = "auth-failed"
	ReasonAuthThrottled   Reason = "auth-throttled"
	ReasonAuthUnavailable Reason = "auth-unavailable"
	ReasonAuthMechanism   Reason = "auth-mechanism"
	ReasonReversePath     Reason = "reverse-path"
	ReasonMailFirst       Reason = "mail-first"
	ReasonRcptFirst       Reason = "rcpt-first"
	ReasonRecipientSyntax Reason = "recipient-syntax"
	ReasonRelay           Reason = "relay"
	ReasonNoMailbox       Reason = "no-mailbox"
	ReasonNotDestinatario Reason = "not-destinatario"
	ReasonPECOnly         Reason = "pec-only"
	ReasonMailboxFull     Reason = "mailbox-full"
	ReasonMailboxBusy     Reason = "mailbox-full-retry"

	// Formal checks of the punto di accesso (RFC 6109 §3.1.1): an avviso
	// di non accettazione is sent.
	ReasonTooLarge          Reason = "too-large"
	ReasonTooManyRecipients Reason = "too-many-recipients"
	ReasonUnreadable        Reason = "unreadable"
	ReasonBcc               Reason = "bcc"
	ReasonFromCount         Reason = "from-count"
	ReasonFromAddresses     Reason = "from-addresses"
	ReasonFromMismatch      Reason = "from-mismatch"
	ReasonSenderCount       Reason = "sender-count"
	ReasonSenderInvalid     Reason = "sender-invalid"
	ReasonSenderMismatch    Reason = "sender-mismatch"
	ReasonToInvalid         Reason = "to-invalid"
	ReasonCcInvalid         Reason = "cc-invalid"
	ReasonNoTo              Reason = "no-to"
	ReasonNotListed         Reason = "not-listed"
	ReasonBadRecipient      Reason = "bad-recipient"
	ReasonStructure         Reason = "structure"
	ReasonVirus             Reason = "virus"

	// Punto di ricezione: a busta di anomalia is made (RFC 6109 §3.2.2).
	ReasonAnomaliaUnreadable    Reason = "anomalia-unreadable"
	ReasonAnomaliaUnsigned      Reason = "anomalia-unsigned"
	ReasonAnomaliaNoSignature   Reason = "anomalia-signature-unreadable"
	ReasonAnomaliaUnknownSigner Reason = "anomalia-unknown-signer"
	ReasonAnomaliaBadSignature  Reason = "anomalia-bad-signature"
	ReasonAnomaliaReplay        Reason = "anomalia-replay"
	ReasonAnomaliaInconsistent  Reason = "anomalia-inconsistent"
	ReasonAnomaliaBadBusta      Reason = "anomalia-bad-busta"
	ReasonAnomaliaNotPEC        Reason = "anomalia-not-pec"
	ReasonAnomaliaImpossible    Reason = "anomalia-impossible"
	ReasonOwnUnreadable         Reason = "own-unreadable"

	// The server's own state.
	ReasonStorage     Reason = "storage"
	ReasonUnavailable Reason = "unavailable"
	ReasonLocal       Reason = "local"
	ReasonBusy        Reason = "busy"
	ReasonDataTimeout Reason = "data-timeout"
	ReasonDataRead    Reason = "data-read"
	ReasonTimeout     Reason = "timeout"
	ReasonLost        Reason = "connection-lost"
)

// reasonInfo is what the engine knows of a reason: its kind and, for the
// reasons an avviso states, the Italian sentence of the avviso. A "%s" in
// the sentence is replaced by the outcome's Subject.
type reasonInfo struct {
	kind  OutcomeKind
	testo string
}

// reasons is the table of the engine's reasons. Every Reason is in it
// (TestReasonTables), and every reason of an avviso has its sentence.
var reasons = map[Reason]reasonInfo{
	ReasonOK: {Success, ""},

	ReasonAuthRequired:    {Permanent, ""},
	ReasonAuthFailed:      {Permanent, ""},
	ReasonAuthThrottled:   {Temporary, ""},
	ReasonAuthUnavailable: {Temporary, ""},
	ReasonAuthMechanism:   {Permanent, ""},
	ReasonReversePath:     {Permanent, ""},
	ReasonMailFirst:       {Permanent, ""},
	ReasonRcptFirst:       {Permanent, ""},
	ReasonRecipientSyntax: {Permanent, ""},
	ReasonRelay:           {Permanent, ""},
	ReasonNoMailbox:       {Permanent, ""},
	ReasonNotDestinatario: {Permanent, ""},
	ReasonPECOnly:         {Permanent, ""},
	ReasonMailboxFull:     {Permanent, ""},
	ReasonMailboxBusy:     {Temporary, ""},

	ReasonTooLarge:          {Permanent, "la dimensione del messaggio moltiplicata per il numero dei destinatari supera il limite di %s byte"},
	ReasonTooManyRecipients: {Permanent, "il numero dei destinatari supera il limite di %s"},
	ReasonUnreadable:        {Permanent, "il messaggio non è un messaggio di posta elettronica leggibile: la sua intestazione non rispetta il formato Internet (RFC 5322)"},
	ReasonBcc:               {Permanent, "il messaggio contiene il campo Bcc, non ammesso"},
	ReasonFromCount:         {Permanent, "il messaggio deve contenere un solo campo From"},
	ReasonFromAddresses:     {Permanent, "il campo From deve contenere un solo indirizzo valido"},
	ReasonFromMismatch:      {Permanent, "l'indirizzo del campo From (%s) non coincide con il mittente"},
	ReasonSenderCount:       {Permanent, "il messaggio deve contenere al più un campo Sender"},
	ReasonSenderInvalid:     {Permanent, "il campo Sender non è valido"},
	ReasonSenderMismatch:    {Permanent, "l'indirizzo del campo Sender (%s) non coincide con il mittente"},
	ReasonToInvalid:         {Permanent, "il campo To non è valido"},
	ReasonCcInvalid:         {Permanent, "il campo Cc non è valido"},
	ReasonNoTo:              {Permanent, "il campo To è assente"},
	ReasonNotListed:         {Permanent, "il destinatario %s non compare nei campi To o Cc"},
	ReasonBadRecipient:      {Permanent, "il destinatario %s non è un indirizzo valido"},
	ReasonStructure:         {Permanent, "la struttura MIME del messaggio è troppo complessa per essere trasportata (troppe parti o troppi livelli annidati)"},
	ReasonVirus:             {Permanent, "il messaggio contiene un virus informatico (%s)"},

	ReasonAnomaliaUnreadable:    {Success, "il messaggio non è leggibile: la sua struttura non rispetta il formato Internet (RFC 5322, MIME)"},
	ReasonAnomaliaUnsigned:      {Success, "il messaggio di posta certificata non è firmato"},
	ReasonAnomaliaNoSignature:   {Success, "la firma del messaggio non è leggibile"},
	ReasonAnomaliaUnknownSigner: {Success, "il messaggio è firmato da un certificato che non appartiene a un gestore dell'indice dei gestori di posta certificata"},
	ReasonAnomaliaBadSignature:  {Success, "la firma del messaggio non è valida"},
	ReasonAnomaliaReplay:        {Success, "il messaggio è firmato da questo gestore ma proviene dall'esterno (replay)"},
	ReasonAnomaliaInconsistent:  {Success, "il messaggio di posta certificata non è corretto: le sue intestazioni e i suoi dati di certificazione non concordano"},
	ReasonAnomaliaBadBusta:      {Success, "la busta di trasporto non è corretta: i suoi dati di certificazione sono incompleti o non validi"},
	ReasonAnomaliaNotPEC:        {Success, "il messaggio non è un messaggio di posta certificata"},
	ReasonAnomaliaImpossible:    {Permanent, ""},
	ReasonOwnUnreadable:         {Permanent, ""},

	ReasonStorage:     {Temporary, ""},
	ReasonUnavailable: {Temporary, ""},
	ReasonLocal:       {Temporary, ""},
	ReasonBusy:        {Temporary, ""},
	ReasonDataTimeout: {Temporary, ""},
	ReasonDataRead:    {Temporary, ""},
	ReasonTimeout:     {Temporary, ""},
	ReasonLost:        {Temporary, ""},
}

// outcome returns the Outcome of reason about subject, its Italian
// sentence filled in, detail being the technical cause for the logs.
func outcome(reason Reason, subject string, detail error) *Outcome {
	o := &Outcome{Reason: reason, Subject: subject, Detail: detail}
	if t := reasons[reason].testo; t != "" {
		o.Testo = t
		if subject != "" && strings.Contains(t, "%s") {
			o.Testo = fmt.Sprintf(t, oneLine(subject))
		}
	}
	return o
}

// accepted is the outcome of a message accepted, or taken in charge,
// under identificativo.
func accepted(identificativo string) *Outcome {
	return &Outcome{Reason: ReasonOK, Identificativo: identificativo}
}

// Kind is the kind of o's reason; a nil Outcome is a Success.
func (o *Outcome) Kind() OutcomeKind {
	if o == nil {
		return Success
	}
	if ri, ok := reasons[o.Reason]; ok {
		return ri.kind
	}
	return Temporary
}

// Error describes o for the logs, in English, technical detail included.
// It makes an Outcome usable as the cause of a queue error.
func (o *Outcome) Error() string {
	s := "gestore: " + string(o.Reason)
	if o.Subject != "" {
		s += " (" + o.Subject + ")"
	}
	if o.Identificativo != "" {
		s += " identificativo " + o.Identificativo
	}
	if o.Detail != nil {
		s += ": " + o.Detail.Error()
	}
	return s
}

// Unwrap returns the technical cause.
func (o *Outcome) Unwrap() error { return o.Detail }

// deferred is the outcome when something the server depends on is down,
// err being how it failed: the client keeps the message and tries again.
// A disk that is full, or nearly (the ledger and the mailbox store keep a
// reserve), is ReasonStorage.
func deferred(what string, err error) *Outcome {
	if errors.Is(err, syscall.ENOSPC) {
		return outcome(ReasonStorage, what, err)
	}
	return outcome(ReasonUnavailable, what, err)
}
