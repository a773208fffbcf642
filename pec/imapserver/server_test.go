package imapserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/custode/custode/pec/mailstore"
)

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func fetchAll(t *testing.T, c *imapclient.Client, set imap.NumSet, opts *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatalf("FETCH %v: %v", set, err)
	}
	return msgs
}

func uidSearch(t *testing.T, c *imapclient.Client, crit *imap.SearchCriteria) []imap.UID {
	t.Helper()
	data, err := c.UIDSearch(crit, nil).Wait()
	if err != nil {
		t.Fatalf("UID SEARCH: %v", err)
	}
	return data.AllUIDs()
}

func listNames(t *testing.T, c *imapclient.Client, pattern string) []string {
	t.Helper()
	list, err := c.List("", pattern, nil).Collect()
	if err != nil {
		t.Fatalf("LIST %q: %v", pattern, err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	return names
}

func TestSession(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	msgs := [][]byte{pecMessage("uno"), pecMessage("due"), pecMessage("tre")}
	var first mailstore.Delivered
	for i, m := range msgs {
		d := e.deliver(t, mario, m)
		if i == 0 {
			first = d
		}
	}
	c := e.login(t, mario, marioPW, nil)

	t.Run("capabilities", func(t *testing.T) {
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIdle, imap.CapUIDPlus, imap.CapMove, imap.CapNamespace, "APPENDLIMIT=67108864"} {
			if !caps.Has(want) {
				t.Errorf("capability %s missing from %v", want, caps)
			}
		}
		if caps.Has(imap.CapStartTLS) {
			t.Error("STARTTLS offered after TLS")
		}
	})

	t.Run("list", func(t *testing.T) {
		if got := listNames(t, c, "*"); !slices.Equal(got, []string{"INBOX"}) {
			t.Fatalf("LIST * = %v", got)
		}
		for _, name := range []string{"Archivio/2026", "Città"} {
			if err := c.Create(name, nil).Wait(); err != nil {
				t.Fatalf("CREATE %s: %v", name, err)
			}
		}
		if err := c.Create("Archivio", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
			t.Fatalf("CREATE existing: %v", err)
		}
		tests := []struct {
			pattern string
			want    []string
		}{
			{"*", []string{"INBOX", "Archivio", "Archivio/2026", "Città"}},
			{"%", []string{"INBOX", "Archivio", "Città"}},
			{"Archivio/%", []string{"Archivio/2026"}},
			{"inbox", []string{"INBOX"}},
			{"*20*", []string{"Archivio/2026"}},
			{"Nulla", nil},
		}
		for _, tt := range tests {
			if got := listNames(t, c, tt.pattern); !slices.Equal(got, tt.want) {
				t.Errorf("LIST %q = %v, want %v", tt.pattern, got, tt.want)
			}
		}
		list, err := c.List("", "Archivio", nil).Collect()
		if err != nil || len(list) != 1 || !slices.Contains(list[0].Attrs, imap.MailboxAttrHasChildren) || list[0].Delim != '/' {
			t.Fatalf("LIST Archivio = %+v, %v", list, err)
		}
	})

	t.Run("select", func(t *testing.T) {
		data, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if data.NumMessages != 3 || data.UIDValidity != first.UIDValidity || data.UIDNext != 4 {
			t.Fatalf("SELECT = %+v", data)
		}
		if !slices.Contains(data.PermanentFlags, imap.FlagWildcard) {
			t.Fatalf("PERMANENTFLAGS %v", data.PermanentFlags)
		}
	})

	t.Run("fetch", func(t *testing.T) {
		got := fetchAll(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
			UID: true, Flags: true, RFC822Size: true, InternalDate: true, Envelope: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
			BodySection:   []*imap.FetchItemBodySection{{Peek: true}},
		})
		if len(got) != 3 {
			t.Fatalf("%d messages", len(got))
		}
		for i, m := range got {
			body := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
			if !bytes.Equal(body, msgs[i]) {
				t.Errorf("message %d: BODY[] differs from what was delivered:\n%q\n%q", i+1, body, msgs[i])
			}
			if m.UID != imap.UID(i+1) || m.RFC822Size != int64(len(msgs[i])) || len(m.Flags) != 0 {
				t.Errorf("message %d: %+v", i+1, m)
			}
			if m.Envelope == nil || !strings.HasSuffix(m.Envelope.Subject, []string{"uno", "due", "tre"}[i]) || m.Envelope.MessageID != "opec.20261123.1@pec.example.it" {
				t.Errorf("message %d envelope %+v", i+1, m.Envelope)
			}
			mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
			if !ok || mp.Subtype != "signed" || len(mp.Children) != 2 {
				t.Errorf("message %d BODYSTRUCTURE %#v", i+1, m.BodyStructure)
			}
		}
		// Sections.
		sections := []struct {
			sec  *imap.FetchItemBodySection
			want string
		}{
			{&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}, string(msgs[0][:bytes.Index(msgs[0], []byte("\r\n\r\n"))+4])},
			{&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}, "Subject: POSTA CERTIFICATA: uno\r\n\r\n"},
			{&imap.FetchItemBodySection{Part: []int{1, 3}, Specifier: imap.PartSpecifierText, Peek: true}, "Testo originale con parola chiave zibaldone."}, // the CRLF before a boundary is the boundary's
			{&imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 12}}, "Return-Path:"},
		}
		for _, s := range sections {
			got := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{s.sec}})
			if b := got[0].FindBodySection(s.sec); string(b) != s.want {
				t.Errorf("section %+v = %q, want %q", s.sec, b, s.want)
			}
		}
		// PEEK left them unseen.
		if got := uidSearch(t, c, &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}); !slices.Equal(got, []imap.UID{1, 2, 3}) {
			t.Fatalf("UNSEEN = %v", got)
		}
		// BODY[] without PEEK sets \Seen and says so.
		got = fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
		if len(got) != 1 || !slices.Contains(got[0].Flags, imap.FlagSeen) {
			t.Fatalf("FETCH BODY[] = %+v", got)
		}
	})

	t.Run("search", func(t *testing.T) {
		yesterday := time.Now().AddDate(0, 0, -1)
		tests := []struct {
			name string
			crit imap.SearchCriteria
			want []imap.UID
		}{
			{"all", imap.SearchCriteria{}, []imap.UID{1, 2, 3}},
			{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []imap.UID{2, 3}},
			{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []imap.UID{1}},
			{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "POSTA-certificata@"}}}, []imap.UID{1, 2, 3}},
			{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "due"}}}, []imap.UID{2}},
			{"body", imap.SearchCriteria{Body: []string{"ZIBALDONE"}}, []imap.UID{1, 2, 3}},
			{"body decoded", imap.SearchCriteria{Body: []string{"è stato inviato"}}, []imap.UID{1, 2, 3}},
			{"body absent", imap.SearchCriteria{Body: []string{"X-Trasporto"}}, nil},
			{"text", imap.SearchCriteria{Text: []string{"x-trasporto"}}, []imap.UID{1, 2, 3}},
			{"uid range", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 0}}}}, []imap.UID{2, 3}},
			{"seq", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(1, 3)}}, []imap.UID{1, 3}},
			{"since", imap.SearchCriteria{Since: yesterday}, []imap.UID{1, 2, 3}},
			{"before", imap.SearchCriteria{Before: yesterday}, nil},
			{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "uno"}}}}}, []imap.UID{2, 3}},
			{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{
				{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "uno"}}},
				{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "tre"}}},
			}}}, []imap.UID{1, 3}},
			{"larger", imap.SearchCriteria{Larger: 100000}, nil},
			{"sent since", imap.SearchCriteria{SentSince: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}, []imap.UID{1, 2, 3}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := uidSearch(t, c, &tt.crit); !slices.Equal(got, tt.want) {
					t.Fatalf("UID SEARCH = %v, want %v", got, tt.want)
				}
			})
		}
		data, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
		if err != nil || !slices.Equal(data.AllSeqNums(), []uint32{2, 3}) {
			t.Fatalf("SEARCH UNSEEN = %v, %v", data, err)
		}
	})

	t.Run("store", func(t *testing.T) {
		got, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "Lavoro"}}, nil).Collect()
		if err != nil || len(got) != 1 || !slices.Contains(got[0].Flags, imap.FlagSeen) || !slices.Contains(got[0].Flags, "Lavoro") {
			t.Fatalf("STORE = %+v, %v", got, err)
		}
		if got := uidSearch(t, c, &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}); !slices.Equal(got, []imap.UID{1, 2}) {
			t.Fatalf("SEEN after STORE = %v", got)
		}
		if _, err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Bogus`}}, nil).Collect(); err == nil {
			t.Fatal("STORE of an unknown system flag succeeded")
		}
		f, _ := e.store.Folder(ctx, mario, "INBOX")
		if f.Unseen != 1 {
			t.Fatalf("store says %d unseen, want 1", f.Unseen)
		}
	})

	t.Run("append", func(t *testing.T) {
		m := []byte("From: mario.rossi@pec.example.it\r\nSubject: bozza\r\n\r\nTesto della bozza.\r\n")
		when := time.Date(2026, 10, 1, 12, 0, 0, 0, time.FixedZone("", 2*3600))
		cmd := c.Append("Archivio", int64(len(m)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}, Time: when})
		cmd.Write(m)
		cmd.Close()
		data, err := cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		arch, _ := e.store.Folder(ctx, mario, "Archivio")
		if data.UID != 1 || data.UIDValidity != arch.UIDValidity {
			t.Fatalf("APPENDUID = %+v, folder %+v", data, arch)
		}
		body, err := e.store.Body(ctx, mario, "Archivio", 1)
		if err != nil || !bytes.Equal(body, m) {
			t.Fatalf("appended body %q, %v", body, err)
		}
		_, list, _ := e.store.Messages(ctx, mario, "Archivio")
		if len(list) != 1 || !list[0].Time.Equal(when) || !list[0].HasFlag(mailstore.FlagDraft) {
			t.Fatalf("appended message %+v", list)
		}
		cmd = c.Append("Inesistente", int64(len(m)), nil)
		cmd.Write(m)
		cmd.Close()
		if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
			t.Fatalf("APPEND to a missing folder: %v", err)
		}
	})

	t.Run("copy and move", func(t *testing.T) {
		data, err := c.Copy(imap.SeqSetNum(3), "Archivio").Wait()
		if err != nil || data.UIDValidity == 0 || !slices.Equal(data.DestUIDs, imap.UIDSetNum(2)) {
			t.Fatalf("COPY = %+v, %v", data, err)
		}
		if _, err := c.Copy(imap.SeqSetNum(3), "Nulla").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
			t.Fatalf("COPY to a missing folder: %v", err)
		}
		mv, err := c.Move(imap.SeqSetNum(3), "Archivio/2026").Wait()
		if err != nil || mv.DestUIDs == nil || mv.DestUIDs.String() != "1" {
			t.Fatalf("MOVE = %+v, %v", mv, err)
		}
		if n := c.Mailbox().NumMessages; n != 2 {
			t.Fatalf("after MOVE the client sees %d messages, want 2", n)
		}
	})

	t.Run("expunge", func(t *testing.T) {
		if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
			t.Fatal(err)
		}
		before, _ := e.store.Mailbox(ctx, mario)
		seqs, err := c.Expunge().Collect()
		if err != nil || !slices.Equal(seqs, []uint32{1}) {
			t.Fatalf("EXPUNGE = %v, %v", seqs, err)
		}
		after, _ := e.store.Mailbox(ctx, mario)
		if after.Used != before.Used-int64(len(msgs[0])) {
			t.Fatalf("EXPUNGE freed %d bytes, want %d", before.Used-after.Used, len(msgs[0]))
		}
		got := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{UID: true})
		if len(got) != 1 || got[0].UID != 2 {
			t.Fatalf("after EXPUNGE message 1 is %+v, want UID 2", got)
		}
	})

	t.Run("status, rename, delete", func(t *testing.T) {
		st, err := c.Status("Archivio", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, Size: true}).Wait()
		if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 2 || *st.Size == 0 {
			t.Fatalf("STATUS = %+v, %v", st, err)
		}
		if err := c.Rename("Archivio", "Vecchio/Archivio", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if got := listNames(t, c, "*"); !slices.Equal(got, []string{"INBOX", "Città", "Vecchio", "Vecchio/Archivio", "Vecchio/Archivio/2026"}) {
			t.Fatalf("LIST after RENAME = %v", got)
		}
		if err := c.Delete("INBOX").Wait(); err == nil {
			t.Fatal("DELETE INBOX succeeded")
		}
		if err := c.Delete("Vecchio/Archivio/2026").Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status("Vecchio/Archivio/2026", &imap.StatusOptions{NumMessages: true}).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
			t.Fatalf("STATUS of a deleted folder: %v", err)
		}
		if err := e.store.Check(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("examine is read-only", func(t *testing.T) {
		e.deliver(t, mario, pecMessage("quattro"))
		data, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		got := fetchAll(t, c, imap.SeqSetNum(data.NumMessages), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{}}})
		if len(got) != 1 || slices.Contains(got[0].Flags, imap.FlagSeen) {
			t.Fatal("FETCH BODY[] in EXAMINE set \\Seen")
		}
		if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err == nil {
			t.Fatal("STORE in EXAMINE succeeded")
		}
		if err := c.Logout().Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoginBeforeStartTLSRefused(t *testing.T) {
	e := newEnv(t, nil)
	c, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapStartTLS) || !caps.Has(imap.CapLoginDisabled) {
		t.Fatalf("capabilities before TLS: %v", caps)
	}
	err = c.Login(mario, marioPW).Wait()
	if imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Fatalf("LOGIN before STARTTLS: %v, want NO [PRIVACYREQUIRED]", err)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", mario, marioPW)); err == nil {
		t.Fatal("AUTHENTICATE PLAIN before STARTTLS succeeded")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err == nil {
		t.Fatal("SELECT without login succeeded")
	}
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name, user, pw string
		code           imap.ResponseCode
	}{
		{"wrong password", mario, "wrong-password", imap.ResponseCodeAuthenticationFailed},
		{"unknown user", "nessuno@pec.example.it", marioPW, imap.ResponseCodeAuthenticationFailed},
		{"not an address", "mario", marioPW, imap.ResponseCodeAuthenticationFailed},
		{"empty", "", "", imap.ResponseCodeAuthenticationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.dial(t, nil)
			err := c.Login(tt.user, tt.pw).Wait()
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != tt.code {
				t.Fatalf("LOGIN = %v, want NO [%s]", err, tt.code)
			}
		})
	}
	// After MaxFailures (3) failures even the right password is refused,
	// for LoginDelay (an hour here), from that address.
	e := newEnv(t, nil)
	c := e.dial(t, nil)
	for range 3 {
		if err := c.Login(mario, "wrong-password").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("LOGIN with a wrong password = %v", err)
		}
	}
	err := c.Login(mario, marioPW).Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeUnavailable || !strings.Contains(ie.Text, "Too many failed login attempts") {
		t.Fatalf("LOGIN after too many failures = %v, want NO [UNAVAILABLE] Too many failed login attempts", err)
	}
	// Anna, from the same address, is not: 3 failures of another account
	// are far from the address's own limit (MaxAddressFailures, 15).
	if err := c.Login(anna, annaPW).Wait(); err != nil {
		t.Fatalf("LOGIN of another account from the same address = %v", err)
	}
}

func TestAuthenticatePlain(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, nil)
	if err := c.Authenticate(sasl.NewPlainClient("", mario, marioPW)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c2 := e.dial(t, nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", mario, "wrong-password")); err == nil {
		t.Fatal("AUTHENTICATE with a wrong password succeeded")
	}
	if err := c2.Authenticate(sasl.NewPlainClient(anna, mario, marioPW)); err == nil {
		t.Fatal("AUTHENTICATE as another identity succeeded")
	}
}

func TestInsecureAuth(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.InsecureAuth = true })
	c, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(mario, marioPW).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestOtherMailboxInvisible(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.deliver(t, anna, []byte("From: x@example.it\r\nSubject: segreto di anna\r\n\r\nsegreto\r\n"))
	if err := e.store.CreateFolder(ctx, anna, "Riservata"); err != nil {
		t.Fatal(err)
	}
	e.deliver(t, mario, pecMessage("di mario"))
	c := e.login(t, mario, marioPW, nil)
	if got := listNames(t, c, "*"); !slices.Equal(got, []string{"INBOX"}) {
		t.Fatalf("LIST * = %v", got)
	}
	for _, name := range []string{
		"Riservata", anna, anna + "/INBOX", "../" + anna + "/INBOX", "#shared/" + anna,
		"user/anna.bianchi/INBOX", "Other Users/" + anna + "/INBOX", "~" + anna, "/" + anna,
	} {
		if _, err := c.Select(name, nil).Wait(); err == nil {
			t.Errorf("SELECT %q succeeded", name)
		}
		if _, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("STATUS %q succeeded", name)
		}
	}
	ns, err := c.Namespace().Wait()
	if err != nil || ns.Other != nil || ns.Shared != nil || len(ns.Personal) != 1 {
		t.Fatalf("NAMESPACE = %+v, %v", ns, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := uidSearch(t, c, &imap.SearchCriteria{Text: []string{"segreto"}}); len(got) != 0 {
		t.Fatalf("mario's search found anna's message: %v", got)
	}
	got := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if len(got) != 1 || bytes.Contains(got[0].BodySection[0].Bytes, []byte("segreto")) {
		t.Fatalf("FETCH = %+v", got)
	}
	// A copy to a name of anna's lands nowhere of hers.
	if _, err := c.Copy(imap.SeqSetNum(1), "Riservata").Wait(); err == nil {
		t.Fatal("COPY to another user's folder name succeeded")
	}
	if info, _ := e.store.Mailbox(ctx, anna); info.Messages != 1 {
		t.Fatalf("anna's mailbox changed: %+v", info)
	}
}

func TestIdle(t *testing.T) {
	e := newEnv(t, nil)
	e.deliver(t, mario, pecMessage("prima"))
	var mu sync.Mutex
	var exists uint32
	var expunged []uint32
	var flags [][]imap.Flag
	c := e.login(t, mario, marioPW, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = *d.NumMessages
				mu.Unlock()
			}
		},
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err == nil {
				mu.Lock()
				flags = append(flags, buf.Flags)
				mu.Unlock()
			}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// A delivery, as the gestore makes it.
	e.deliver(t, mario, pecMessage("seconda"))
	e.deliver(t, mario, pecMessage("terza"))
	waitFor(t, "EXISTS 3", func() bool { mu.Lock(); defer mu.Unlock(); return exists == 3 })

	// Another session flags and expunges.
	other := e.login(t, mario, marioPW, nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "FETCH FLAGS", func() bool { mu.Lock(); defer mu.Unlock(); return len(flags) == 1 })
	if _, err := other.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EXPUNGE 1", func() bool { mu.Lock(); defer mu.Unlock(); return slices.Equal(expunged, []uint32{1}) })

	// A delivery to anna is not announced to mario.
	e.deliver(t, anna, pecMessage("per anna"))
	time.Sleep(100 * time.Millisecond)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !slices.Contains(flags[0], imap.FlagFlagged) || exists != 3 {
		t.Errorf("flags %v, exists %d", flags, exists)
	}
	mu.Unlock()
	got := fetchAll(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true})
	if len(got) != 2 || got[0].UID != 2 || got[1].UID != 3 {
		t.Fatalf("after IDLE the view is %+v, want UIDs 2, 3", got)
	}
	// Changes while not idling come with the next command.
	e.deliver(t, mario, pecMessage("quarta"))
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Fatalf("after NOOP the client sees %d messages, want 3", n)
	}
}

func TestGreetingAndImplicitTLS(t *testing.T) {
	const greeting = "pec.example.it Custode IMAP pronto"
	e := newEnv(t, func(o *Options) { o.Greeting = greeting + "\r\n* BYE injected" })
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "* OK [CAPABILITY IMAP4rev1") || !strings.HasSuffix(line, "] "+greeting+"  * BYE injected\r\n") {
		t.Fatalf("greeting %q", line)
	}

	// IMAPS: a TLS listener, as the caller wraps it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- e.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{e.pki.server}}))
	}()
	c, err := imapclient.DialTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: e.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(mario, marioPW).Wait(); err != nil {
		t.Fatalf("LOGIN over implicit TLS: %v", err)
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a store succeeded")
	}
}

func TestConcurrentClients(t *testing.T) {
	e := newEnv(t, nil)
	const clients, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for i := range clients {
		wg.Go(func() {
			c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS()})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Login(mario, marioPW).Wait(); err != nil {
				errs <- err
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				errs <- err
				return
			}
			for j := range each {
				m := fmt.Appendf(nil, "Subject: %d-%d\r\n\r\ncorpo\r\n", i, j)
				cmd := c.Append("INBOX", int64(len(m)), nil)
				cmd.Write(m)
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					errs <- err
					return
				}
				if err := c.Noop().Wait(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	info, _ := e.store.Mailbox(context.Background(), mario)
	if info.Messages != clients*each {
		t.Fatalf("%d messages, want %d", info.Messages, clients*each)
	}
}

func TestMatchList(t *testing.T) {
	tests := []struct {
		name, ref, pattern string
		want               bool
	}{
		{"INBOX", "", "*", true},
		{"a/b", "", "%", false},
		{"a/b", "", "a/%", true},
		{"a/b/c", "", "a/%", false},
		{"a/b/c", "", "a/*", true},
		{"a/b", "a", "%", true},
		{"a/b", "a/", "b", true},
		{"a/b", "x", "/a/b", true},
		{"abc", "", "a%c", true},
		{"abc", "", "a*d", false},
		{strings.Repeat("a", 255), "", strings.Repeat("*a", 400) + "b", false},
		{"a", "", strings.Repeat("*", maxPattern+1), false},
	}
	for _, tt := range tests {
		if got := matchList(tt.name, tt.ref, tt.pattern); got != tt.want {
			t.Errorf("matchList(%q, %q, %.20q) = %v, want %v", tt.name, tt.ref, tt.pattern, got, tt.want)
		}
	}
}
