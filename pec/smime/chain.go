package smime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

const (
	// maxChainLength bounds the certificates in a chain, root included.
	maxChainLength = 10
	// maxSignatureChecks bounds the signature checks one legacy chain
	// search may spend on candidate issuers.
	maxSignatureChecks = 100
)

// verifyChain verifies that leaf chains to one of roots at time at, using
// intermediates, and returns the chain from leaf to root. It uses
// crypto/x509; when allowSHA1 is set and that fails, it tries a path whose
// certificates are signed with SHA-1, which crypto/x509 no longer accepts,
// with legacyChain.
func verifyChain(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, at time.Time, usages []x509.ExtKeyUsage, allowSHA1 bool) ([]*x509.Certificate, error) {
	rootPool := x509.NewCertPool()
	for _, c := range roots {
		rootPool.AddCert(c)
	}
	interPool := x509.NewCertPool()
	for _, c := range intermediates {
		interPool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   at,
		KeyUsages:     usages,
	})
	if err == nil {
		return chains[0], nil
	}
	if allowSHA1 {
		chain, lerr := legacyChain(leaf, intermediates, roots, at, usages)
		if lerr == nil && usesSHA1(chain) {
			return chain, nil
		}
		if lerr != nil && !errors.Is(lerr, errNoSHA1) {
			return nil, lerr
		}
	}
	return nil, describeChainError(err, leaf, at)
}

// errNoSHA1 is returned by legacyChain when it finds no path that needs it.
var errNoSHA1 = errors.New("no SHA-1 path")

// usesSHA1 reports whether any certificate in chain below the root is
// signed with SHA-1.
func usesSHA1(chain []*x509.Certificate) bool {
	for _, c := range chain[:len(chain)-1] {
		if c.SignatureAlgorithm == x509.SHA1WithRSA || c.SignatureAlgorithm == x509.ECDSAWithSHA1 {
			return true
		}
	}
	return false
}

// describeChainError turns a crypto/x509 verification error into a reason
// in words.
func describeChainError(err error, leaf *x509.Certificate, at time.Time) error {
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		c := inv.Cert
		if c == nil {
			c = leaf
		}
		return validityReason(c, at, err)
	case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
		return newReason(ErrUntrusted, err, "certificate "+certName(inv.Cert)+" is not valid for e-mail protection (extended key usage): "+err.Error())
	case errors.As(err, &inv):
		return newReason(ErrUntrusted, err, "certificate chain of "+certName(leaf)+" is not valid: "+err.Error())
	case errors.As(err, &unk):
		return newReason(ErrUntrusted, err, "signer certificate "+certName(leaf)+" does not chain to a trusted root: "+err.Error())
	}
	return newReason(ErrUntrusted, err, "certificate chain of "+certName(leaf)+" is not valid: "+err.Error())
}

// validityReason describes why c is not valid at at.
func validityReason(c *x509.Certificate, at time.Time, cause error) error {
	when := at.UTC().Format(time.RFC3339)
	if at.After(c.NotAfter) {
		return newReason(ErrExpired, cause, fmt.Sprintf("certificate %s expired at %s (verification time %s)",
			certName(c), c.NotAfter.UTC().Format(time.RFC3339), when))
	}
	return newReason(ErrExpired, cause, fmt.Sprintf("certificate %s is not valid before %s (verification time %s)",
		certName(c), c.NotBefore.UTC().Format(time.RFC3339), when))
}

// validAt reports whether at lies within c's validity period.
func validAt(c *x509.Certificate, at time.Time) bool {
	return !at.Before(c.NotBefore) && !at.After(c.NotAfter)
}

