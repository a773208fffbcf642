package tsa

import (
	"bytes"
	"context"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

// OIDSignatureTimeStampToken is id-aa-signatureTimeStampToken (RFC 3161
// Appendix A), the unsigned attribute of a CMS SignerInfo that holds a
// time-stamp token over the signature value: the CAdES-T level of ETSI EN
// 319 122-1.
var OIDSignatureTimeStampToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}

// oidSignedData is id-signedData (RFC 5652 §5.1).
var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// MaxStampedSignatureSize is the largest CMS SignedData StampSignature and
// VerifySignatureTimestamp take: a signature of a few kilobytes plus its
// tokens, with a wide margin.
const MaxStampedSignatureSize = 2 << 20

// ErrNoSignatureTimestamp is returned (wrapped) by VerifySignatureTimestamp
// when the signature carries no signature time-stamp token at all.
var ErrNoSignatureTimestamp = errors.New("tsa: the signature has no signature time-stamp token (CAdES-T)")

// signerInfoParts is a DER CMS SignedData taken apart around its only
// SignerInfo, enough to put it together again with other unsigned
// attributes and every other byte unchanged.
type signerInfoParts struct {
	contentType []byte   // ContentInfo.contentType, DER
	sdHead      []byte   // SignedData fields before signerInfos, DER
	siHead      []byte   // SignerInfo fields up to and including signature, DER
	signature   []byte   // the content of SignerInfo.signature
	unsigned    [][]byte // the unsigned attributes, DER, in order
}

// parseSignerInfo takes apart p7s, a DER ContentInfo holding a SignedData
// with exactly one SignerInfo. BER (indefinite lengths) is refused.
func parseSignerInfo(p7s []byte) (*signerInfoParts, error) {
	if len(p7s) > MaxStampedSignatureSize {
		return nil, fmt.Errorf("the signature is %d bytes, more than %d", len(p7s), MaxStampedSignatureSize)
	}
	ci, err := children(p7s, asn1.ClassUniversal, asn1.TagSequence, "ContentInfo", true)
	if err != nil {
		return nil, err
	}
	if len(ci) != 2 {
		return nil, fmt.Errorf("the ContentInfo has %d fields, want 2", len(ci))
	}
	var ct asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(ci[0].FullBytes, &ct); err != nil || !ct.Equal(oidSignedData) {
		return nil, errors.New("the ContentInfo does not hold a SignedData")
	}
	if ci[1].Class != asn1.ClassContextSpecific || ci[1].Tag != 0 || !ci[1].IsCompound {
		return nil, errors.New("the ContentInfo's content is not [0] EXPLICIT")
	}
	sd, err := children(ci[1].Bytes, asn1.ClassUniversal, asn1.TagSequence, "SignedData", true)
	if err != nil {
		return nil, err
	}
	if len(sd) < 4 {
		return nil, fmt.Errorf("the SignedData has %d fields, want at least 4", len(sd))
	}
	last := sd[len(sd)-1]
	sis, err := children(last.FullBytes, asn1.ClassUniversal, asn1.TagSet, "signerInfos", true)
	if err != nil {
		return nil, err
	}
	if len(sis) != 1 {
		return nil, fmt.Errorf("the SignedData has %d signers, want exactly 1", len(sis))
	}
	si, err := children(sis[0].FullBytes, asn1.ClassUniversal, asn1.TagSequence, "SignerInfo", true)
	if err != nil {
		return nil, err
	}
	p := &signerInfoParts{contentType: ci[0].FullBytes}
	for _, f := range sd[:len(sd)-1] {
		p.sdHead = append(p.sdHead, f.FullBytes...)
	}
	// version, sid, digestAlgorithm, [0] signedAttrs OPTIONAL,
	// signatureAlgorithm, signature, [1] unsignedAttrs OPTIONAL. The
	// signature is the first universal OCTET STRING after the first
	// three fields (a sid of subjectKeyIdentifier is [0], not universal).
	sig := -1
	for i := 3; i < len(si); i++ {
		if si[i].Class == asn1.ClassUniversal && si[i].Tag == asn1.TagOctetString && !si[i].IsCompound {
			sig = i
			break
		}
	}
	if sig < 0 {
		return nil, errors.New("the SignerInfo has no signature value")
	}
	for _, f := range si[:sig+1] {
		p.siHead = append(p.siHead, f.FullBytes...)
	}
	p.signature = si[sig].Bytes
	switch rest := si[sig+1:]; {
	case len(rest) == 0:
	case len(rest) == 1 && rest[0].Class == asn1.ClassContextSpecific && rest[0].Tag == 1 && rest[0].IsCompound:
		attrs, err := children(rest[0].FullBytes, asn1.ClassContextSpecific, 1, "unsignedAttrs", true)
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			p.unsigned = append(p.unsigned, a.FullBytes)
		}
	default:
		return nil, errors.New("the SignerInfo has unexpected fields after the signature value")
	}
	return p, nil
}

