package imapserver_test

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net"

	"github.com/custode/custode/pec/imapserver"
	"github.com/custode/custode/pec/mailstore"
)

func Example() {
	ctx := context.Background()
	store, err := mailstore.Open(ctx, mailstore.Options{Dir: "/var/lib/custode/mail"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	cert, err := tls.LoadX509KeyPair("imap.pem", "imap.key")
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv, err := imapserver.New(imapserver.Options{
		Store:     store,
		TLSConfig: cfg,
		Logger:    slog.Default(),
		Greeting:  "pec.example.it IMAP ready",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// Port 993, implicit TLS.
	ln993, err := net.Listen("tcp", ":993")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln993, cfg))

	// Port 143, STARTTLS.
	ln143, err := net.Listen("tcp", ":143")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Serve(ln143); err != nil {
		log.Fatal(err)
	}
}