// legacyChain builds and checks a chain from leaf to one of roots at time
// at without crypto/x509's refusal of SHA-1 signed certificates. It checks
// what crypto/x509 checks for such chains: validity periods, issuer and
// subject names and key identifiers, CA basic constraints, key usage,
// path length, critical extensions, extended key usage and the email, DNS
// and IP name constraints; it refuses chains it cannot check fully (URI
// name constraints, policy constraints). MD5 signatures stay refused.
func legacyChain(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, at time.Time, usages []x509.ExtKeyUsage) ([]*x509.Certificate, error) {
	if !validAt(leaf, at) {
		return nil, validityReason(leaf, at, nil)
	}
	if len(leaf.UnhandledCriticalExtensions) > 0 {
		return nil, newReason(ErrUntrusted, nil, "certificate "+certName(leaf)+" has an unhandled critical extension")
	}
	checks := 0
	var firstErr error
	note := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	var build func(chain []*x509.Certificate) []*x509.Certificate
	build = func(chain []*x509.Certificate) []*x509.Certificate {
		cur := chain[len(chain)-1]
		if len(chain) >= maxChainLength {
			return nil
		}
		for _, root := range roots {
			if bytes.Equal(root.Raw, cur.Raw) {
				return chain
			}
		}
		try := func(parent *x509.Certificate, isRoot bool) []*x509.Certificate {
			if !issuedBy(cur, parent) || slices.ContainsFunc(chain, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, parent.Raw) }) {
				return nil
			}
			if checks++; checks > maxSignatureChecks {
				return nil
			}
			if err := checkLink(cur, parent, len(chain)-1, isRoot, at); err != nil {
				note(err)
				return nil
			}
			next := append(slices.Clip(chain), parent)
			if isRoot {
				return next
			}
			return build(next)
		}
		for _, root := range roots {
			if c := try(root, true); c != nil {
				return c
			}
		}
		for _, ic := range intermediates {
			if c := try(ic, false); c != nil {
				return c
			}
		}
		return nil
	}
	chain := build([]*x509.Certificate{leaf})
	if chain == nil {
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, newReason(ErrUntrusted, nil, "signer certificate "+certName(leaf)+" does not chain to a trusted root (issuer "+leaf.Issuer.String()+")")
	}
	if !usesSHA1(chain) {
		return nil, errNoSHA1
	}
	if err := checkUsages(chain, usages); err != nil {
		return nil, err
	}
	for _, ca := range chain[1:] {
		if err := checkNameConstraints(leaf, ca); err != nil {
			return nil, err
		}
	}
	return chain, nil
}

// issuedBy reports whether parent's subject and key identifier match
// child's issuer and authority key identifier.
func issuedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	if len(child.AuthorityKeyId) > 0 && len(parent.SubjectKeyId) > 0 {
		return bytes.Equal(child.AuthorityKeyId, parent.SubjectKeyId)
	}
	return true
}

// checkLink checks that parent may issue child at time at, with below CA
// certificates between child and the leaf (0 when child is the leaf).
func checkLink(child, parent *x509.Certificate, below int, isRoot bool, at time.Time) error {
	if !validAt(parent, at) {
		return validityReason(parent, at, nil)
	}
	notCA := !parent.BasicConstraintsValid || !parent.IsCA
	if isRoot {
		// Version 1 roots carry no extensions at all.
		notCA = parent.Version == 3 && notCA
	}
	if notCA {
		return newReason(ErrUntrusted, nil, "certificate "+certName(parent)+" is not a CA and cannot issue "+certName(child))
	}
	if parent.KeyUsage != 0 && parent.KeyUsage&x509.KeyUsageCertSign == 0 {
		return newReason(ErrUntrusted, nil, "certificate "+certName(parent)+" may not sign certificates (key usage)")
	}
	if parent.BasicConstraintsValid && (parent.MaxPathLen > 0 || parent.MaxPathLenZero) && below > parent.MaxPathLen {
		return newReason(ErrUntrusted, nil, fmt.Sprintf("certificate %s allows %d intermediate CAs below it, the chain has %d", certName(parent), parent.MaxPathLen, below))
	}
	if len(parent.UnhandledCriticalExtensions) > 0 {
		return newReason(ErrUntrusted, nil, "certificate "+certName(parent)+" has an unhandled critical extension")
	}
	if parent.RequireExplicitPolicy > 0 || parent.RequireExplicitPolicyZero || parent.InhibitPolicyMapping > 0 ||
		parent.InhibitPolicyMappingZero || parent.InhibitAnyPolicy > 0 || parent.InhibitAnyPolicyZero {
		return newReason(ErrUntrusted, nil, "certificate "+certName(parent)+" sets policy constraints, which SHA-1 chains cannot be checked against")
	}
	if err := parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature); err != nil {
		return newReason(ErrUntrusted, err, "signature of "+certName(parent)+" on "+certName(child)+" does not verify: "+err.Error())
	}
	return nil
}

