package harness

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
)

// SignaturesPerMessage is how many RSA signatures one message costs on a
// machine that runs both gestori: the ricevuta di accettazione and the
// busta di trasporto on A, the ricevuta di presa in carico and the
// ricevuta di avvenuta consegna on B.
const SignaturesPerMessage = 4

// baselineTime is how long each in-process baseline runs.
const baselineTime = 3 * time.Second

// baselines measures, with the gestori stopped, the RSA signing bound, raw
// badger synced batched writes, and a Postfix relay.
func (h *harness) baselines(ctx context.Context) error {
	if err := h.stopGestori(); err != nil {
		return err
	}
	b := &Baselines{}
	h.res.Baselines = b
	var err error
	if b.RSA, err = h.rsaBound(ctx); err != nil {
		return err
	}
	size := h.res.avgEntrySize
	if size == 0 {
		size = 600 // no load phase ran: a typical entry
	}
	if b.Badger, err = badgerBaseline(ctx, filepath.Join(h.dir, "badger-baseline"), size); err != nil {
		return err
	}
	b.Postfix = h.postfixBaseline(ctx)
	return nil
}

// rsaBound signs ricevute di accettazione with A's key on every core for
// baselineTime, as BenchmarkRSASignBound does.
func (h *harness) rsaBound(ctx context.Context) (*RSABaseline, error) {
	signer, err := smime.LoadKeyPair(filepath.Join(h.a.data, "pki", pki.GestoreCertFile), filepath.Join(h.a.data, "pki", pki.GestoreKeyFile))
	if err != nil {
		return nil, fmt.Errorf("rsa baseline: %w", err)
	}
	g, err := pec.NewGestore(h.a.name, h.a.domain, signer, pec.RandomIDs(nil))
	if err != nil {
		return nil, fmt.Errorf("rsa baseline: %w", err)
	}
	msg := benchMessage(sender(0), recipient(0), "<rsa@client.test>")
	env := pec.Envelope{Mittente: sender(0), Destinatari: []daticert.Destinatario{{Address: recipient(0), Tipo: daticert.DestinatarioCertificato}}}
	tx, err := g.NewTransaction([]byte(msg), env, time.Now())
	if err != nil {
		return nil, fmt.Errorf("rsa baseline: %w", err)
	}
	var n atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(ctx, baselineTime)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := g.Accettazione(tx); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, fmt.Errorf("rsa baseline: %w", err)
	}
	sps := float64(n.Load()) / time.Since(start).Seconds()
	return &RSABaseline{Signatures: int(n.Load()), SignaturesPerSec: sps, PerMessage: SignaturesPerMessage,
		MessagesPerSec: sps / SignaturesPerMessage, KeyBits: signer.Certificate.PublicKey.(interface{ Size() int }).Size() * 8}, nil
}

// badgerBaseline writes records of entrySize bytes to a fresh badger store
// in batches of 256, one synced commit per batch, for baselineTime, as
// ledger's BenchmarkBadgerBatchedSync does.
func badgerBaseline(ctx context.Context, dir string, entrySize int) (*BadgerBaseline, error) {
	defer os.RemoveAll(dir)
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithDetectConflicts(false))
	if err != nil {
		return nil, fmt.Errorf("badger baseline: %w", err)
	}
	defer db.Close()
	const batch = 256
	val := make([]byte, entrySize)
	start := time.Now()
	i := 0
	for time.Since(start) < baselineTime && ctx.Err() == nil {
		txn := db.NewTransaction(true)
		for range batch {
			if err := txn.Set(binary.BigEndian.AppendUint64([]byte{'e'}, uint64(i)), val); err != nil {
				txn.Discard()
				return nil, fmt.Errorf("badger baseline: %w", err)
			}
			i++
		}
		if err := txn.Commit(); err != nil {
			return nil, fmt.Errorf("badger baseline: %w", err)
		}
	}
	el := time.Since(start)
	return &BadgerBaseline{Records: i, RecordBytes: entrySize, Batch: batch, RecordsPerSec: float64(i) / el.Seconds()}, nil
}

// postfixBaseline runs Debian's Postfix as an instance of its own (config,
// queue and data directories in the work directory, listening on a
// loopback port, every recipient relayed to the discard transport) and
// feeds it the same messages from the same clients for the load phase's
// duration. Postfix answers 250 once the message is fsynced in its queue,
// as the gestore answers once it is in the ledger. Its master runs as root,
// as Postfix requires; its daemons drop to the postfix user.
func (h *harness) postfixBaseline(ctx context.Context) *PostfixBaseline {
	r := &PostfixBaseline{}
	if _, err := os.Stat(h.opts.Postfix); err != nil {
		r.Skipped = fmt.Sprintf("no Postfix: %v (scripts/install-test-deps.sh installs Debian's postfix)", err)
		return r
	}
	if os.Geteuid() != 0 {
		r.Skipped = "Postfix's master must start as root and this run is not root"
		return r
	}
	pf, err := h.startPostfix(ctx)
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	defer pf.stop()
	r.Version = pf.version
	d := max(h.opts.Load/2, 5*time.Second)
	var ids atomic.Int64
	track := newTracker()
	l, err := startLoad(ctx, "postfix", h.opts.Clients, loadTarget{addr: pf.addr, caFile: h.a.ca(), track: track, ids: &ids})
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	sleep(ctx, d)
	l.stop()
	toAck, _ := track.latencies("postfix")
	r.Seconds = l.elapsed.Seconds()
	r.Accepted = int(l.acked.Load())
	r.AcceptedPerSec = float64(r.Accepted) / l.elapsed.Seconds()
	r.AckP50ms, r.AckP99ms = percentile(toAck, 0.5), percentile(toAck, 0.99)
	r.Errors = l.errorCounts()
	r.CPUSeconds = pf.cpu()
	return r
}

