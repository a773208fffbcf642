package export

import (
	_ "embed"
	"fmt"
	"strings"

	"github.com/custode/custode/ledger/verify/bundle"
)

// FileProofScript is bundle.FileProofScript: the short Python script
// (standard library only) that VERIFY.txt runs.
const FileProofScript = bundle.FileProofScript

// proofScript is the text of verify_proof.py.
//
//go:embed verify_proof.py
var proofScript []byte

// The by-hand commands: each line of VERIFY.txt that is not a comment is
// one command that runs as written, in sh (dash), bash or any POSIX shell,
// from the directory the bundle is unzipped into, and must exit 0. They
// trust anchor.pem, the anchor the reader saves there, and nothing else:
// -no-CApath -no-CAstore keep openssl from loading the machine's store
// (openssl ts loads only what it is given), and -purpose smimesign
// refuses TLS server and TSA certificates.
const (
	howToAnchor = `# 0. The trust anchor. Save the CA certificate that certifies the gestore and
#    its TSA (for a gestore in the AgID list, the CA AgID publishes), in PEM, as
#    anchor.pem in this directory. The copies in certs/*-ca.pem are for
#    convenience and are NOT trusted: the commands below trust anchor.pem and
#    nothing else on this machine.
test -s anchor.pem
`
	howToManifest = `# 1. Every file is the one the gestore listed, with its SHA-256, in manifest.sha256:
sha256sum --strict -c manifest.sha256
#
# 2. Who signs: certs/gestore.pem is the gestore's signing certificate. Compare
#    its name, service address and fingerprint with those the gestore publishes:
openssl x509 -in certs/gestore.pem -noout -subject -ext subjectAltName -fingerprint -sha256
#
# 3. manifest.p7s is the signature over manifest.sha256 by exactly that
#    certificate, for S/MIME signing (TLS server and TSA certificates fail):
openssl cms -verify -binary -inform DER -in manifest.p7s -content manifest.sha256 -CAfile anchor.pem -no-CApath -no-CAstore -purpose smimesign -signer signer-manifest.pem -out /dev/null
test "$(openssl x509 -in signer-manifest.pem -noout -fingerprint -sha256)" = "$(openssl x509 -in certs/gestore.pem -noout -fingerprint -sha256)"
#
# 4. The checkpoint is timestamped by the TSA and signed by the same gestore:
#    by certs/gestore.pem, or by an earlier certificate of the gestore (one
#    made before a renewal) with the same subject and the same subjectAltName:
openssl ts -verify -token_in -in checkpoint.tsr -data checkpoint.txt -CAfile anchor.pem
openssl cms -verify -binary -inform DER -in checkpoint.p7s -content checkpoint.txt -CAfile anchor.pem -no-CApath -no-CAstore -purpose smimesign -signer signer-checkpoint.pem -out /dev/null
test "$(openssl x509 -in signer-checkpoint.pem -noout -subject -ext subjectAltName)" = "$(openssl x509 -in certs/gestore.pem -noout -subject -ext subjectAltName)"
`
	howToTimes = `#
# These openssl commands check certificates at the current time, which is
# stricter than custode verify: custode validates each signature at the time
# of its timestamp token (RFC 3161), and an original receipt at the time of
# checkpoint.tsr, never at the signingTime a signer claims. Once a
# certificate has expired, add -attime with that time in seconds since 1970,
# taken from "openssl ts -reply -token_in -in checkpoint.tsr -text".
`
)