// checkUsages checks the extended key usages along chain as crypto/x509
// does: each certificate that lists usages must allow one of usages.
func checkUsages(chain []*x509.Certificate, usages []x509.ExtKeyUsage) error {
	if slices.Contains(usages, x509.ExtKeyUsageAny) {
		return nil
	}
	want := slices.Clone(usages)
	for i := len(chain) - 1; i >= 0; i-- {
		c := chain[i]
		if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
			continue
		}
		want = slices.DeleteFunc(want, func(u x509.ExtKeyUsage) bool { return !slices.Contains(c.ExtKeyUsage, u) })
		if len(want) == 0 {
			return newReason(ErrUntrusted, nil, "certificate "+certName(c)+" is not valid for e-mail protection (extended key usage)")
		}
	}
	return nil
}

// checkNameConstraints checks the names of leaf against the email, DNS and
// IP name constraints of ca (RFC 5280 §4.2.1.10). Email constraints apply
// to subject emailAddress attributes as well. It refuses URI constraints,
// which it does not implement.
func checkNameConstraints(leaf, ca *x509.Certificate) error {
	refuse := func(name string) error {
		return newReason(ErrUntrusted, nil, fmt.Sprintf("name %q of %s is not permitted by the name constraints of %s", name, certName(leaf), certName(ca)))
	}
	if len(ca.PermittedURIDomains) > 0 || len(ca.ExcludedURIDomains) > 0 {
		return newReason(ErrUntrusted, nil, "certificate "+certName(ca)+" has URI name constraints, which SHA-1 chains cannot be checked against")
	}
	for _, addr := range CertificateAddresses(leaf) {
		if !constrained(addr, ca.PermittedEmailAddresses, ca.ExcludedEmailAddresses, matchEmail) {
			return refuse(addr)
		}
	}
	for _, name := range leaf.DNSNames {
		if !constrained(name, ca.PermittedDNSDomains, ca.ExcludedDNSDomains, matchDomain) {
			return refuse(name)
		}
	}
	for _, ip := range leaf.IPAddresses {
		in := func(nets []*net.IPNet) bool {
			return slices.ContainsFunc(nets, func(n *net.IPNet) bool { return n.Contains(ip) })
		}
		if len(ca.PermittedIPRanges) > 0 && !in(ca.PermittedIPRanges) || in(ca.ExcludedIPRanges) {
			return refuse(ip.String())
		}
	}
	return nil
}

// constrained reports whether name is allowed by the permitted (if any) and
// excluded constraints, using match.
func constrained(name string, permitted, excluded []string, match func(name, constraint string) bool) bool {
	for _, c := range excluded {
		if match(name, c) {
			return false
		}
	}
	if len(permitted) == 0 {
		return true
	}
	for _, c := range permitted {
		if match(name, c) {
			return true
		}
	}
	return false
}

// matchEmail matches an address against an rfc822Name constraint: a whole
// mailbox, a host, or with a leading dot any subdomain of a domain.
func matchEmail(addr, constraint string) bool {
	if strings.Contains(constraint, "@") {
		return strings.EqualFold(addr, constraint)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	host := addr[at+1:]
	if strings.HasPrefix(constraint, ".") {
		return len(host) > len(constraint) && strings.EqualFold(host[len(host)-len(constraint):], constraint)
	}
	return strings.EqualFold(host, constraint)
}

// matchDomain matches a DNS name against a dNSName constraint: the domain
// itself or any name below it (only below it with a leading dot).
func matchDomain(name, constraint string) bool {
	if constraint == "" {
		return true
	}
	if strings.HasPrefix(constraint, ".") {
		return len(name) > len(constraint) && strings.EqualFold(name[len(name)-len(constraint):], constraint)
	}
	if strings.EqualFold(name, constraint) {
		return true
	}
	return len(name) > len(constraint) && name[len(name)-len(constraint)-1] == '.' &&
		strings.EqualFold(name[len(name)-len(constraint):], constraint)
}
