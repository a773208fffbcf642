package daticert_test

import (
	"fmt"
	"time"

	"github.com/custode/custode/pec/daticert"
)

func ExampleMarshal() {
	d := &daticert.Daticert{
		Tipo:             daticert.TipoAccettazione,
		Errore:           daticert.ErroreNessuno,
		Mittente:         "mario.rossi@pec.alfa.example",
		Destinatari:      []daticert.Destinatario{{Address: "anna.bianchi@pec.beta.example", Tipo: daticert.DestinatarioCertificato}},
		ReplyTo:          "mario.rossi@pec.alfa.example",
		Oggetto:          "Preventivo",
		GestoreEmittente: "Custode PEC S.p.A.",
		// The riferimento temporale of the transaction, chosen by the caller.
		Time:           time.Date(2025, time.June, 30, 8, 15, 0, 0, time.UTC),
		Identificativo: "custode.20250630101500.00001.01.1.1@pec.custode.example",
		MessageID:      "<x1@client.alfa.example>",
	}
	out, err := daticert.Marshal(d)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(out))
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?>
	// <postacert tipo="accettazione" errore="nessuno">
	//     <intestazione>
	//         <mittente>mario.rossi@pec.alfa.example</mittente>
	//         <destinatari tipo="certificato">anna.bianchi@pec.beta.example</destinatari>
	//         <risposte>mario.rossi@pec.alfa.example</risposte>
	//         <oggetto>Preventivo</oggetto>
	//     </intestazione>
	//     <dati>
	//         <gestore-emittente>Custode PEC S.p.A.</gestore-emittente>
	//         <data zona="+0200">
	//             <giorno>30/06/2025</giorno>
	//             <ora>10:15:00</ora>
	//         </data>
	//         <identificativo>custode.20250630101500.00001.01.1.1@pec.custode.example</identificativo>
	//         <msgid>&lt;x1@client.alfa.example&gt;</msgid>
	//     </dati>
	// </postacert>
}

func ExampleParse() {
	doc := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="errore-consegna" errore="no-dest">
  <intestazione>
    <mittente>mario.rossi@pec.alfa.example</mittente>
    <destinatari tipo="certificato">nessuno@pec.beta.example</destinatari>
    <risposte>mario.rossi@pec.alfa.example</risposte>
    <oggetto>Preventivo</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>Beta PEC S.p.A.</gestore-emittente>
    <data zona="+0100"><giorno>03/02/2025</giorno><ora>09:00:00</ora></data>
    <identificativo>opec1.20250203090000.1@pec.alfa.example</identificativo>
    <consegna>nessuno@pec.beta.example</consegna>
    <errore-esteso>5.1.1 - Beta PEC S.p.A. - indirizzo non valido</errore-esteso>
  </dati>
</postacert>`)
	d, err := daticert.Parse(doc)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Tipo, d.Errore, d.Consegna)
	fmt.Println(d.Time.UTC().Format(time.RFC3339))
	fmt.Println(d.ErroreEsteso)
	// Output:
	// errore-consegna no-dest nessuno@pec.beta.example
	// 2025-02-03T08:00:00Z
	// 5.1.1 - Beta PEC S.p.A. - indirizzo non valido
}
