package ledger

import (
	"context"
	"testing"
)

func TestVerifyProgress(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	appendN(t, l, 0, 2500)
	tests := []struct {
		name       string
		from, to   uint64
		wantCalls  int
		wantDone   uint64
		wantTotals uint64
	}{
		{"all", 0, 0, 3, 2500, 2500}, // 1024, 2048, 2500
		{"a range", 100, 200, 1, 100, 100},
		{"counted from From", 1000, 1100, 1, 100, 100}, // done is seq+1-From
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls [][2]uint64
			r, err := l.Verify(context.Background(), VerifyOptions{From: tt.from, To: tt.to,
				Progress: func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) }})
			if err != nil || !r.OK() {
				t.Fatalf("verify: %v %v", err, r.Problems)
			}
			if len(calls) == 0 {
				t.Fatal("Progress never called")
			}
			if len(calls) != tt.wantCalls {
				t.Errorf("%d calls, want %d: %v", len(calls), tt.wantCalls, calls)
			}
			last := calls[len(calls)-1]
			if last != [2]uint64{tt.wantDone, tt.wantTotals} {
				t.Errorf("last call %v, want [%d %d]; all %v", last, tt.wantDone, tt.wantTotals, calls)
			}
			for i := 1; i < len(calls); i++ {
				if calls[i][0] <= calls[i-1][0] {
					t.Errorf("not increasing: %v", calls)
				}
			}
		})
	}
}
