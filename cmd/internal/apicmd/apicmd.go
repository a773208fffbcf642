// Package apicmd holds custode api token, which makes a bearer token for a
// user of the HTTP API.
package apicmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger/durable"
)

// RunToken makes a bearer token for an operator, auditor or legal user,
// records its SHA-256 in the token file and prints the token, once.
func RunToken(ctx context.Context, e *cli.Env, args []string) error {
	var data, user string
	fs := cli.Flags(e, "api token", &data)
	fs.StringVar(&user, "user", "", "the user the token authenticates, as the policy's roles name them (required)")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if user == "" {
		return &cli.UsageError{Msg: "-user is required"}
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	token, err := httpapi.NewToken()
	if err != nil {
		return err
	}
	line := httpapi.TokenLine(user, token)
	// Check the line as the server will read it (the user name's syntax).
	if _, err := httpapi.ParseTokens(bytes.NewReader([]byte(line + "\n"))); err != nil {
		return &cli.UsageError{Msg: err.Error()}
	}
	path := c.Path(c.EffectiveAPI().Tokens)
	old, err := cli.ReadInput(ctx, e, path, cli.InputTokens)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	if err := durable.WriteFile(path, append(old, line+"\n"...), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, token)
	fmt.Fprintf(e.Stderr, "token for %s added to %s (only its SHA-256 is kept; a running custode serve uses it at once)\n", user, path)
	return nil
}
