package pec

import "github.com/custode/custode/pec/daticert"

// Kind is the type of a PEC message: a busta, a ricevuta or an avviso of RFC
// 6109 §3, or a message that is not PEC. Its values are stable identifiers,
// fit for JSON and logs; Name gives the Italian name the rules use.
type Kind string

// The kinds of message. The three forms of the ricevuta di avvenuta consegna
// are distinct kinds, as are the two avvisi that share X-Ricevuta
// errore-consegna (mancata consegna, and mancata consegna per virus) and the
// two that share X-Ricevuta non-accettazione. KindPreavvisoMancataConsegna
// is the avviso di mancata consegna per superamento dei tempi massimi, at 12
// or 24 hours (only its text tells which). KindNotPEC is a message that is
// not PEC; KindUnknown one that carries PEC fields which contradict each
// other or have unknown values (Message.Problems says which).
const (
	KindBustaTrasporto           Kind = "busta-trasporto"
	KindBustaAnomalia            Kind = "busta-anomalia"
	KindAccettazione             Kind = "accettazione"
	KindNonAccettazione          Kind = "non-accettazione"
	KindNonAccettazioneVirus     Kind = "non-accettazione-virus"
	KindPresaInCarico            Kind = "presa-in-carico"
	KindConsegnaCompleta         Kind = "avvenuta-consegna-completa"
	KindConsegnaBreve            Kind = "avvenuta-consegna-breve"
	KindConsegnaSintetica        Kind = "avvenuta-consegna-sintetica"
	KindMancataConsegna          Kind = "mancata-consegna"
	KindMancataConsegnaVirus     Kind = "mancata-consegna-virus"
	KindPreavvisoMancataConsegna Kind = "preavviso-mancata-consegna"
	KindRilevazioneVirus         Kind = "rilevazione-virus"
	KindNotPEC                   Kind = "non-pec"
	KindUnknown                  Kind = "pec-non-classificabile"
)

// kindInfo is what the rules fix for each kind.
type kindInfo struct {
	name      string        // Italian name
	prefix    string        // Subject prefix, RFC 6109 Appendix A
	tipo      daticert.Tipo // daticert tipo; "" for the busta di anomalia
	ricevuta  string        // X-Ricevuta value; "" for the buste
	trasporto string        // X-Trasporto value; "" for ricevute and avvisi
}

// info returns the rules of a PEC kind, and false for the other kinds.
func info(k Kind) (kindInfo, bool) {
	switch k {
	case KindBustaTrasporto:
		return kindInfo{"busta di trasporto", "POSTA CERTIFICATA: ", daticert.TipoPostaCertificata, "", "posta-certificata"}, true
	case KindBustaAnomalia:
		return kindInfo{"busta di anomalia", "ANOMALIA MESSAGGIO: ", "", "", "errore"}, true
	case KindAccettazione:
		return kindInfo{"ricevuta di accettazione", "ACCETTAZIONE: ", daticert.TipoAccettazione, "accettazione", ""}, true
	case KindNonAccettazione:
		return kindInfo{"avviso di non accettazione per eccezioni formali", "AVVISO DI NON ACCETTAZIONE: ", daticert.TipoNonAccettazione, "non-accettazione", ""}, true
	case KindNonAccettazioneVirus:
		return kindInfo{"avviso di non accettazione per virus informatico", "AVVISO DI NON ACCETTAZIONE PER VIRUS: ", daticert.TipoNonAccettazione, "non-accettazione", ""}, true
	case KindPresaInCarico:
		return kindInfo{"ricevuta di presa in carico", "PRESA IN CARICO: ", daticert.TipoPresaInCarico, "presa-in-carico", ""}, true
	case KindConsegnaCompleta:
		return kindInfo{"ricevuta di avvenuta consegna completa", "CONSEGNA: ", daticert.TipoAvvenutaConsegna, "avvenuta-consegna", ""}, true
	case KindConsegnaBreve:
		return kindInfo{"ricevuta di avvenuta consegna breve", "CONSEGNA: ", daticert.TipoAvvenutaConsegna, "avvenuta-consegna", ""}, true
	case KindConsegnaSintetica:
		return kindInfo{"ricevuta di avvenuta consegna sintetica", "CONSEGNA: ", daticert.TipoAvvenutaConsegna, "avvenuta-consegna", ""}, true
	case KindMancataConsegna:
		return kindInfo{"avviso di mancata consegna", "AVVISO DI MANCATA CONSEGNA: ", daticert.TipoErroreConsegna, "errore-consegna", ""}, true
	case KindMancataConsegnaVirus:
		return kindInfo{"avviso di mancata consegna per virus informatico", "AVVISO DI MANCATA CONSEGNA PER VIRUS: ", daticert.TipoErroreConsegna, "errore-consegna", ""}, true
	case KindPreavvisoMancataConsegna:
		return kindInfo{"avviso di mancata consegna per superamento dei tempi massimi", "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ", daticert.TipoPreavvisoErroreConsegna, "preavviso-errore-consegna", ""}, true
	case KindRilevazioneVirus:
		return kindInfo{"avviso di rilevazione virus informatico", "PROBLEMA DI SICUREZZA: ", daticert.TipoRilevazioneVirus, "rilevazione-virus", ""}, true
	}
	return kindInfo{}, false
}

// rules returns the rules of a PEC kind; the zero kindInfo for the others.
func rules(k Kind) kindInfo {
	i, _ := info(k)
	return i
}

// Name returns the Italian name of the kind as the rules write it, for
// example "ricevuta di avvenuta consegna breve".
func (k Kind) Name() string {
	if i, ok := info(k); ok {
		return i.name
	}
	switch k {
	case KindNotPEC:
		return "messaggio non PEC"
	case KindUnknown:
		return "messaggio PEC non classificabile"
	}
	return "tipo sconosciuto " + string(k)
}

// String returns the kind's identifier.
func (k Kind) String() string { return string(k) }

// IsPEC reports whether k is one of the buste, ricevute and avvisi of RFC
// 6109 §3.
func (k Kind) IsPEC() bool {
	_, ok := info(k)
	return ok
}

// SubjectPrefix returns the prefix the rules put before the original
// subject in the Subject field of a message of kind k (RFC 6109 Appendix A),
// for example "ACCETTAZIONE: "; "" for a kind that is not PEC.
func (k Kind) SubjectPrefix() string { return rules(k).prefix }

// Tipo returns the daticert tipo of a message of kind k, "" for the busta
// di anomalia (which carries no dati di certificazione) and for kinds that
// are not PEC.
func (k Kind) Tipo() daticert.Tipo { return rules(k).tipo }

// Header field names of RFC 6109 §8.1 and of the fields the rules fix.
const (
	HeaderRicevuta             = "X-Ricevuta"
	HeaderTrasporto            = "X-Trasporto"
	HeaderRiferimentoMessageID = "X-Riferimento-Message-ID"
	HeaderTipoRicevuta         = "X-TipoRicevuta"
	HeaderVerificaSicurezza    = "X-VerificaSicurezza"
	HeaderMittente             = "X-Mittente"
)

// Timeout says which avviso di mancata consegna per superamento dei tempi
// massimi is meant (RFC 6109 §3.1.6): the first, after 12 hours without a
// ricevuta di presa in carico or di avvenuta consegna, or the second, at 24
// hours, which ends the transaction with a negative outcome.
type Timeout int

// The two avvisi of RFC 6109 §3.1.6.
const (
	Timeout12h Timeout = 12
	Timeout24h Timeout = 24
)
