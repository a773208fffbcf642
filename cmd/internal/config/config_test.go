package config

import (
	"flag"
	"testing"
)

func TestTSAListenAddr(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config *string
		args   []string
		want   string
	}{
		{"neither", nil, nil, DefaultTSAListen},
		{"config", new("127.0.0.1:9000"), nil, "127.0.0.1:9000"},
		{"config off", new(""), nil, ""},
		{"flag wins", new("127.0.0.1:9000"), []string{"-tsa-listen", "127.0.0.1:9001"}, "127.0.0.1:9001"},
		{"flag off wins", new("127.0.0.1:9000"), []string{"-tsa-listen", ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			v := fs.String("tsa-listen", DefaultTSAListen, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c := &Config{TSAListen: tc.config}
			if got := c.TSAListenAddr(fs, *v); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
