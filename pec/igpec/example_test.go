package igpec_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/custode/custode/pec/igpec"
)

// A punto di accesso classifies each recipient for the dati di
// certificazione.
func ExampleIndex_RecipientTipo() {
	f, err := os.Open("testdata/igpec.ldif")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	ix, err := igpec.ParseLDIF(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, rcpt := range []string{"anna.bianchi@PEC.Beta.example", "mario.rossi@mail.example"} {
		tipo, err := ix.RecipientTipo(rcpt)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(rcpt, tipo)
	}
	// Output:
	// anna.bianchi@PEC.Beta.example certificato
	// mario.rossi@mail.example esterno
}

// A punto di ricezione finds the gestore that signed an incoming message
// and where its ricevuta di presa in carico goes.
func ExampleIndex_ProviderByCertificate() {
	f, err := os.Open("testdata/igpec.ldif")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	ix, err := igpec.ParseLDIF(f)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := os.ReadFile("testdata/certs/beta-2025.pem") // the signer of the busta
	if err != nil {
		fmt.Println(err)
		return
	}
	block, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := ix.ProviderByCertificate(cert)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name)
	fmt.Println(p.MailReceipt)
	fmt.Println(p.Manages("pec.beta.example"))
	// Output:
	// Beta Posta Certificata Società S.r.l.
	// ricevute@pec.beta.example
	// true
}
