package verify

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// The object identifiers of RFC 5652 that CheckSignatureProfile requires.
var (
	oidSignedData  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	// oidSignatureTimeStampToken is id-aa-signatureTimeStampToken (RFC
	// 3161 appendix A), the one unsigned attribute allowed.
	oidSignatureTimeStampToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
)

// maxDERDepth bounds the nesting CheckSignatureProfile walks; a signature
// with its certificates nests about 15 deep.
const maxDERDepth = 64

// CheckSignatureProfile checks that sig, a detached CMS signature of the
// gestore (manifest.p7s, a checkpoint's signature), has exactly the form
// export/BUNDLE.md §1.1 gives, so that no byte of it can change and the
// signature still verify. The signature value covers only the signed
// attributes; the CMS parser normalises BER, and it reads neither the
// versions, nor the digestAlgorithms set, nor the eContentType. So:
//
//   - sig is one DER element (X.690 §10: definite lengths in their
//     shortest form, low tag numbers), with no byte after it, and every
//     constructed element inside it is exactly a run of DER elements;
//   - its contentType is id-signedData, its SignedData version is 1, its
//     eContentType is id-data with no eContent (detached), it has no
//     crls, and exactly one SignerInfo, of version 1, identified by
//     issuerAndSerialNumber;
//   - digestAlgorithms holds exactly one AlgorithmIdentifier, byte for
//     byte the SignerInfo's digestAlgorithm;
//   - the signed attributes are present, in DER order (X.690 §11.6), each
//     type once, with a contentType attribute of one value, id-data;
//   - the only unsigned attribute allowed is one signature timestamp
//     token (id-aa-signatureTimeStampToken).
//
// The signature itself, the messageDigest, the certificates and the
// timestamp token are checked by the callers.
func CheckSignatureProfile(sig []byte) error {
	if err := checkDER(sig); err != nil {
		return fmt.Errorf("not DER: %w", err)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if err := unmarshalAll(sig, &ci); err != nil {
		return fmt.Errorf("ContentInfo: %w", err)
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return fmt.Errorf("contentType %v, want id-signedData", ci.ContentType)
	}
	var sd struct {
		Version          int
		DigestAlgorithms []asn1.RawValue `asn1:"set"`
		EncapContentInfo struct {
			EContentType asn1.ObjectIdentifier
			EContent     asn1.RawValue `asn1:"optional,explicit,tag:0"`
		}
		Certificates asn1.RawValue   `asn1:"optional,tag:0"`
		CRLs         asn1.RawValue   `asn1:"optional,tag:1"`
		SignerInfos  []asn1.RawValue `asn1:"set"`
	}
	if err := unmarshalAll(ci.Content.Bytes, &sd); err != nil {
		return fmt.Errorf("SignedData: %w", err)
	}
	switch {
	case sd.Version != 1:
		return fmt.Errorf("SignedData version %d, want 1", sd.Version)
	case !sd.EncapContentInfo.EContentType.Equal(oidData):
		return fmt.Errorf("eContentType %v, want id-data", sd.EncapContentInfo.EContentType)
	case len(sd.EncapContentInfo.EContent.FullBytes) != 0:
		return errors.New("the signature carries content; it must be detached")
	case len(sd.CRLs.FullBytes) != 0:
		return errors.New("the signature carries crls")
	case len(sd.SignerInfos) != 1:
		return fmt.Errorf("%d SignerInfos, want 1", len(sd.SignerInfos))
	case len(sd.DigestAlgorithms) != 1:
		return fmt.Errorf("%d digestAlgorithms, want 1", len(sd.DigestAlgorithms))
	}
	var si struct {
		Version            int
		SID                asn1.RawValue
		DigestAlgorithm    asn1.RawValue
		SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
		SignatureAlgorithm pkix.AlgorithmIdentifier
		Signature          []byte
		UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
	}
	if err := unmarshalAll(sd.SignerInfos[0].FullBytes, &si); err != nil {
		return fmt.Errorf("SignerInfo: %w", err)
	}
	switch {
	case si.Version != 1:
		return fmt.Errorf("SignerInfo version %d, want 1", si.Version)
	case si.SID.Class != asn1.ClassUniversal || si.SID.Tag != asn1.TagSequence:
		return errors.New("the SignerInfo is not identified by issuerAndSerialNumber")
	case !bytes.Equal(sd.DigestAlgorithms[0].FullBytes, si.DigestAlgorithm.FullBytes):
		return errors.New("digestAlgorithms is not the SignerInfo's digestAlgorithm")
	case len(si.SignedAttrs.FullBytes) == 0:
		return errors.New("the SignerInfo has no signed attributes")
	}
	signed, err := attributes(si.SignedAttrs.Bytes)
	if err != nil {
		return fmt.Errorf("signed attributes: %w", err)
	}
	ct, ok := signed[oidContentType.String()]
	if !ok {
		return errors.New("signed attributes: no contentType")
	}
	var ctValue asn1.ObjectIdentifier
	if err := unmarshalAll(ct, &ctValue); err != nil || !ctValue.Equal(oidData) {
		return errors.New("signed attributes: the contentType is not one value, id-data")
	}
	if len(si.UnsignedAttrs.FullBytes) != 0 {
		unsigned, err := attributes(si.UnsignedAttrs.Bytes)
		if err != nil {
			return fmt.Errorf("unsigned attributes: %w", err)
		}
		for t := range unsigned {
			if t != oidSignatureTimeStampToken.String() {
				return fmt.Errorf("unsigned attribute %s; only a signature timestamp token is allowed", t)
			}
		}
	}
	return nil
}

// attributes parses the contents of a SET OF Attribute: each in DER
// order after the one before, each type once. It returns, by type, the
// value of each attribute that has exactly one (nil for the others).
func attributes(b []byte) (map[string][]byte, error) {
	out := make(map[string][]byte)
	var prev []byte
	for len(b) > 0 {
		var a struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		rest, err := asn1.Unmarshal(b, &a)
		if err != nil {
			return nil, err
		}
		elem := b[:len(b)-len(rest)]
		if prev != nil && derSetLess(elem, prev) {
			return nil, fmt.Errorf("attribute %v out of DER order", a.Type)
		}
		prev, b = elem, rest
		if _, dup := out[a.Type.String()]; dup {
			return nil, fmt.Errorf("attribute %v appears more than once", a.Type)
		}
		out[a.Type.String()] = nil
		if len(a.Values) == 1 {
			out[a.Type.String()] = a.Values[0].FullBytes
		}
	}
	return out, nil
}

// derSetLess reports whether a sorts before b in a DER SET OF: compared as
// octet strings, the shorter padded at its end with zero octets (X.690
// §11.6).
func derSetLess(a, b []byte) bool {
	for i := range max(len(a), len(b)) {
		var x, y byte
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// unmarshalAll is asn1.Unmarshal that also refuses bytes after the value.
func unmarshalAll(b []byte, v any) error {
	rest, err := asn1.Unmarshal(b, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes after the value", len(rest))
	}
	return nil
}

// checkDER checks that b is exactly one DER element, every constructed
// element in it exactly a run of DER elements.
func checkDER(b []byte) error {
	rest, err := checkElement(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes after the element", len(rest))
	}
	return nil
}

// checkElement checks the DER element at the start of b and returns what
// follows it.
func checkElement(b []byte, depth int) ([]byte, error) {
	if depth > maxDERDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxDERDepth)
	}
	if len(b) < 2 {
		return nil, errors.New("truncated element")
	}
	tag, l := b[0], int(b[1])
	if tag&0x1f == 0x1f {
		return nil, errors.New("high tag number form")
	}
	b = b[2:]
	if l >= 0x80 {
		n := l & 0x7f
		switch {
		case n == 0:
			return nil, errors.New("indefinite length")
		case n > 4 || n > len(b):
			return nil, errors.New("bad length")
		case b[0] == 0:
			return nil, errors.New("length not in its shortest form")
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | int(c)
		}
		if l < 0x80 {
			return nil, errors.New("length not in its shortest form")
		}
		b = b[n:]
	}
	if l > len(b) {
		return nil, errors.New("element longer than what holds it")
	}
	content, rest := b[:l], b[l:]
	if tag&0x20 != 0 {
		for len(content) > 0 {
			var err error
			if content, err = checkElement(content, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return rest, nil
}
