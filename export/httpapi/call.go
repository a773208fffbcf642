package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/retention"
)

// Outcomes recorded in the ledger for a request.
const (
	outcomeAllowed  = "allowed"   // answered with what was asked
	outcomeDenied   = "denied"    // 403, or a 404 that hides it: the principal may not see it
	outcomeInvalid  = "invalid"   // 400: the request was malformed
	outcomeNotFound = "not_found" // 404: nothing of that name
	outcomeFailed   = "failed"    // allowed, but the answer could not be made
)

// call is one authenticated request being answered.
type call struct {
	s        *Server
	r        *http.Request
	p        *principal
	kind     ledger.Kind // KindQuery or KindExport
	remote   string
	params   url.Values // validated: only known names, once each
	reason   string
	ident    string            // the identificativo the event is about, if one
	details  map[string]string // further details to record
	recorded bool              // an event of this call is in the ledger
	failed   bool              // recording failed: answer 503, nothing else

	holds       []retention.Hold // a legal user's active holds, loaded once
	holdsLoaded bool
}

// reply is an answer, made by a handler and written once the request is
// recorded.
type reply struct {
	status      int
	code        string // for errors
	msg         string // for errors: what the client is told
	json        any    // a JSON body, or
	body        []byte // a body of contentType
	contentType string
	filename    string
	retryAfter  int
	// denied records the call as denied although the client is told 404:
	// see hidden.
	denied bool
}

func fail(status int, code, msg string) *reply { return &reply{status: status, code: code, msg: msg} }

func badRequest(format string, a ...any) *reply {
	return fail(http.StatusBadRequest, "bad_request", fmt.Sprintf(format, a...))
}

func forbidden(msg string) *reply { return fail(http.StatusForbidden, "forbidden", msg) }

func notFound(msg string) *reply { return fail(http.StatusNotFound, "not_found", msg) }

// hidden answers a request for something that exists but the principal
// may not see exactly as notFound(msg) answers one for something that does
// not exist (same status, same body), so that no one learns whether
// another titolare's entry or identificativo exists. The ledger still
// records the call as denied.
func hidden(msg string) *reply {
	r := notFound(msg)
	r.denied = true
	return r
}

func internal() *reply { return fail(http.StatusInternalServerError, "internal", "internal error") }

func unavailable(msg string) *reply {
	return &reply{status: http.StatusServiceUnavailable, code: "unavailable", msg: msg, retryAfter: 10}
}

func outcomeOf(status int) string {
	switch {
	case status < 300:
		return outcomeAllowed
	case status == http.StatusForbidden:
		return outcomeDenied
	case status == http.StatusNotFound:
		return outcomeNotFound
	case status < 500:
		return outcomeInvalid
	}
	return outcomeFailed
}

// endpoint wraps a handler: authentication, the per-user rate limit, the
// query string's syntax and the reason, then the handler, then the record
// in the ledger, then the answer. Whatever the handler decides, the
// request is in the ledger before a byte of the answer is sent; if it
// cannot be recorded, the answer is 503 and nothing else.
func (s *Server) endpoint(kind ledger.Kind, names []string, h func(context.Context, *call) *reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		remote := remoteIP(r)
		p, err := s.authenticate(r, remote)
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				ae = &authError{http.StatusUnauthorized, "bad credentials", 0, false}
			}
			if !ae.recorded && s.mailboxes != nil {
				s.mailboxes.RecordFailedLogin(mailstore.ServiceAPI, "", remote, false)
			}
			s.log.Warn("httpapi: authentication failed", "remote", remote, "path", clip(r.URL.Path, 256), "status", ae.status, "why", ae.msg)
			switch ae.status {
			case http.StatusUnauthorized:
				challenge(w)
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", strconv.Itoa(max(1, ae.retry)))
			}
			writeError(w, ae.status, "unauthorized", ae.msg)
			return
		}
		if p == nil {
			challenge(w)
			writeError(w, http.StatusUnauthorized, "unauthorized", "credentials required: HTTP Basic (titolari), a bearer token or a client certificate")
			return
		}
		if ok, wait := s.byUser.allow(p.actor(), s.now()); !ok {
			s.log.Warn("httpapi: rate limited", "actor", p.actor(), "remote", remote)
			tooMany(w, wait)
			return
		}
		c := &call{s: s, r: r, p: p, kind: kind, remote: remote, details: map[string]string{}}
		rep := c.parse(names)
		if rep == nil && p.role == roleNone {
			rep = forbidden("no role of the policy is given to " + p.name)
		}
		if rep == nil {
			rep = h(r.Context(), c)
		}
		if !c.recorded && !c.failed {
			if rep.status >= 400 && rep.msg != "" {
				c.details["error"] = clip(rep.msg, 512)
			}
			outcome := outcomeOf(rep.status)
			if rep.denied {
				outcome = outcomeDenied
			}
			if err := c.record(r.Context(), outcome); err != nil {
				rep = unavailable("the request could not be recorded: try again later")
			}
		}
		if c.failed {
			rep = unavailable("the request could not be recorded: try again later")
		}
		c.write(w, rep)
	}
}

func challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Basic realm="custode", charset="UTF-8"`)
	w.Header().Add("WWW-Authenticate", `Bearer realm="custode"`)
}

// parse checks the query string: its size, its syntax, that it names only
// known parameters, each once, in UTF-8; and the reason.
func (c *call) parse(names []string) *reply {
	raw := c.r.URL.RawQuery
	if len(raw) > MaxQueryBytes {
		return badRequest("query string longer than %d bytes", MaxQueryBytes)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return badRequest("malformed query string")
	}
	for k, v := range q {
		if k != "reason" && !slices.Contains(names, k) {
			if len(names) == 0 {
				return badRequest("unknown parameter %q: this endpoint takes only reason", clip(k, 64))
			}
			return badRequest("unknown parameter %q: this endpoint takes %s and reason", clip(k, 64), strings.Join(names, ", "))
		}
		if len(v) != 1 {
			return badRequest("parameter %s given %d times", k, len(v))
		}
		if !utf8.ValidString(v[0]) || strings.ContainsFunc(v[0], func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return badRequest("parameter %s is not valid UTF-8 text", k)
		}
	}
	c.reason = q.Get("reason")
	q.Del("reason")
	if h := c.r.Header.Get("X-Reason"); c.reason == "" && h != "" {
		if !utf8.ValidString(h) {
			return badRequest("X-Reason is not valid UTF-8")
		}
		c.reason = h
	}
	c.reason = strings.TrimSpace(c.reason)
	if len(c.reason) > MaxReasonBytes {
		return badRequest("reason longer than %d bytes", MaxReasonBytes)
	}
	c.params = q
	if c.p.role == roleLegal && c.reason == "" {
		return badRequest("legal users must give a reason (the reason parameter or the X-Reason header)")
	}
	return nil
}

// record appends the event of this call with its outcome. It may be
// called again, e.g. to record that an export allowed and recorded could
// not be made.
func (c *call) record(ctx context.Context, outcome string) error {
	d := maps.Clone(c.details)
	d["endpoint"] = c.r.Pattern
	if d["endpoint"] == "" {
		d["endpoint"] = clip(c.r.URL.Path, 256)
	}
	d["path"] = clip(c.r.URL.Path, 512)
	d["outcome"] = outcome
	d["auth"] = c.p.method
	if c.remote != "" {
		d["remote"] = clip(c.remote, 128)
	}
	if q := clip(c.r.URL.RawQuery, MaxQueryBytes); q != "" {
		d["query"] = q
	}
	if c.reason != "" {
		d["reason"] = clip(c.reason, MaxReasonBytes)
	}
	for k, v := range d {
		if v == "" {
			delete(d, k)
		}
	}
	ev := ledger.Event{Kind: c.kind, Actor: clip(c.p.actor(), 512), Identificativo: clip(c.ident, ledger.MaxFieldBytes), Details: d}
	if _, err := c.s.recorder.Record(ctx, ev); err != nil {
		c.failed = true
		c.s.log.Error("httpapi: cannot record the request in the ledger", "actor", ev.Actor, "endpoint", d["endpoint"], "err", err)
		return fmt.Errorf("httpapi: record: %w", err)
	}
	c.recorded = true
	return nil
}

// write sends the reply.
func (c *call) write(w http.ResponseWriter, rep *reply) {
	if rep.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(rep.retryAfter))
	}
	switch {
	case rep.status >= 400:
		writeError(w, rep.status, rep.code, rep.msg)
	case rep.body != nil:
		w.Header().Set("Content-Type", rep.contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(rep.body)))
		if rep.filename != "" {
			w.Header().Set("Content-Disposition", `attachment; filename="`+rep.filename+`"`)
		}
		w.WriteHeader(rep.status)
		if _, err := bytes.NewReader(rep.body).WriteTo(w); err != nil {
			c.s.log.Warn("httpapi: sending the answer", "actor", c.p.actor(), "err", err)
		}
	default:
		writeJSON(w, rep.status, rep.json)
	}
}
