package tsa

import (
	"context"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// mangler answers RFC 3161 requests with a's key but lets the test change
// what is signed, to play a TSA that lies.
func mangler(t *testing.T, a *Authority, edit func(hashed []byte, nonce *big.Int) ([]byte, *big.Int)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("mangler: reading request: %v", err)
			return
		}
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			t.Errorf("mangler: parsing request: %v", err)
			return
		}
		hashed, nonce := edit(req.HashedMessage, req.Nonce)
		resp, err := a.respond(req.HashAlgorithm, hashed, nonce, req.Certificates)
		if err != nil {
			t.Errorf("mangler: signing: %v", err)
			return
		}
		w.Header().Set("Content-Type", ContentTypeReply)
		_, _ = w.Write(resp)
	}
}

func TestClientFailures(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	other := newPKI(t, pkiOptions{})

	reply := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ContentTypeReply)
			_, _ = w.Write(body)
		}
	}
	rejected, err := timestamp.CreateErrorResponse(timestamp.Rejection, timestamp.BadRequest)
	if err != nil {
		t.Fatal(err)
	}
	// hang reads the request, so that the server notices the client
	// going away, and then answers nothing until it does (or, as a bound
	// for a broken test, ten seconds pass).
	hang := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	stall := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentTypeReply)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte{0x30})
		w.(http.Flusher).Flush()
		hang(w, r)
	}

	tests := []struct {
		name     string
		handler  http.Handler
		client   Client // URL and HTTPClient are filled in
		deadline time.Duration
		want     string
		wantIs   error
	}{
		{"garbage", reply([]byte("this is not DER")), Client{}, 0, "the response is not a TimeStampResp", nil},
		{"HTTP 500", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}), Client{}, 0, `HTTP 500 Internal Server Error: "boom"`, nil},
		{"HTTP 404 empty", http.NotFoundHandler(), Client{}, 0, "HTTP 404 Not Found", nil},
		{"HTML instead of a reply", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>hello</html>")
		}), Client{}, 0, `content type "text/html"`, nil},
		{"rejection", reply(rejected), Client{}, 0, "the TSA did not grant the request", nil},
		{"rejection by an Authority", a, Client{Policy: asn1.ObjectIdentifier{1, 2, 3}}, 0, "the TSA did not grant the request", nil},
		{"oversized", reply(make([]byte, MaxTokenSize+10)), Client{}, 0, "larger than 1048576 bytes", nil},
		{"trailing data", reply(append(rejected, 0)), Client{}, 0, "trailing data", nil},
		{"never answers, context deadline", http.HandlerFunc(hang), Client{}, 300 * time.Millisecond, "deadline exceeded", context.DeadlineExceeded},
		{"never answers, client timeout", http.HandlerFunc(hang), Client{Timeout: 300 * time.Millisecond}, 0, "deadline exceeded", context.DeadlineExceeded},
		{"stalls mid-body", http.HandlerFunc(stall), Client{}, 300 * time.Millisecond, "deadline exceeded", context.DeadlineExceeded},
		{"token for other data", mangler(t, a, func(_ []byte, n *big.Int) ([]byte, *big.Int) {
			return sum("qualcos'altro"), n
		}), Client{}, 0, "message imprint does not match the data", nil},
		{"replayed nonce", mangler(t, a, func(h []byte, _ *big.Int) ([]byte, *big.Int) {
			return h, big.NewInt(1)
		}), Client{}, 0, "nonce is not the one sent", nil},
		{"no nonce", mangler(t, a, func(h []byte, _ *big.Int) ([]byte, *big.Int) {
			return h, nil
		}), Client{}, 0, "the token has no nonce", nil},
		{"policy not honoured", mangler(t, a, func(h []byte, n *big.Int) ([]byte, *big.Int) {
			return h, n
		}), Client{Policy: asn1.ObjectIdentifier{1, 2, 3}}, 0, "not the 1.2.3 requested", nil},
		{"untrusted TSA", a, Client{Roots: other.roots}, 0, "does not chain to a trusted root", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := tt.client
			c.URL = srv.URL
			c.HTTPClient = srv.Client()
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			tok, err := c.Timestamp(ctx, sum("dati"))
			if err == nil {
				t.Fatalf("Timestamp returned a %d-byte token, want an error containing %q", len(tok), tt.want)
			}
			t.Log(err)
			if prefix := "tsa: request to " + srv.URL + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q lacks the prefix %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestClientWithoutRoots(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	srv := httptest.NewServer(p.authority(t, nil))
	defer srv.Close()
	c := &Client{URL: srv.URL, HTTPClient: srv.Client()}
	tok := stamp(t, c, sum("senza radici"))
	if _, err := Verify(tok, sum("senza radici"), VerifyOptions{Roots: p.roots}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := &Client{URL: url, Timeout: 5 * time.Second}
	_, err := c.Timestamp(context.Background(), sum("x"))
	if err == nil || !strings.HasPrefix(err.Error(), "tsa: request to "+url+": ") {
		t.Fatalf("Timestamp error = %v, want a connection error with the URL prefix", err)
	}
	t.Log(err)
}
