// Package mailboxcmd holds the commands of custode that keep mailboxes and
// domains: mailbox add, list, passwd and quota, domain add and list.
package mailboxcmd

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/input"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailaddr"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/policies"
)

// readPassword reads the password from the first line of stdin, so that it
// never appears in a process listing or a shell history.
func readPassword(ctx context.Context, e *cli.Env) (string, error) {
	line, err := bufio.NewReader(input.NewReader(ctx, e.Stdin, "standard input", cli.InputPassword)).ReadString('\n')
	var tl *input.TooLargeError
	if errors.As(err, &tl) {
		return "", &cli.UsageError{Msg: err.Error()}
	}
	if err != nil && line == "" {
		return "", &cli.UsageError{Msg: "give the password on the first line of standard input"}
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return "", &cli.UsageError{Msg: "the password must have at least 8 characters"}
	}
	return pw, nil
}

// parseSize reads a size as policy files write it (policies.ParseSize),
// as a usage error.
func parseSize(s string) (int64, error) {
	n, err := policies.ParseSize(s)
	if err != nil {
		return 0, &cli.UsageError{Msg: err.Error()}
	}
	return n, nil
}

func mailboxCommand(ctx context.Context, e *cli.Env, name string, args []string, positional int, extra func(*flag.FlagSet)) (*config.Config, *mailstore.Store, []string, error) {
	var data string
	fs := cli.Flags(e, name, &data)
	if extra != nil {
		extra(fs)
	}
	if err := cli.Parse(fs, args, positional); err != nil {
		return nil, nil, nil, err
	}
	if fs.NArg() != positional {
		return nil, nil, nil, &cli.UsageError{Msg: fmt.Sprintf("want %d argument(s)", positional)}
	}
	c, err := config.Load(data)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := c.OpenMailboxes(ctx, e, time.Now, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w (is custode serve running on this data directory?)", err)
	}
	return c, st, fs.Args(), nil
}

// RunAdd runs custode mailbox add: create a mailbox (titolare) with a
// password read from stdin.
func RunAdd(ctx context.Context, e *cli.Env, args []string) error {
	var quota string
	c, st, pos, err := mailboxCommand(ctx, e, "mailbox add", args, 1, func(f *flag.FlagSet) {
		f.StringVar(&quota, "quota", "1G", "quota in bytes (K, M, G suffixes; 0 means none)")
	})
	if err != nil {
		return err
	}
	defer cli.CloseMailboxes(e, st)
	address, err := cli.MailboxArg(pos[0])
	if err != nil {
		return err
	}
	if !slices.Contains(normalized(c.Domains()), domainOfAddress(address)) {
		return &cli.UsageError{Msg: fmt.Sprintf("%s is not in one of this gestore's domains %v (custode domain add)", address, c.Domains())}
	}
	q, err := parseSize(quota)
	if err != nil {
		return err
	}
	pw, err := readPassword(ctx, e)
	if err != nil {
		return err
	}
	if err := st.AddMailbox(ctx, address, pw, q); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "mailbox %s created, quota %d bytes\n", address, q)
	return nil
}

// RunList runs custode mailbox list: list mailboxes with their quota and use.
func RunList(ctx context.Context, e *cli.Env, args []string) error {
	_, st, _, err := mailboxCommand(ctx, e, "mailbox list", args, 0, nil)
	if err != nil {
		return err
	}
	defer cli.CloseMailboxes(e, st)
	list, err := st.Mailboxes(ctx)
	if err != nil {
		return err
	}
	for _, m := range list {
		fmt.Fprintf(e.Stdout, "%s\tmessages=%d\tused=%d\tquota=%d", m.Address, m.Messages, m.Used, m.Quota)
		if !mailaddr.IsCanonical(m.Address) {
			// Made before addresses had one canonical form: no login,
			// lookup or delivery reaches it any more.
			fmt.Fprintf(e.Stdout, "\tunreachable: %+q is not a canonical address", m.Address)
		}
		fmt.Fprintln(e.Stdout)
	}
	return nil
}

// RunPasswd runs custode mailbox passwd: set a mailbox's password, read
// from stdin.
func RunPasswd(ctx context.Context, e *cli.Env, args []string) error {
	_, st, pos, err := mailboxCommand(ctx, e, "mailbox passwd", args, 1, nil)
	if err != nil {
		return err
	}
	defer cli.CloseMailboxes(e, st)
	pw, err := readPassword(ctx, e)
	if err != nil {
		return err
	}
	address, err := cli.MailboxArg(pos[0])
	if err != nil {
		return err
	}
	if err := st.SetPassword(ctx, address, pw); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "password of %s changed\n", address)
	return nil
}

// RunQuota runs custode mailbox quota: set a mailbox's quota.
func RunQuota(ctx context.Context, e *cli.Env, args []string) error {
	_, st, pos, err := mailboxCommand(ctx, e, "mailbox quota", args, 2, nil)
	if err != nil {
		return err
	}
	defer cli.CloseMailboxes(e, st)
	q, err := parseSize(pos[1])
	if err != nil {
		return err
	}
	address, err := cli.MailboxArg(pos[0])
	if err != nil {
		return err
	}
	if err := st.SetQuota(ctx, address, q); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "quota of %s set to %d bytes\n", address, q)
	return nil
}

// RunDomainAdd runs custode domain add: add a PEC domain whose mailboxes
// this gestore keeps.
func RunDomainAdd(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	fs := cli.Flags(e, "domain add", &data)
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &cli.UsageError{Msg: "want one domain"}
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	d := igpec.NormalizeDomain(fs.Arg(0))
	if d == "" || strings.ContainsAny(d, " @/") || !strings.Contains(d, ".") {
		return &cli.UsageError{Msg: fmt.Sprintf("bad domain %q", fs.Arg(0))}
	}
	if c.Server == nil {
		c.Server = config.DefaultServerConfig()
	}
	domains := normalized(c.Domains())
	if slices.Contains(domains, d) {
		return &cli.UsageError{Msg: fmt.Sprintf("%s is already a domain of this gestore", d)}
	}
	c.Server.Domains = append(domains, d)
	if err := c.Save(); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "domain %s added; publish it in the indice dei gestori (custode igpec write) and restart custode serve\n", d)
	return nil
}

// RunDomainList runs custode domain list: list the gestore's PEC domains.
func RunDomainList(ctx context.Context, e *cli.Env, args []string) error {
	var data string
	fs := cli.Flags(e, "domain list", &data)
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	for _, d := range normalized(c.Domains()) {
		fmt.Fprintln(e.Stdout, d)
	}
	return nil
}

func normalized(domains []string) []string {
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		out = append(out, igpec.NormalizeDomain(d))
	}
	return out
}

func domainOfAddress(a string) string {
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return ""
	}
	return igpec.NormalizeDomain(a[i+1:])
}
