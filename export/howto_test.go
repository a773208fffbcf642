package export_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export"
)

// TestVerifyTxtRunsVerbatim runs every command line of VERIFY.txt, as
// written, with bash and with dash, in the unzipped bundle with the anchor
// saved as anchor.pem: on genuine bundles every line exits 0; on bundles
// whose gestore signature was re-made by another key (or whose
// reproduction or proof belongs elsewhere), a line fails. The whole file
// also runs as a script.
func TestVerifyTxtRunsVerbatim(t *testing.T) {
	t.Parallel()
	shells := []string{}
	for _, sh := range []string{"bash", "dash"} {
		if _, err := exec.LookPath(sh); err != nil {
			t.Logf("%s is not installed: not run with it", sh)
			continue
		}
		shells = append(shells, sh)
	}
	for _, tool := range []string{"openssl", "python3", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if len(shells) == 0 {
		t.Skip("neither bash nor dash is installed")
	}
	k := newTamperKit(t)
	x, err := export.Extract(context.Background(), export.ExtractOptions{Ledger: k.f.ledger, Mailbox: "mario@pec.alfa.test",
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Signer: k.f.signer, GestoreCA: k.f.caPEM, TSACA: k.f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	var xz bytes.Buffer
	if err := x.WriteZip(&xz); err != nil {
		t.Fatal(err)
	}
	good := map[string][]byte{"original": k.orig, "reproduction": k.repro, "extract": xz.Bytes()}
	bad := map[string][]byte{}
	for _, a := range k.attacker {
		bad["manifest.p7s by "+a.name] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, a)
		})(t)[0]
	}
	bad["checkpoint.p7s and manifest.p7s by "+k.beta.name] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, k.beta)
		k.resign(t, fs, k.beta)
	})(t)[0]
	bad["reproduction and manifest.p7s by "+k.beta.name] = edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, k.beta, time.Now(), nil)
		k.resign(t, fs, k.beta)
	})(t)[0]
	bad["reproduction of another transaction, manifest by the gestore"] = edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileReceipt] = unzipFiles(t, k.reproA)[export.FileReceipt]
		k.resign(t, fs, k.gestore)
	})(t)[0]
	bad["proof.json of another checkpoint, manifest by the gestore"] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileProof] = unzipFiles(t, k.older)[export.FileProof]
		k.resign(t, fs, k.gestore)
	})(t)[0]

	// The first checkpoint: each fails at its own line.
	badAt := map[string]string{}
	bad["first-checkpoint.p7s by "+k.beta.name+", manifest by the gestore"] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		k.sign(t, fs, export.FileFirstCheckpoint, export.FileFirstCheckpointSig, k.beta)
		k.resign(t, fs, k.gestore)
	})(t)[0]
	badAt["first-checkpoint.p7s by "+k.beta.name+", manifest by the gestore"] = "signer-first-checkpoint.pem"
	bad["first-checkpoint.tsr of the newest checkpoint, manifest by the gestore"] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileFirstCheckpointTSR] = fs[export.FileCheckpointTSR]
		k.resign(t, fs, k.gestore)
	})(t)[0]
	badAt["first-checkpoint.tsr of the newest checkpoint, manifest by the gestore"] = "openssl ts -verify -token_in -in first-checkpoint.tsr"
	bad["consistency proof altered, manifest by the gestore"] = edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileProof] = regexp.MustCompile(`("consistency": \[\s*")[0-9a-f]{64}`).ReplaceAll(fs[export.FileProof], []byte("${1}"+strings.Repeat("ab", 32)))
		k.resign(t, fs, k.gestore)
	})(t)[0]
	badAt["consistency proof altered, manifest by the gestore"] = "python3 verify_proof.py"

	for _, sh := range shells {
		for name, z := range good {
			t.Run(sh+"/good "+name, func(t *testing.T) {
				t.Parallel() // each runs its own processes in its own directory
				dir, lines := unpack(t, k, z)
				for _, line := range lines {
					if out, err := runLine(sh, dir, line); err != nil {
						t.Errorf("%s: %v\n%s", line, err, out)
					}
				}
				if out, err := runLine(sh, dir, sh+" VERIFY.txt"); err != nil {
					t.Errorf("%s VERIFY.txt: %v\n%s", sh, err, out)
				}
			})
		}
		for name, z := range bad {
			t.Run(sh+"/bad "+name, func(t *testing.T) {
				t.Parallel()
				dir, lines := unpack(t, k, z)
				failed := ""
				for _, line := range lines {
					if _, err := runLine(sh, dir, line); err != nil {
						failed = line
						break
					}
				}
				if failed == "" {
					t.Error("every line of VERIFY.txt passed")
				}
				if want := badAt[name]; want != "" && !strings.Contains(failed, want) {
					t.Errorf("fails at %q, want the line of %q", failed, want)
				}
				t.Logf("fails at: %s", failed)
			})
		}
	}
}

// unpack writes a bundle's files and the anchor into a new directory, and
// returns it with VERIFY.txt's command lines.
func unpack(t *testing.T, k *tamperKit, z []byte) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range unzipFiles(t, z) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "anchor.pem"), k.f.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, export.FileHowTo))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(text), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 8 {
		t.Fatalf("VERIFY.txt has %d command lines:\n%s", len(lines), text)
	}
	return dir, lines
}

// runLine runs one line with shell sh in dir, with no environment but a
// PATH (the system's directories first, as a reader's fresh shell has
// them), and HOME.
func runLine(sh, dir, line string) (string, error) {
	cmd := exec.Command(sh, "-c", line)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:" + os.Getenv("PATH"), "HOME=" + dir}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
