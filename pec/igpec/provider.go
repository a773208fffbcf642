package igpec

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Provider is the record of one gestore (LDAP object class provider), or of
// one of its secondary environments, in the indice dei gestori.
type Provider struct {
	// DN is the entry's distinguished name, for example
	// "providerName=Alfa PEC S.p.A.,o=postacert". WriteLDIF derives it from
	// Name when it is empty.
	DN string

	Name  string   // providerName: the gestore's name; mandatory, single-valued
	Units []string // providerUnit: the environments this record describes

	// CertificateHashes are the providerCertificateHash values: the SHA-1 of
	// each signing certificate, as 40 upper-case hexadecimal digits. At least
	// one; more while certificates roll over.
	CertificateHashes []string

	// Certificates are the providerCertificate values: the DER bytes of each
	// signing certificate. At least one.
	Certificates [][]byte

	MailReceipt     string   // mailReceipt: the service mailbox for ricevute di presa in carico and virus notices; mandatory
	ManagedDomains  []string // managedDomains: the PEC domains the gestore manages, as written; at least one
	LDIFLocationURL string   // LDIFLocationURL: where the gestore publishes its signed record
	Description     []string // description
}

// CertificateHash returns the providerCertificateHash of a certificate: the
// SHA-1 of its DER bytes as 40 upper-case hexadecimal digits. SHA-1 is what
// RFC 6109 prescribes for this lookup key.
func CertificateHash(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// AddCertificate adds a signing certificate, given as DER, and its hash to
// p, unless p already lists it. Use it to build our own gestore's record.
func (p *Provider) AddCertificate(der []byte) {
	for _, c := range p.Certificates {
		if bytes.Equal(c, der) {
			return
		}
	}
	p.Certificates = append(p.Certificates, bytes.Clone(der))
	if h := CertificateHash(der); !slices.Contains(p.CertificateHashes, h) {
		p.CertificateHashes = append(p.CertificateHashes, h)
	}
}

// Manages reports whether domain is among p's managedDomains, compared
// without regard to case or to a trailing dot. A receiving gestore uses it to
// check that the domain of a message's From: belongs to the gestore whose
// certificate signed it (RFC 6109 §7).
func (p *Provider) Manages(domain string) bool {
	d := NormalizeDomain(domain)
	if d == "" {
		return false
	}
	for _, m := range p.ManagedDomains {
		if NormalizeDomain(m) == d {
			return true
		}
	}
	return false
}

// HasCertificate reports whether der is one of p's providerCertificate
// values, byte for byte.
func (p *Provider) HasCertificate(der []byte) bool {
	for _, c := range p.Certificates {
		if bytes.Equal(c, der) {
			return true
		}
	}
	return false
}

// clone returns a deep copy of p.
func (p *Provider) clone() *Provider {
	c := *p
	c.Units = slices.Clone(p.Units)
	c.CertificateHashes = slices.Clone(p.CertificateHashes)
	c.Certificates = make([][]byte, len(p.Certificates))
	for i, der := range p.Certificates {
		c.Certificates[i] = bytes.Clone(der)
	}
	c.ManagedDomains = slices.Clone(p.ManagedDomains)
	c.Description = slices.Clone(p.Description)
	return &c
}

// NormalizeDomain returns the form of a domain name the index compares:
// trimmed, lower case, without a trailing dot.
func NormalizeDomain(domain string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
}

// Validate reports whether p has every attribute the provider object class
// requires (providerName, providerCertificateHash, providerCertificate,
// mailReceipt, managedDomains) in a usable form. The error names the
// attribute at fault.
func (p *Provider) Validate() error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("igpec: provider %q: %w", p.Name, err)
	}
	return nil
}

var errEmpty = errors.New("missing")

func (p *Provider) validate() error {
	if err := checkText("providerName", p.Name, true); err != nil {
		return err
	}
	for _, u := range p.Units {
		if err := checkText("providerUnit", u, true); err != nil {
			return err
		}
	}
	if len(p.CertificateHashes) == 0 {
		return fmt.Errorf("providerCertificateHash: %w", errEmpty)
	}
	for _, h := range p.CertificateHashes {
		if n, err := normalizeHash(h); err != nil || n != h {
			return fmt.Errorf("providerCertificateHash: %q is not 40 upper-case hexadecimal digits", h)
		}
	}
	if len(p.Certificates) == 0 {
		return fmt.Errorf("providerCertificate: %w", errEmpty)
	}
	for i, c := range p.Certificates {
		if len(c) == 0 {
			return fmt.Errorf("providerCertificate[%d]: %w", i+1, errEmpty)
		}
	}
	if err := checkText("mailReceipt", p.MailReceipt, true); err != nil {
		return err
	}
	if len(p.ManagedDomains) == 0 {
		return fmt.Errorf("managedDomains: %w", errEmpty)
	}
	for _, d := range p.ManagedDomains {
		if err := checkText("managedDomains", d, true); err != nil {
			return err
		}
		n := NormalizeDomain(d)
		if n == "" || strings.ContainsAny(n, "@/,") || strings.IndexFunc(n, unicode.IsSpace) >= 0 {
			return fmt.Errorf("managedDomains: %q is not a domain name", d)
		}
	}
	if err := checkText("LDIFLocationURL", p.LDIFLocationURL, false); err != nil {
		return err
	}
	for _, d := range p.Description {
		if err := checkText("description", d, false); err != nil {
			return err
		}
	}
	return nil
}

// checkText checks a textual attribute value: UTF-8 without NUL.
func checkText(attr, s string, mandatory bool) error {
	if strings.TrimSpace(s) == "" {
		if mandatory {
			return fmt.Errorf("%s: %w", attr, errEmpty)
		}
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8", attr)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s: NUL character", attr)
	}
	return nil
}

// normalizeHash returns a providerCertificateHash as 40 upper-case
// hexadecimal digits, accepting any case and colons between bytes.
func normalizeHash(h string) (string, error) {
	s := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(h), ":", ""))
	if len(s) != 2*sha1.Size {
		return "", fmt.Errorf("%q is not a SHA-1 hash in hexadecimal", h)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("%q is not a SHA-1 hash in hexadecimal", h)
	}
	return s, nil
}