// encode puts the parts together again as a DER ContentInfo.
func (p *signerInfoParts) encode() ([]byte, error) {
	attrs := slices.Clone(p.unsigned)
	// DER orders a SET OF by the encodings of its elements.
	slices.SortFunc(attrs, bytes.Compare)
	si := slices.Clone(p.siHead)
	if len(attrs) > 0 {
		u, err := tlv(asn1.ClassContextSpecific, 1, bytes.Join(attrs, nil))
		if err != nil {
			return nil, err
		}
		si = append(si, u...)
	}
	steps := []struct {
		class, tag int
		head       []byte
	}{
		{asn1.ClassUniversal, asn1.TagSequence, nil},           // SignerInfo
		{asn1.ClassUniversal, asn1.TagSet, nil},                // signerInfos
		{asn1.ClassUniversal, asn1.TagSequence, p.sdHead},      // SignedData
		{asn1.ClassContextSpecific, 0, nil},                    // [0] EXPLICIT
		{asn1.ClassUniversal, asn1.TagSequence, p.contentType}, // ContentInfo
	}
	der := si
	for _, s := range steps {
		var err error
		if der, err = tlv(s.class, s.tag, append(slices.Clone(s.head), der...)); err != nil {
			return nil, err
		}
	}
	return der, nil
}

// octets returns the DER encoding of b as an OCTET STRING.
func (*signerInfoParts) octets(b []byte) ([]byte, error) {
	return asn1.Marshal(b)
}

// tlv returns the DER encoding of a constructed value.
func tlv(class, tag int, body []byte) ([]byte, error) {
	b, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: true, Bytes: body})
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	return b, nil
}