// postfixInstance is a running Postfix of the run.
type postfixInstance struct {
	conf, addr, version string
	proc                *process
	bin                 string
}

func (h *harness) startPostfix(ctx context.Context) (*postfixInstance, error) {
	// The postfix user must reach its data directory: a work directory
	// from os.MkdirTemp is 0700.
	if err := os.Chmod(h.dir, 0o755); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	dir := filepath.Join(h.dir, "postfix")
	conf, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "lib")
	for _, d := range []string{conf, spool, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("postfix: %w", err)
		}
	}
	// Postfix refuses a data directory it does not own.
	u, err := user.Lookup("postfix")
	if err != nil {
		return nil, fmt.Errorf("postfix: no postfix user (is the package installed?): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if err := os.Chown(data, uid, -1); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	mainCF := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + spool,
		"data_directory = " + data,
		"myhostname = bench.localdomain",
		"mydestination =",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"smtpd_relay_restrictions = permit_mynetworks, reject",
		"default_transport = discard:bench",
		"relay_transport = discard:bench",
		"local_transport = discard:bench",
		"alias_maps =",
		"alias_database =",
		"biff = no",
		"maillog_file = /dev/stdout",
		"smtpd_tls_security_level = may",
		"smtpd_tls_cert_file = " + filepath.Join(h.a.data, "pki", "tls.pem"),
		"smtpd_tls_key_file = " + filepath.Join(h.a.data, "pki", "tls.key"),
		"smtpd_client_connection_count_limit = 0",
		"smtpd_client_connection_rate_limit = 0",
		"", // the services of a relay to discard:, none chrooted
	}, "\n")
	masterCF := strings.Join([]string{
		addr + " inet n - n - - smtpd",
		"pickup unix n - n 60 1 pickup",
		"cleanup unix n - n - 0 cleanup",
		"qmgr unix n - n 300 1 qmgr",
		"tlsmgr unix - - n 1000? 1 tlsmgr",
		"rewrite unix - - n - - trivial-rewrite",
		"bounce unix - - n - 0 bounce",
		"defer unix - - n - 0 bounce",
		"trace unix - - n - 0 bounce",
		"verify unix - - n - 1 verify",
		"flush unix n - n 1000? 0 flush",
		"proxymap unix - - n - - proxymap",
		"showq unix n - n - - showq",
		"error unix - - n - - error",
		"retry unix - - n - - error",
		"discard unix - - n - - discard",
		"anvil unix - - n - 1 anvil",
		"scache unix - - n - 1 scache",
		"postlog unix-dgram n - n - 1 postlogd",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(masterCF), 0o644); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	version := ""
	if out, err := exec.CommandContext(ctx, "postconf", "-c", conf, "-h", "mail_version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	pf := &postfixInstance{conf: conf, addr: addr, version: version, bin: h.opts.Postfix,
		proc: &process{name: "postfix", bin: h.opts.Postfix, args: []string{"-c", conf, "start-fg"}, logPath: filepath.Join(dir, "postfix.log")}}
	if err := pf.proc.start(ctx); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	if err := waitListening(ctx, pf.proc, addr, 30*time.Second); err != nil {
		pf.stop()
		log, _ := os.ReadFile(pf.proc.logPath)
		return nil, fmt.Errorf("postfix did not start: %v: %s", err, tail(string(log), 1500))
	}
	return pf, nil
}

// cpu returns the CPU seconds of the instance's processes so far (master
// and its daemons, which are its children, live or exited), from /proc.
func (pf *postfixInstance) cpu() float64 {
	pid := pf.proc.pid()
	if pid == 0 {
		return 0
	}
	var total time.Duration
	var walk func(int)
	walk = func(p int) {
		if s, err := readProc(p); err == nil {
			total += s.cpu + s.childCPU
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		if err != nil {
			return
		}
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				walk(n)
			}
		}
	}
	walk(pid)
	return total.Seconds()
}

func (pf *postfixInstance) stop() {
	_ = exec.Command(pf.bin, "-c", pf.conf, "stop").Run()
	_ = pf.proc.stop(20 * time.Second)
}
