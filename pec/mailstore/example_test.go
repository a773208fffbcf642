package mailstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/custode/custode/pec/mailstore"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mailstore")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := mailstore.Open(ctx, mailstore.Options{Dir: dir, PasswordIterations: 1000})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.AddMailbox(ctx, "Mario.Rossi@pec.example.it", "una password lunga", 30<<20); err != nil {
		log.Fatal(err)
	}
	msg := []byte("Subject: POSTA CERTIFICATA: prova\r\n\r\nciao\r\n")
	d := mailstore.Delivery{Address: "mario.rossi@pec.example.it", Message: msg, Key: "opec.1@pec.example.it"}
	first, err := s.Deliver(ctx, d)
	if err != nil {
		log.Fatal(err)
	}
	again, err := s.Deliver(ctx, d) // a retry by the gestore stores nothing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.UID, again.UID, again.Duplicate)

	info, err := s.Mailbox(ctx, "mario.rossi@pec.example.it")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.Messages, info.Used)

	err = s.Authenticate(ctx, "mario.rossi@pec.example.it", "sbagliata", "192.0.2.7")
	fmt.Println(errors.Is(err, mailstore.ErrAuthFailed))
	// Output:
	// 1 1 true
	// 1 43
	// true
}
