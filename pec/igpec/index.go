package igpec

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/custode/custode/pec/daticert"
)

// Errors of the certificate lookups.
var (
	// ErrUnknownCertificate: no record lists the certificate's SHA-1 hash;
	// the message was not signed by a gestore.
	ErrUnknownCertificate = errors.New("certificate not in the indice dei gestori")
	// ErrCertificateMismatch: a record lists the hash but none of its
	// providerCertificate values is the certificate itself.
	ErrCertificateMismatch = errors.New("certificate hash listed but certificate differs")
)

// Index is the indice dei gestori: the provider records of a directory, with
// lookups by certificate, domain and name. An Index is immutable and safe
// for concurrent use. The *Provider values its methods return belong to the
// Index and must not be modified.
type Index struct {
	ldifLocationURL string
	providers       []*Provider
	byHash          map[string][]*Provider // upper-case hex SHA-1
	byDomain        map[string]*Provider   // NormalizeDomain
	byName          map[string][]*Provider // lower-case providerName
}

// NewIndex builds an Index from provider records, which it copies. Every
// record must pass [Provider.Validate], and no domain may be managed by two
// gestori (records of different providerName); records of the same gestore
// (its secondary environments) may share domains, in which case lookups by
// domain return the first.
func NewIndex(providers ...*Provider) (*Index, error) {
	ix := &Index{
		byHash:   make(map[string][]*Provider),
		byDomain: make(map[string]*Provider),
		byName:   make(map[string][]*Provider),
	}
	for _, p := range providers {
		if err := ix.add(p); err != nil {
			return nil, fmt.Errorf("igpec: %w", err)
		}
	}
	return ix, nil
}

// add validates and indexes a copy of p.
func (ix *Index) add(p *Provider) error {
	if p == nil {
		return errors.New("nil provider")
	}
	if err := p.validate(); err != nil {
		return fmt.Errorf("provider %q: %w", p.Name, err)
	}
	p = p.clone()
	name := strings.ToLower(strings.TrimSpace(p.Name))
	for _, d := range p.ManagedDomains {
		n := NormalizeDomain(d)
		if other, ok := ix.byDomain[n]; ok {
			if strings.ToLower(strings.TrimSpace(other.Name)) != name {
				return fmt.Errorf("provider %q: managedDomains %q is already managed by %q", p.Name, d, other.Name)
			}
			continue
		}
		ix.byDomain[n] = p
	}
	for _, h := range p.CertificateHashes {
		ix.byHash[h] = append(ix.byHash[h], p)
	}
	ix.byName[name] = append(ix.byName[name], p)
	ix.providers = append(ix.providers, p)
	return nil
}

// Providers returns the records of the index in the order they were given.
func (ix *Index) Providers() []*Provider {
	return append([]*Provider(nil), ix.providers...)
}

// LDIFLocationURL returns the LDIFLocationURL of the directory's root entry
// (o=postacert), where the whole signed directory is published, or "" if
// the LDIF had none.
func (ix *Index) LDIFLocationURL() string { return ix.ldifLocationURL }

// ProviderByCertificate returns the record of the gestore whose signing
// certificate cert is, following RFC 6109 §2.2.2: it looks the SHA-1 hash of
// the certificate up among the providerCertificateHash values, then requires
// the certificate itself among that record's providerCertificate values.
// The error wraps [ErrUnknownCertificate] when no record lists the hash and
// [ErrCertificateMismatch] when the records that list it hold other
// certificates. It checks neither the certificate's validity nor its chain.
func (ix *Index) ProviderByCertificate(cert *x509.Certificate) (*Provider, error) {
	if cert == nil {
		return nil, errors.New("igpec: lookup of a nil certificate")
	}
	return ix.ProviderByCertificateDER(cert.Raw)
}

// ProviderByCertificateDER is [Index.ProviderByCertificate] for a
// certificate given as DER bytes.
func (ix *Index) ProviderByCertificateDER(der []byte) (*Provider, error) {
	h := CertificateHash(der)
	candidates := ix.byHash[h]
	if len(candidates) == 0 {
		return nil, fmt.Errorf("igpec: certificate with SHA-1 %s: %w", h, ErrUnknownCertificate)
	}
	for _, p := range candidates {
		if p.HasCertificate(der) {
			return p, nil
		}
	}
	return nil, fmt.Errorf("igpec: certificate with SHA-1 %s: %w in the record of %q", h, ErrCertificateMismatch, candidates[0].Name)
}

// ProvidersByHash returns the records listing a providerCertificateHash,
// given in hexadecimal in any case, with or without colons.
func (ix *Index) ProvidersByHash(hash string) []*Provider {
	h, err := normalizeHash(hash)
	if err != nil {
		return nil
	}
	return append([]*Provider(nil), ix.byHash[h]...)
}

// ProviderByDomain returns the record of the gestore that manages domain,
// compared without regard to case or to a trailing dot.
func (ix *Index) ProviderByDomain(domain string) (*Provider, bool) {
	p, ok := ix.byDomain[NormalizeDomain(domain)]
	return p, ok
}

// IsManagedDomain reports whether some gestore manages domain, that is
// whether it is a PEC domain.
func (ix *Index) IsManagedDomain(domain string) bool {
	_, ok := ix.ProviderByDomain(domain)
	return ok
}

// RecipientTipo classifies a recipient address for the destinatari of the
// dati di certificazione: certificato when its domain is managed by some
// gestore, esterno otherwise (RFC 6109 §2.2.1). The address is an addr-spec
// (local@domain), optionally in angle brackets.
func (ix *Index) RecipientTipo(address string) (daticert.TipoDestinatario, error) {
	domain, err := addressDomain(address)
	if err != nil {
		return "", fmt.Errorf("igpec: recipient tipo: %w", err)
	}
	if ix.IsManagedDomain(domain) {
		return daticert.DestinatarioCertificato, nil
	}
	return daticert.DestinatarioEsterno, nil
}

// MailReceipt returns the service mailbox (mailReceipt) of the gestore that
// manages domain.
func (ix *Index) MailReceipt(domain string) (string, bool) {
	p, ok := ix.ProviderByDomain(domain)
	if !ok {
		return "", false
	}
	return p.MailReceipt, true
}

// ProvidersByName returns the records whose providerName is name, compared
// without regard to case: the gestore's main record and those of its
// secondary environments (providerUnit), in index order.
func (ix *Index) ProvidersByName(name string) []*Provider {
	return append([]*Provider(nil), ix.byName[strings.ToLower(strings.TrimSpace(name))]...)
}

// addressDomain returns the domain of an addr-spec.
func addressDomain(address string) (string, error) {
	a := strings.TrimSpace(address)
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = a[1 : len(a)-1]
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 {
		return "", fmt.Errorf("%q is not an address", address)
	}
	domain := NormalizeDomain(a[at+1:])
	if domain == "" || strings.ContainsAny(domain, " \t<>") {
		return "", fmt.Errorf("%q has no valid domain", address)
	}
	return domain, nil
}