// howTo is VERIFY.txt of a bundle.
func howTo(b *Bundle) string {
	var s strings.Builder
	fmt.Fprintf(&s, `# How to check this evidence bundle by hand.
# Every line that does not start with "#" is a command: run each, as written and
# in order, with sh, dash or bash, in the directory where the bundle is unzipped.
# Each must end with exit status 0 (the "test" lines print nothing when they pass).
# The whole file also runs as a script: sh VERIFY.txt
# Or, with Custode: custode verify -anchor anchor.pem BUNDLE.zip
set -e
#
%s#
%s#
# 4b. The first checkpoint that covers the entry (of %d entries), whose
#    timestamp dates the event: timestamped by the TSA and signed by the same
#    gestore, as in 4:
openssl ts -verify -token_in -in first-checkpoint.tsr -data first-checkpoint.txt -CAfile anchor.pem
openssl cms -verify -binary -inform DER -in first-checkpoint.p7s -content first-checkpoint.txt -CAfile anchor.pem -no-CApath -no-CAstore -purpose smimesign -signer signer-first-checkpoint.pem -out /dev/null
test "$(openssl x509 -in signer-first-checkpoint.pem -noout -subject -ext subjectAltName)" = "$(openssl x509 -in certs/gestore.pem -noout -subject -ext subjectAltName)"
#
# 5. entry.json is in the tree of %d entries whose root checkpoint.txt signs.
#    verify_proof.py (Python 3, standard library only, about two hundred
#    lines: read it) computes the leaf hash SHA-256(0x00 || entry.json), folds
#    it with the audit path of proof.json as RFC 9162 §2.1.3.2 verifies an
#    inclusion proof, and requires the root proof.json gives (hex) and the root
#    line of checkpoint.txt (base64 there: its signed form cannot change). It
#    then checks that first-checkpoint.txt covers the entry and that the
#    consistency proof of proof.json leads from its tree to checkpoint.txt's
#    (RFC 9162 §2.1.4.2), and that the time of first-checkpoint.tsr is at most
#    the checkpoint interval (checkpoint_interval_ms in proof.json) plus 5
#    minutes after the entry's riferimento temporale, and not more than 1
#    minute before it; an entry marked "imported" is reported, not held to
#    the bound. It prints the delay.
python3 verify_proof.py
#
`, howToAnchor, howToManifest, b.First.Size, b.Checkpoint.Size)
	if b.Reproduction {
		s.WriteString(`# 6. receipt.eml is a REPRODUCTION from the log (the original is not in the
#    archivio di sicurezza): signed by the gestore's certificate, it carries
#    entry.json byte for byte and states its seq, kind, identificativo and
#    riferimento temporale, which verify_proof.py checks:
python3 verify_proof.py receipt
openssl smime -verify -in receipt.eml -CAfile anchor.pem -no-CApath -no-CAstore -purpose smimesign -signer signer-receipt.pem -out /dev/null
test "$(openssl x509 -in signer-receipt.pem -noout -fingerprint -sha256)" = "$(openssl x509 -in certs/gestore.pem -noout -fingerprint -sha256)"
`)
	} else {
		s.WriteString(`# 6. receipt.eml is the ORIGINAL: its SHA-256 is the "sha256" member of
#    entry.json (verify_proof.py checks it), and it is signed by the gestore that
#    issued it (for a ricevuta di avvenuta consegna, the recipient's gestore: its
#    CA must be in anchor.pem too):
python3 verify_proof.py receipt
openssl smime -verify -in receipt.eml -CAfile anchor.pem -no-CApath -no-CAstore -purpose smimesign -out /dev/null
`)
	}
	s.WriteString(howToTimes)
	return s.String()
}

// howToExtract is VERIFY.txt of a log extract.
func howToExtract() string {
	return fmt.Sprintf(`# How to check this log extract by hand.
# Every line that does not start with "#" is a command: run each, as written and
# in order, with sh, dash or bash, in the directory where the extract is unzipped.
# Each must end with exit status 0 (the "test" lines print nothing when they pass).
# The whole file also runs as a script: sh VERIFY.txt
# Or, with Custode: custode verify -anchor anchor.pem EXTRACT.zip
set -e
#
%s#
%s#
# 5. Every entry of extract.json is in the tree whose root checkpoint.txt signs.
#    verify_proof.py (Python 3, standard library only: read it) computes each
#    leaf hash SHA-256(0x00 || entry), folds it with the entry's audit path as
#    RFC 9162 §2.1.3.2 verifies an inclusion proof, and requires the root of
#    the proof (hex) and the root line of checkpoint.txt (base64 there):
python3 verify_proof.py
%s`, howToAnchor, howToManifest, howToTimes)
}
