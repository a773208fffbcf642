package queue_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/custode/custode/pec/queue"
)

func Example() {
	dir, err := os.MkdirTemp("", "queue-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Options{Dir: dir, Poll: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	// Durable when Enqueue returns: only then answer 250.
	err = q.Enqueue(ctx, queue.Item{
		ID:          "opec.20261123.1@pec.a.example/b.example",
		Destination: "b.example",
		From:        "posta-certificata@pec.a.example",
		To:          []string{"mario.rossi@pec.b.example"},
		Message:     []byte("Subject: POSTA CERTIFICATA: prova\r\n\r\n..."),
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx, func(ctx context.Context, it queue.Item) error {
			fmt.Printf("delivering %s to %v (%d bytes)\n", it.ID, it.To, len(it.Message))
			cancel()
			return nil // or an error to retry, or &queue.PermanentError{...}
		})
	}()
	<-done
	fmt.Println("left:", q.Len())
	// Output:
	// delivering opec.20261123.1@pec.a.example/b.example to [mario.rossi@pec.b.example] (40 bytes)
	// left: 0
}
