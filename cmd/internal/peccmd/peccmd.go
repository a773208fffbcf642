// Package peccmd holds the commands of custode that read PEC messages and
// the indice dei gestori: pec inspect, igpec write and igpec show.
package peccmd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
)

// systemRootsFile is Debian's bundle of trusted roots, which holds the
// roots of the gestori's certificates.
const systemRootsFile = "/etc/ssl/certs/ca-certificates.crt"

// RunInspect runs custode pec inspect: classify a PEC message, show its
// daticert and check its signature.
func RunInspect(ctx context.Context, e *cli.Env, args []string) error {
	var data, at, roots, index string
	var asJSON bool
	fs := cli.Flags(e, "pec inspect", &data)
	fs.StringVar(&at, "at", "now", `when to check the certificates: "now", "signing-time", or an RFC 3339 time`)
	fs.StringVar(&roots, "roots", "", "PEM file of trusted roots (default: "+systemRootsFile+" plus the data directory's CA, if any)")
	fs.StringVar(&index, "igpec", "", "LDIF of the indice dei gestori the signer must be listed in")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprintln(e.Stderr, "usage: custode pec inspect [flags] FILE.eml")
		fmt.Fprintln(e.Stderr, "exit status: 0 valid, 1 invalid (broken signature) or error, 2 bad invocation,")
		fmt.Fprintln(e.Stderr, "3 untrusted (intact signature, certificate not trusted: chain, validity, indice), 4 unsigned")
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &cli.UsageError{Msg: "want one message file"}
	}
	opts := pec.InspectOptions{AllowSHA1Certificates: true}
	switch at {
	case "now":
		opts.At = time.Now()
	case "signing-time":
		opts.AtSigningTime = true
	default:
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return &cli.UsageError{Msg: fmt.Sprintf(`-at: want "now", "signing-time" or an RFC 3339 time, got %q`, at)}
		}
		opts.At = t
	}
	var err error
	if opts.Roots, err = inspectRoots(ctx, e, roots, data); err != nil {
		return err
	}
	if index != "" {
		if opts.Index, err = cli.ReadIndex(ctx, e, index); err != nil {
			return err
		}
	}
	msg, err := cli.ReadInput(ctx, e, fs.Arg(0), cli.InputMessage)
	if err != nil {
		return err
	}
	r, err := pec.Inspect(msg, opts)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.WriteText(e.Stdout)
	}
	if err != nil {
		return err
	}
	if code := r.ExitCode(); code != 0 {
		return &cli.StatusError{Code: code, Msg: fmt.Sprintf("signature %s", r.Signature.Verdict)}
	}
	return nil
}

func inspectRoots(ctx context.Context, e *cli.Env, file, data string) ([]*x509.Certificate, error) {
	if file != "" {
		return cli.ReadCertificates(ctx, e, file, cli.InputRoots)
	}
	certs, err := cli.ReadCertificates(ctx, e, systemRootsFile, cli.InputRoots)
	if err != nil {
		return nil, fmt.Errorf("no -roots given and the system roots are unreadable: %w", err)
	}
	if c, err := config.Load(data); err == nil {
		if dev, err := cli.ReadCertificates(ctx, e, c.Path(c.CACert), cli.InputCertificates); err == nil {
			certs = append(certs, dev...)
		}
	}
	return certs, nil
}

// RunIGPECWrite runs custode igpec write: write the indice dei gestori
// (LDIF) record of our own gestore.
func RunIGPECWrite(ctx context.Context, e *cli.Env, args []string) error {
	var data, receipt, url string
	fs := cli.Flags(e, "igpec write", &data)
	fs.StringVar(&receipt, "mail-receipt", "", "the service mailbox for ricevute (default posta-certificata@<domain>)")
	fs.StringVar(&url, "ldif-url", "", "where the gestore publishes its record")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	certs, err := pki.LoadCertificates(c.Path(c.GestoreCert))
	if err != nil {
		return err
	}
	if receipt == "" {
		receipt = "posta-certificata@" + c.Domain
	}
	p := &igpec.Provider{Name: c.Gestore, MailReceipt: receipt, ManagedDomains: []string{c.Domain}, LDIFLocationURL: url}
	p.AddCertificate(certs[0].Raw)
	return igpec.WriteLDIF(e.Stdout, p)
}

// RunIGPECShow runs custode igpec show: read an indice dei gestori LDIF
// file and list its gestori.
func RunIGPECShow(ctx context.Context, e *cli.Env, args []string) error {
	fs := cli.Flags(e, "igpec show", nil)
	if err := cli.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &cli.UsageError{Msg: "want one LDIF file"}
	}
	ix, err := cli.ReadIndex(ctx, e, fs.Arg(0))
	if err != nil {
		return err
	}
	for _, p := range ix.Providers() {
		fmt.Fprintf(e.Stdout, "%s\n  mailReceipt: %s\n  managedDomains: %v\n  certificates (SHA-1): %v\n",
			p.Name, p.MailReceipt, p.ManagedDomains, p.CertificateHashes)
	}
	return nil
}
