package config

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c, err := Init(dir, "Custode Dev PEC", "pec.custode.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		b, _ := json.MarshalIndent(m, "", "  ")
		return string(b)
	}
	server := func(m map[string]any) map[string]any { return m["server"].(map[string]any) }
	for _, tc := range []struct {
		name, json string
		want       []string // substrings of the problems; none: valid
		warn       string
	}{
		{"init's", string(good), nil, "cod_gest_pec is empty"},
		{"with a code", edit(func(m map[string]any) { m["cod_gest_pec"] = "G01" }), nil, ""},
		{"syntax", "{\n  \"gestore\": \"x\",\n  \"domain\" \"y\"\n}", []string{"line 3, column 12: invalid character"}, ""},
		{"type", "{\n  \"checkpoint_every\": \"ten\"\n}", []string{"line 2", "checkpoint_every: want a JSON number, got string"}, ""},
		{"unknown field", edit(func(m map[string]any) { m["metrics_listen"] = "127.0.0.1:1" }), []string{`unknown field "metrics_listen"`}, ""},
		{"empty", "", []string{"empty file"}, ""},
		{"required", edit(func(m map[string]any) { delete(m, "gestore"); m["origin"] = " " }), []string{"gestore: required", "origin: required"}, ""},
		{"missing file", edit(func(m map[string]any) { m["gestore_key"] = "pki/none.key" }), []string{"gestore_key: stat " + filepath.Join(dir, "pki", "none.key")}, ""},
		{"bad listener", edit(func(m map[string]any) { server(m)["imap"] = "127.0.0.1" }), []string{`imap listener: want host:port, got "127.0.0.1"`}, ""},
		{"bad port", edit(func(m map[string]any) { m["metrics"] = map[string]any{"listen": "127.0.0.1:99999"} }), []string{"metrics listener: want a port from 0 to 65535"}, ""},
		{"clash", edit(func(m map[string]any) { m["tsa_listen"] = "127.0.0.1:8443" }), []string{"api listener: 127.0.0.1:8443 is tsa's too"}, ""},
		{"port 0 twice", edit(func(m map[string]any) { m["tsa_listen"] = "127.0.0.1:0"; server(m)["imap"] = "127.0.0.1:0" }), nil, "cod_gest_pec"},
		{"interval", edit(func(m map[string]any) { m["checkpoint_interval"] = "10" }), []string{"checkpoint_interval: want a positive duration"}, ""},
		{"clamd", edit(func(m map[string]any) { server(m)["clamd"] = "/run/clamd.sock" }), []string{"server.clamd: want"}, ""},
		{"non_pec", edit(func(m map[string]any) { server(m)["non_pec"] = "drop" }), []string{`server.non_pec: want anomalia, reject or folder, got "drop"`}, ""},
		{"admin dir", edit(func(m map[string]any) { m["admin_socket"] = "/nonexistent/admin.sock" }), []string{"admin: the directory of /nonexistent/admin.sock does not exist"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems, warnings := Check([]byte(tc.json), dir)
			got := strings.Join(problems, "\n")
			if len(tc.want) == 0 && len(problems) > 0 {
				t.Errorf("problems in a valid configuration:\n%s", got)
			}
			if len(tc.want) > 0 && len(problems) == 0 {
				t.Errorf("no problem found, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems\n%s\nlack %q", got, w)
				}
			}
			if tc.warn != "" && !strings.Contains(strings.Join(warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q lack %q", warnings, tc.warn)
			}
		})
	}
}
