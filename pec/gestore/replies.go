package gestore

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// This file is the one place where the engine's outcomes become SMTP
// replies, and where SMTP replies (go-smtp's own, and those of the
// servers the queue sends to) are read back: no other file of the package
// names smtp.SMTPError.
//
// The replies are in English, with the enhanced status codes of RFC 3463;
// the PEC terms stay Italian (avviso di non accettazione, busta di
// trasporto, identificativo). The Italian text of a reason is for the
// avvisi (see reasons); the technical detail of an outcome is only
// logged. A reply never carries the text of an internal error. 5xx is for
// what can never succeed, 4xx only for what may succeed later.

// replyInfo is the reply of a reason: its codes and its English text. A
// "%s" in the text is replaced by the outcome's Subject.
type replyInfo struct {
	code int
	enh  smtp.EnhancedCode
	text string
}

// replies is the table of the replies of every Reason (TestReasonTables).
var replies = map[Reason]replyInfo{
	ReasonOK: {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},

	ReasonAuthRequired:    {530, smtp.EnhancedCode{5, 7, 0}, "Authentication required"},
	ReasonAuthFailed:      {535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid"},
	ReasonAuthThrottled:   {454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins from your address, try again in %s seconds"},
	ReasonAuthUnavailable: {454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later"},
	ReasonAuthMechanism:   {504, smtp.EnhancedCode{5, 5, 4}, "Unrecognized authentication mechanism"},
	ReasonReversePath:     {553, smtp.EnhancedCode{5, 7, 1}, "The reverse path must be the authenticated mailbox %s"},
	ReasonMailFirst:       {503, smtp.EnhancedCode{5, 5, 1}, "Bad sequence of commands: MAIL first"},
	ReasonRcptFirst:       {503, smtp.EnhancedCode{5, 5, 1}, "Bad sequence of commands: MAIL and RCPT first"},
	ReasonRecipientSyntax: {501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax"},
	ReasonRelay:           {550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: not a domain of this gestore"},
	ReasonNoMailbox:       {550, smtp.EnhancedCode{5, 1, 1}, "No such mailbox"},
	ReasonNotDestinatario: {554, smtp.EnhancedCode{5, 1, 1}, "Recipient %s is not among the destinatari of the busta di trasporto"},
	ReasonPECOnly:         {550, smtp.EnhancedCode{5, 7, 1}, "Mailbox accepts certified mail (PEC) only: %s"},
	ReasonMailboxFull:     {552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full"},
	ReasonMailboxBusy:     {452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later"},

	ReasonTooLarge:          {552, smtp.EnhancedCode{5, 3, 4}, "Message too large: size times recipients exceeds %s bytes"},
	ReasonTooManyRecipients: {554, smtp.EnhancedCode{5, 5, 3}, "Too many recipients: at most %s"},
	ReasonUnreadable:        {554, smtp.EnhancedCode{5, 6, 0}, "Message header unreadable (RFC 5322)"},
	ReasonBcc:               {554, smtp.EnhancedCode{5, 6, 0}, "Bcc header field not allowed"},
	ReasonFromCount:         {554, smtp.EnhancedCode{5, 6, 0}, "Exactly one From header field required"},
	ReasonFromAddresses:     {554, smtp.EnhancedCode{5, 6, 0}, "The From field must hold exactly one valid address"},
	ReasonFromMismatch:      {554, smtp.EnhancedCode{5, 7, 1}, "The From address %s is not the authenticated mailbox"},
	ReasonSenderCount:       {554, smtp.EnhancedCode{5, 6, 0}, "At most one Sender header field allowed"},
	ReasonSenderInvalid:     {554, smtp.EnhancedCode{5, 6, 0}, "Invalid Sender header field"},
	ReasonSenderMismatch:    {554, smtp.EnhancedCode{5, 7, 1}, "The Sender address %s is not the authenticated mailbox"},
	ReasonToInvalid:         {554, smtp.EnhancedCode{5, 6, 0}, "Invalid To header field"},
	ReasonCcInvalid:         {554, smtp.EnhancedCode{5, 6, 0}, "Invalid Cc header field"},
	ReasonNoTo:              {554, smtp.EnhancedCode{5, 6, 0}, "To header field missing"},
	ReasonNotListed:         {554, smtp.EnhancedCode{5, 6, 0}, "Recipient %s not listed in the To or Cc fields"},
	ReasonBadRecipient:      {553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient %s"},
	ReasonStructure:         {554, smtp.EnhancedCode{5, 6, 0}, "MIME structure too complex to be transported"},
	ReasonVirus:             {554, smtp.EnhancedCode{5, 7, 1}, "Virus found (%s)"},

	ReasonAnomaliaUnreadable:    {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaUnsigned:      {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaNoSignature:   {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaUnknownSigner: {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaBadSignature:  {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaReplay:        {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaInconsistent:  {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaBadBusta:      {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaNotPEC:        {250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
	ReasonAnomaliaImpossible:    {554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it cannot be wrapped in a busta di anomalia"},
	ReasonOwnUnreadable:         {554, smtp.EnhancedCode{5, 6, 0}, "Message of this gestore unreadable"},

	ReasonStorage:     {452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage (%s), try again later"},
	ReasonUnavailable: {451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure (%s), try again later"},
	ReasonLocal:       {451, smtp.EnhancedCode{4, 3, 0}, "Local error, try again later"},
	ReasonBusy:        {451, smtp.EnhancedCode{4, 3, 2}, "Too many messages in transfer, try again later"},
	ReasonDataTimeout: {451, smtp.EnhancedCode{4, 4, 2}, "Timeout reading the message, try again later"},
	ReasonDataRead:    {451, smtp.EnhancedCode{4, 4, 0}, "Connection error reading the message, try again later"},
	ReasonTimeout:     {421, smtp.EnhancedCode{4, 4, 2}, "Timeout reading the message"},
	ReasonLost:        {451, smtp.EnhancedCode{4, 4, 2}, "Connection lost reading the message"},
}

// reply maps an outcome to its SMTP reply: nil for a nil outcome (go-smtp
// then gives its own 250 to MAIL and RCPT), and for an accepted message
// "250 2.0.0 Ok: queued as IDENTIFICATIVO". An outcome that states an
// avviso di non accettazione says so, with the identificativo.
func reply(o *Outcome) error {
	if o == nil {
		return nil
	}
	ri, ok := replies[o.Reason]
	if !ok {
		ri = replies[ReasonLocal]
	}
	text := ri.text
	if strings.Contains(text, "%s") {
		text = fmt.Sprintf(text, truncate(oneLine(o.Subject), 200))
	}
	switch {
	case ri.code/100 == 2 && o.Identificativo != "":
		text += ": queued as " + o.Identificativo
	case ri.code/100 == 5 && o.Testo != "" && o.Identificativo != "":
		text += "; avviso di non accettazione sent, identificativo " + o.Identificativo
	}
	return &smtp.SMTPError{Code: ri.code, EnhancedCode: ri.enh, Message: text}
}

// fromSessionError returns what go-smtp or the network made of a command
// or a message, outside the engine, as an outcome: the size limit of
// go-smtp's DATA reader, a timeout, a lost connection; anything else is a
// local failure whose text stays in the logs.
func fromSessionError(err error) *Outcome {
	var o *Outcome
	if errors.As(err, &o) {
		return o
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code == smtp.ErrDataTooLarge.Code && se.EnhancedCode == smtp.ErrDataTooLarge.EnhancedCode {
		return outcome(ReasonTooLarge, "", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcome(ReasonTimeout, "", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return outcome(ReasonLost, "", err)
	}
	return outcome(ReasonLocal, "", err)
}

// publicError returns err as a reply fit for a client: an SMTP reply as
// it is, an outcome mapped by reply, anything else as what
// fromSessionError makes of it, whose text says nothing of the server's
// insides.
func publicError(err error) *smtp.SMTPError {
	// An outcome first: its detail may wrap a reply (go-smtp's size
	// limit) that is not what the client is to read.
	var o *Outcome
	if !errors.As(err, &o) {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		o = fromSessionError(err)
	}
	se, _ := reply(o).(*smtp.SMTPError)
	return se
}

// authError returns the error of a SASL exchange as a reply: a reply as
// it is, anything else (a malformed exchange) as a failed authentication.
func authError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return reply(outcome(ReasonAuthFailed, "", err))
}

// replyCode is the code of a reply as the refusal entries write it: "550
// 5.1.1".
func replyCode(err error) string {
	var e *smtp.SMTPError
	if !errors.As(err, &e) {
		return ""
	}
	c := strconv.Itoa(e.Code)
	if e.EnhancedCode != smtp.NoEnhancedCode && e.EnhancedCode != (smtp.EnhancedCode{}) {
		c += fmt.Sprintf(" %d.%d.%d", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
	}
	return c
}

// replyMessage is the text of a reply.
func replyMessage(err error) string {
	var e *smtp.SMTPError
	if errors.As(err, &e) {
		return e.Message
	}
	return ""
}

// replyText is a reply as one line: its codes and its text.
func replyText(err error) string {
	return replyCode(err) + " " + truncate(oneLine(replyMessage(err)), 300)
}

// Replies of the servers the queue sends to.

// isReply reports whether err is an SMTP reply (of a remote server, which
// then answered: the session is sound), and not an outcome of ours.
func isReply(err error) bool {
	var o *Outcome
	var se *smtp.SMTPError
	return !errors.As(err, &o) && errors.As(err, &se)
}

// isPermanentReply reports whether err carries a remote server's 5xx
// reply: the message, or the recipient, is refused for good.
func isPermanentReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && !se.Temporary()
}

// isNoSuchRecipient reports whether err carries a reply of class 5.1.x:
// the address is bad, which an avviso di mancata consegna calls no-dest.
func isNoSuchRecipient(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.EnhancedCode[0] == 5 && se.EnhancedCode[1] == 1
}
