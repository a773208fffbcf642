package export_test

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custode/custode/ledger"
)

// TestFormatValidatorSnippet runs the Python validator of
// ledger/FORMAT.md §6, as the document prints it, on the canonical test
// entries (it accepts them and prints their leaf hash) and on texts the
// encoder never writes (it refuses each, as ledger.DecodeEntry does).
func TestFormatValidatorSnippet(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		if py, err = exec.LookPath("python3"); err != nil {
			t.Skip("python3 is not installed")
		}
	}
	doc, err := os.ReadFile("../ledger/FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(doc), "## 6.")
	_, code, ok := strings.Cut(sec, "```python\n")
	code, _, ok2 := strings.Cut(code, "```")
	if !ok || !ok2 {
		t.Fatal("FORMAT.md §6 has no python block")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "check.py")
	if err := os.WriteFile(script, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(entry []byte) (string, error) {
		if err := os.WriteFile(filepath.Join(dir, "entry.json"), entry, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(py, script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	files, _ := filepath.Glob("../ledger/testdata/entry-*.json")
	if len(files) == 0 {
		t.Fatal("no test entries")
	}
	var good []byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ledger.DecodeEntry(raw); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		leaf := ledger.LeafHash(raw)
		out, err := run(raw)
		if err != nil || out != hex.EncodeToString(leaf[:]) {
			t.Errorf("%s: the snippet says %q (%v), want the leaf hash %x", f, out, err, leaf)
		}
		if strings.Contains(string(raw), `"destinatari"`) && strings.Contains(string(raw), `"details"`) {
			good = raw
		}
	}
	if good == nil {
		t.Fatal("no test entry with destinatari and details")
	}
	g := string(good)
	repl := func(old, new string) string {
		if !strings.Contains(g, old) {
			t.Fatalf("the test entry has no %q", old)
		}
		return strings.Replace(g, old, new, 1)
	}
	bad := map[string]string{
		"space":                   repl(`,"kind"`, `, "kind"`),
		"trailing newline":        g + "\n",
		"byte order mark":         "\ufeff" + g,
		"unknown member":          repl(`{"`, `{"aaa":"x","`),
		"duplicate member":        repl(`"kind":`, `"v":1,"kind":`),
		"empty member":            repl(`{"`, `{"actor":"","`),
		"empty detail value":      repl(`"details":{`, `"details":{"a":"",`),
		"empty destinatario":      repl(`"destinatari":[`, `"destinatari":[{"indirizzo":"","tipo":"esterno"},`),
		"destinatario extra":      repl(`"tipo":"certificato"}`, `"tipo":"certificato","x":"y"}`),
		"destinatario bad tipo":   repl(`"tipo":"certificato"}`, `"tipo":"altro"}`),
		"empty related":           repl(`"related":[`, `"related":["",`),
		"float seq":               strings.Replace(g, `"seq":42`, `"seq":42.0`, 1),
		"exponent seq":            strings.Replace(g, `"seq":42`, `"seq":4.2e1`, 1),
		"NaN seq":                 strings.Replace(g, `"seq":42`, `"seq":NaN`, 1),
		"seq 2^53":                strings.Replace(g, `"seq":42`, `"seq":9007199254740992`, 1),
		"upper-case hex":          strings.Replace(g, `"prev":"0102`, `"prev":"0A02`, 1),
		"escaped slash":           repl(`"oggetto":"`, `"oggetto":"\/`),
		"escaped letter":          repl(`"oggetto":"`, `"oggetto":"\u0041`),
		"upper-case escape":       repl(`"oggetto":"`, `"oggetto":"\u001F`),
		"short time":              strings.Replace(g, `.005000000Z"`, `.005Z"`, 1),
		"unknown kind":            repl(`"kind":"`, `"kind":"x`),
		"null member":             repl(`{"`, `{"actor":null,"`),
		"boolean v":               strings.Replace(g, `"v":1}`, `"v":true}`, 1),
		"version 2":               strings.Replace(g, `"v":1}`, `"v":2}`, 1),
		"NUL in a string":         repl(`"oggetto":"`, `"oggetto":"\u0000`),
		"missing prev":            strings.Replace(g, `"prev":"0102030000000000000000000000000000000000000000000000000000000000",`, ``, 1),
		"details not strings":     repl(`"details":{`, `"details":{"a":1,`),
		"upper-case detail key":   repl(`"details":{`, `"details":{"A":"x",`),
		"members out of order":    repl(`{"client_message_id":`, `{"v":1,"client_message_id":`),
		"related is not an array": repl(`"related":[`, `"related":[[],`),
	}
	for name, text := range bad {
		if text == g {
			t.Errorf("%s: the test did not change the entry", name)
			continue
		}
		if out, err := run([]byte(text)); err == nil {
			t.Errorf("%s: the FORMAT.md snippet accepts it (%s)", name, out)
		}
		if _, err := ledger.DecodeEntry([]byte(text)); err == nil && name != "seq 2^53" {
			t.Errorf("%s: ledger.DecodeEntry accepts it", name)
		}
	}
}