// children decodes der as one constructed DER value of the class and tag
// given and returns its fields. whole requires der to hold nothing else.
func children(der []byte, class, tag int, what string, whole bool) ([]asn1.RawValue, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return nil, fmt.Errorf("the %s is not DER: %v", what, err)
	}
	if whole && len(rest) > 0 {
		return nil, fmt.Errorf("the %s is followed by %d bytes", what, len(rest))
	}
	if v.Class != class || v.Tag != tag || !v.IsCompound {
		return nil, fmt.Errorf("the %s has the wrong tag", what)
	}
	var out []asn1.RawValue
	for b := v.Bytes; len(b) > 0; {
		var f asn1.RawValue
		if b, err = asn1.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("a field of the %s is not DER: %v", what, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// StampSignature returns p7s, a DER CMS SignedData (ContentInfo) with
// exactly one SignerInfo, with a signature time-stamp token added to that
// SignerInfo as the unsigned attribute id-aa-signatureTimeStampToken
// (RFC 3161 Appendix A; CAdES-T): a token from s whose message imprint is
// the SHA-256 digest of the content octets of the SignerInfo's signature
// value. Unsigned attributes already present are kept. Every other byte of
// p7s is unchanged, so the signature verifies as before; only the lengths
// of the values around the SignerInfo grow. BER input is refused.
func StampSignature(ctx context.Context, p7s []byte, s Stamper) ([]byte, error) {
	if s == nil {
		return nil, errors.New("tsa: stamp signature: no Stamper")
	}
	p, err := parseSignerInfo(p7s)
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	digest := crypto.SHA256.New()
	digest.Write(p.signature)
	token, err := s.Timestamp(ctx, digest.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	oid, err := asn1.Marshal(OIDSignatureTimeStampToken)
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	values, err := tlv(asn1.ClassUniversal, asn1.TagSet, token)
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	attr, err := tlv(asn1.ClassUniversal, asn1.TagSequence, append(oid, values...))
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	p.unsigned = append(p.unsigned, attr)
	out, err := p.encode()
	if err != nil {
		return nil, fmt.Errorf("tsa: stamp signature: %w", err)
	}
	return out, nil
}

// SignatureValue returns the content octets of the signature value of the
// only SignerInfo of p7s, a DER CMS SignedData: the data a signature
// time-stamp token is over (for `openssl ts -verify -data`).
func SignatureValue(p7s []byte) ([]byte, error) {
	p, err := parseSignerInfo(p7s)
	if err != nil {
		return nil, fmt.Errorf("tsa: signature value: %w", err)
	}
	return p.signature, nil
}

// SignatureTimestamps returns the signature time-stamp tokens
// (id-aa-signatureTimeStampToken values) of the only SignerInfo of p7s, a
// DER CMS SignedData, in order; none is an empty slice and no error.
func SignatureTimestamps(p7s []byte) ([][]byte, error) {
	p, err := parseSignerInfo(p7s)
	if err != nil {
		return nil, fmt.Errorf("tsa: signature time-stamps: %w", err)
	}
	toks, err := p.tokens()
	if err != nil {
		return nil, fmt.Errorf("tsa: signature time-stamps: %w", err)
	}
	return toks, nil
}

// tokens returns the values of the id-aa-signatureTimeStampToken
// attributes.
func (p *signerInfoParts) tokens() ([][]byte, error) {
	var toks [][]byte
	for _, a := range p.unsigned {
		var attr struct {
			Type   asn1.ObjectIdentifier
			Values asn1.RawValue
		}
		if rest, err := asn1.Unmarshal(a, &attr); err != nil || len(rest) > 0 {
			return nil, errors.New("an unsigned attribute is malformed")
		}
		if !attr.Type.Equal(OIDSignatureTimeStampToken) {
			continue
		}
		if attr.Values.Class != asn1.ClassUniversal || attr.Values.Tag != asn1.TagSet || !attr.Values.IsCompound {
			return nil, errors.New("the signature time-stamp attribute's values are not a SET")
		}
		n := 0
		for b := attr.Values.Bytes; len(b) > 0; n++ {
			var v asn1.RawValue
			var err error
			if b, err = asn1.Unmarshal(b, &v); err != nil {
				return nil, fmt.Errorf("a signature time-stamp token is not DER: %v", err)
			}
			toks = append(toks, v.FullBytes)
		}
		if n == 0 {
			return nil, errors.New("a signature time-stamp attribute has no value")
		}
	}
	return toks, nil
}

// VerifySignatureTimestamp checks the signature time-stamp (CAdES-T) of
// p7s, a DER CMS SignedData with exactly one SignerInfo, and returns what
// the token says; its GenTime is the time by which the signature existed,
// the time at which the signer's certificate is to be validated.
//
// Every id-aa-signatureTimeStampToken value of the SignerInfo must be a
// token whose message imprint is the digest (under the token's own hash) of
// the content octets of the SignerInfo's signature value and that passes
// Verify with opts (opts.Nonce is ignored: the nonce of a stored token is
// not known). When there are several, the one with the earliest genTime is
// returned. A signature with no token gives an error matching
// ErrNoSignatureTimestamp. It checks neither the CMS signature itself nor
// its signer: that is the caller's, at the returned time.
func VerifySignatureTimestamp(p7s []byte, opts VerifyOptions) (*Info, error) {
	info, err := verifySignatureTimestamp(p7s, opts)
	if err != nil {
		return nil, fmt.Errorf("tsa: verify signature time-stamp: %w", err)
	}
	return info, nil
}

func verifySignatureTimestamp(p7s []byte, opts VerifyOptions) (*Info, error) {
	p, err := parseSignerInfo(p7s)
	if err != nil {
		return nil, err
	}
	toks, err := p.tokens()
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, ErrNoSignatureTimestamp
	}
	opts.Nonce = nil
	var first *Info
	for i, tok := range toks {
		h, err := tokenHash(tok)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		d := h.New()
		d.Write(p.signature)
		info, err := verify(tok, d.Sum(nil), opts)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		if first == nil || info.GenTime.Before(first.GenTime) {
			first = info
		}
	}
	return first, nil
}

// maxTokenDepth bounds the nesting of a signature time-stamp token; a
// token with a certificate chain nests about a dozen levels deep.
const maxTokenDepth = 32

// checkDER checks that b is a sequence of DER values nested at most depth
// levels deep, so that no crafted BER nesting reaches the CMS parser, whose
// recursion a deep input turns into a fatal stack overflow.
func checkDER(b []byte, depth int) error {
	if depth == 0 {
		return errors.New("the token is nested too deep")
	}
	for len(b) > 0 {
		var v asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("the token is not DER: %v", err)
		}
		if v.IsCompound {
			if err := checkDER(v.Bytes, depth-1); err != nil {
				return err
			}
		}
	}
	return nil
}

// tokenHash returns the hash of a token's message imprint, without
// checking the token's signature. It decodes DER alone, nested at most
// maxTokenDepth deep.
func tokenHash(token []byte) (crypto.Hash, error) {
	if len(token) > MaxTokenSize {
		return 0, fmt.Errorf("the token is %d bytes, more than %d", len(token), MaxTokenSize)
	}
	if err := checkDER(token, maxTokenDepth); err != nil {
		return 0, err
	}
	ci, err := children(token, asn1.ClassUniversal, asn1.TagSequence, "token", true)
	if err != nil {
		return 0, err
	}
	if len(ci) != 2 || ci[1].Class != asn1.ClassContextSpecific || ci[1].Tag != 0 {
		return 0, errors.New("the token is not a ContentInfo")
	}
	sd, err := children(ci[1].Bytes, asn1.ClassUniversal, asn1.TagSequence, "token's SignedData", true)
	if err != nil {
		return 0, err
	}
	if len(sd) < 3 {
		return 0, errors.New("the token's SignedData is truncated")
	}
	encap, err := children(sd[2].FullBytes, asn1.ClassUniversal, asn1.TagSequence, "token's encapsulated content", true)
	if err != nil {
		return 0, err
	}
	if len(encap) != 2 || encap[1].Class != asn1.ClassContextSpecific || encap[1].Tag != 0 {
		return 0, errors.New("the token has no encapsulated TSTInfo")
	}
	var content []byte
	if rest, err := asn1.Unmarshal(encap[1].Bytes, &content); err != nil || len(rest) > 0 {
		return 0, errors.New("the token's encapsulated TSTInfo is not an OCTET STRING")
	}
	var tst tstInfo
	if _, err := asn1.Unmarshal(content, &tst); err != nil {
		return 0, fmt.Errorf("the token does not hold a TSTInfo: %w", err)
	}
	h, ok := hashForOID(tst.MessageImprint.HashAlgorithm.Algorithm)
	if !ok {
		return 0, fmt.Errorf("the token's message imprint uses %v; only SHA-256, SHA-384 and SHA-512 are accepted", tst.MessageImprint.HashAlgorithm.Algorithm)
	}
	return h, nil
}
