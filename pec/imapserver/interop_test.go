package imapserver

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pythonScript drives the server with Python's imaplib, as a mail client
// would, and prints what it got.
const pythonScript = `
import imaplib, os, ssl, sys, time

ctx = ssl.create_default_context(cafile=os.environ["CA"])
M = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]), timeout=20)
M.starttls(ssl_context=ctx)
try:
    M.login(os.environ["IMAP_USER"], "wrong-password")
    print("WRONG accepted")
except imaplib.IMAP4.error as e:
    print("WRONG refused")
typ, _ = M.login(os.environ["IMAP_USER"], os.environ["IMAP_PASS"])
print("LOGIN", typ)
typ, data = M.list()
print("LIST", typ, b" | ".join(data).decode())
typ, data = M.select("INBOX")
print("SELECT", typ, data[0].decode())
typ, data = M.search(None, "UNSEEN")
print("UNSEEN", data[0].decode())
typ, data = M.uid("SEARCH", None, "SUBJECT", "due")
print("SUBJECT", data[0].decode())
typ, data = M.fetch("1", "(UID RFC822.SIZE RFC822)")
print("FETCH", typ, data[0][0].decode())
print("BODY", data[0][1].hex())
typ, data = M.search(None, "SEEN")
print("SEEN", data[0].decode())
typ, data = M.store("2", "+FLAGS", "(\\Flagged)")
print("STORE", typ, data[0].decode())
typ, data = M.search(None, "FLAGGED")
print("FLAGGED", data[0].decode())
typ, data = M.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(time.time()), b"Subject: da python\r\n\r\nciao\r\n")
print("APPEND", typ, data[0].decode())
typ, data = M.store("3", "+FLAGS", "(\\Deleted)")
typ, data = M.expunge()
print("EXPUNGE", typ, data)
M.close()
M.logout()
print("DONE")
`

func TestPythonImaplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found in PATH: skipping the imaplib interoperability test")
	}
	e := newEnv(t, nil)
	msgs := [][]byte{pecMessage("uno"), pecMessage("due"), pecMessage("tre")}
	for _, m := range msgs {
		e.deliver(t, mario, m)
	}
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonScript), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script)
	_, port, _ := strings.Cut(e.addr, ":")
	cmd.Env = append(os.Environ(), "CA="+e.pki.caFile, "PORT="+port, "IMAP_USER="+mario, "IMAP_PASS="+marioPW)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := runWithTimeout(cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("python: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	lines := map[string]string{}
	var log []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, " ")
		lines[k] = v
		if k != "BODY" {
			log = append(log, l)
		}
	}
	t.Logf("python said:\n%s", strings.Join(log, "\n"))
	want := map[string]string{
		"WRONG":   "refused",
		"LOGIN":   "OK",
		"SELECT":  "OK 3",
		"UNSEEN":  "1 2 3",
		"SUBJECT": "2",
		"SEEN":    "1",
		"STORE":   `OK 2 (UID 2 FLAGS (\Flagged))`,
		"FLAGGED": "2",
		"EXPUNGE": "OK [b'3']",
		"DONE":    "",
		"LIST":    `OK () "/" INBOX`,
		"FETCH":   "OK 1 (UID 1 FLAGS (\\Seen) RFC822.SIZE " + strconv.Itoa(len(msgs[0])) + " RFC822 {" + strconv.Itoa(len(msgs[0])) + "}",
		"BODY":    hex.EncodeToString(msgs[0]),
		"APPEND":  "",
	}
	for k, v := range want {
		got, ok := lines[k]
		if !ok {
			t.Errorf("python printed no %s line", k)
			continue
		}
		switch k {
		case "LIST":
			if !strings.Contains(got, "INBOX") || !strings.HasPrefix(got, "OK") {
				t.Errorf("%s = %q", k, got)
			}
		case "APPEND":
			if !strings.Contains(got, "APPENDUID") {
				t.Errorf("%s = %q, want an APPENDUID", k, got)
			}
		case "STORE":
			if !strings.HasPrefix(got, "OK 2 (") || !strings.Contains(got, `\Flagged`) {
				t.Errorf("%s = %q", k, got)
			}
		default:
			if got != v {
				t.Errorf("%s = %q, want %q", k, clipTest(got), clipTest(v))
			}
		}
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found in PATH: skipping the curl interoperability test")
	}
	e := newEnv(t, nil)
	m := pecMessage("per curl")
	e.deliver(t, mario, m)
	url := "imap://" + e.addr + "/INBOX;UID=1"
	cmd := exec.Command(curl, "-s", "--ssl-reqd", "--cacert", e.pki.caFile, url, "-u", mario+":"+marioPW)
	out, err := runWithTimeout(cmd, 30*time.Second)
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	if !bytes.Equal(out, m) {
		t.Fatalf("curl got %d bytes, want the %d delivered:\n%q", len(out), len(m), out)
	}
	// Wrong password: curl fails (67, login denied).
	cmd = exec.Command(curl, "-s", "--ssl-reqd", "--cacert", e.pki.caFile, url, "-u", mario+":wrong-password")
	if _, err := runWithTimeout(cmd, 30*time.Second); err == nil {
		t.Fatal("curl with a wrong password succeeded")
	}
}

func runWithTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return out.Bytes(), os.ErrDeadlineExceeded
	}
}

func clipTest(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
