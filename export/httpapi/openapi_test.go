package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOpenAPI: the document is JSON, OpenAPI 3, and lists exactly the
// routes the server serves, each with the methods it serves; every listed
// route is answered by its handler, not by the mux's 404.
func TestOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var documented []route
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented = append(documented, route{strings.ToUpper(method), path})
			}
		}
	}
	// A server without a ledger: unauthenticated requests never reach it.
	srv := &Server{now: time.Now, log: slog.New(slog.DiscardHandler), byUser: newLimiter(DefaultPerPrincipal), byRemote: newLimiter(DefaultPerRemote)}
	srv.buildHandler()
	served := slices.Clone(srv.routePaths)
	cmp := func(a, b route) int { return strings.Compare(a.method+" "+a.path, b.method+" "+b.path) }
	slices.SortFunc(documented, cmp)
	slices.SortFunc(served, cmp)
	if !slices.Equal(documented, served) {
		t.Errorf("documented routes:\n%v\nserved routes:\n%v", documented, served)
	}
	for _, r := range documented {
		path := strings.ReplaceAll(r.path, "{seq}", "0")
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest(r.method, path, nil))
		if want := http.StatusUnauthorized; r.path == "/openapi.json" {
			if w.Code != http.StatusOK || !json.Valid(w.Body.Bytes()) {
				t.Errorf("%s %s: status %d", r.method, path, w.Code)
			}
		} else if w.Code != want || w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: status %d, want %d from the handler", r.method, path, w.Code, want)
		}
	}
}
