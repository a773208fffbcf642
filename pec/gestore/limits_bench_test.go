package gestore

import (
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lines is a reader of size bytes of 76-character lines.
type lines struct{ left int }

func (l *lines) Read(p []byte) (int, error) {
	if l.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), l.left)
	for i := range n {
		if (l.left-i)%78 == 0 {
			p[i] = '\r'
		} else if (l.left-i)%78 == 77 {
			p[i] = '\n'
		} else {
			p[i] = 'Q'
		}
	}
	l.left -= n
	return n, nil
}

// BenchmarkConcurrentLargeData sends 16 concurrent anonymous messages of
// 29 MB (8 of 4 MB with -short) to the punto di ricezione and reports the
// growth of the live heap at its peak while they are received and
// processed, and the
// bytes allocated: "unbounded" keeps every message in memory and
// processes all at once, as the server did before spooling and the memory
// budget; "limits" is the defaults.
func BenchmarkConcurrentLargeData(b *testing.B) {
	n, size := 16, 29<<20
	if testing.Short() {
		n, size = 8, 4<<20
	}
	for _, bc := range []struct {
		name   string
		limits func(*Options)
	}{
		{"unbounded", func(o *Options) {
			o.SpoolThreshold, o.MaxDataMemory = 1<<40, 1<<40
			o.MaxSize = 64 << 20
		}},
		{"limits", func(o *Options) { o.MaxSize = 64 << 20 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPair(b, startOptions{limits: bc.limits})
			for range b.N {
				peak, total := measure(func() {
					var wg sync.WaitGroup
					for i := range n {
						wg.Add(1)
						go func() {
							defer wg.Done()
							hdr := fmt.Sprintf("From: x%d@example.org\r\nTo: anna@%s\r\nSubject: large %d\r\n\r\n", i, p.b.domain, i)
							c, err := smtp.Dial(p.b.ricezione) // plain: TLS costs the same either way
							if err != nil {
								b.Error(err)
								return
							}
							defer c.Close()
							err = c.SendMail("x@example.org", []string{"anna@" + p.b.domain},
								io.MultiReader(strings.NewReader(hdr), &lines{left: size}))
							if err != nil {
								b.Error(err)
							}
						}()
					}
					wg.Wait()
				})
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-growth-MiB")
				b.ReportMetric(float64(total)/(1<<20), "alloc-MiB")
			}
		})
	}
}

// measure runs f and returns the peak of the live heap above what it was
// before, sampled every millisecond, and the bytes allocated.
func measure(f func()) (peak, allocated uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var max uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > max {
				max = v
			}
			select {
			case <-stop:
				done <- max
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	peak = <-done
	runtime.ReadMemStats(&after)
	return peak - min(peak, base), after.TotalAlloc - before.TotalAlloc
}
