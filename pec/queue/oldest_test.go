package queue

import (
	"testing"
	"time"
)

func TestOldest(t *testing.T) {
	c := newClock()
	q := openTest(t, t.TempDir(), Options{Now: c.Now})
	if _, ok := q.Oldest(); ok {
		t.Fatal("an empty queue has an oldest item")
	}
	first := c.Now()
	if err := q.Enqueue(t.Context(), item("a", "mx.b.test", 10)); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := q.Enqueue(t.Context(), item("b", "mx.b.test", 10)); err != nil {
		t.Fatal(err)
	}
	if got, ok := q.Oldest(); !ok || !got.Equal(first) {
		t.Fatalf("Oldest() = %v, %v; want %v", got, ok, first)
	}
	if err := q.Remove(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if got, ok := q.Oldest(); !ok || !got.Equal(first.Add(time.Minute)) {
		t.Fatalf("after removing the oldest: %v, %v; want %v", got, ok, first.Add(time.Minute))
	}
}
