package harness

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
)

// Names of the run's gestori, mailboxes and credentials.
const (
	domainA      = "pec.alfa.test"
	domainB      = "pec.beta.test"
	password     = "bench-password-1"
	s3AccessKey  = "custodebench"
	s3SecretKey  = "custodebench-secret-key"
	s3Bucket     = "custode-bench"
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
)

// gestore is one custode serve of the run.
type gestore struct {
	name, domain, data          string
	submission, ricezione, imap string
	api                         string // the HTTP API's address
	clockFile                   string // A only: the clock offset the clock fault writes
	proc                        *process
}

func (g *gestore) ca() string { return filepath.Join(g.data, "pki", pki.CACertFile) }

// sender and recipient name client i's mailboxes.
func sender(i int) string    { return fmt.Sprintf("s%d@%s", i, domainA) }
func recipient(i int) string { return fmt.Sprintf("r%d@%s", i, domainB) }

// setup makes the data directories of gestori A and B, each in the
// other's indice dei gestori and routes, with a mailbox per client on each;
// A's TSA as a process of its own; and, when possible, A's data on a small
// filesystem of its own and its archive on a MinIO of its own.
func (h *harness) setup(ctx context.Context) error {
	aDir := filepath.Join(h.dir, "a")
	if h.want("disk") {
		// Room for what A preallocates (journal segments, badger's
		// memory-mapped files) and the reserve it keeps free.
		size := int64(2 << 30)
		if h.opts.Long {
			size = 8 << 30
		}
		d, err := newSmallDisk(ctx, filepath.Join(h.dir, "a-disk"), size)
		if err != nil {
			h.res.skip("disk", fmt.Sprintf("no filesystem of its own for gestore A's data: %v", err))
		} else {
			h.disk = d
			aDir = filepath.Join(d.mnt, "a")
		}
	}
	h.a = &gestore{name: "Alfa PEC S.p.A.", domain: domainA, data: aDir}
	h.b = &gestore{name: "Beta PEC S.p.A.", domain: domainB, data: filepath.Join(h.dir, "b")}
	if h.want("s3") || h.want("tamper") {
		m, err := startMinIO(ctx, h.opts.MinIO, filepath.Join(h.dir, "minio"))
		if err != nil {
			h.res.skip("s3", fmt.Sprintf("no MinIO: %v", err))
		} else {
			h.minio = m
			h.s3Env = []string{"CUSTODE_S3_ACCESS_KEY=" + s3AccessKey, "CUSTODE_S3_SECRET_KEY=" + s3SecretKey}
		}
	}
	var providers []*igpec.Provider
	for _, g := range []*gestore{h.a, h.b} {
		if _, err := h.mustCLI(ctx, "", "init", "-data", g.data, "-gestore", g.name, "-domain", g.domain); err != nil {
			return err
		}
		var err error
		for _, a := range []*string{&g.submission, &g.ricezione, &g.imap, &g.api} {
			if *a, err = freeAddr(); err != nil {
				return err
			}
		}
		certs, err := pki.LoadCertificates(filepath.Join(g.data, "pki", pki.GestoreCertFile))
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		p := &igpec.Provider{Name: g.name, MailReceipt: "posta-certificata@" + g.domain, ManagedDomains: []string{g.domain}}
		p.AddCertificate(certs[0].Raw)
		providers = append(providers, p)
	}
	var ldif bytes.Buffer
	if err := igpec.WriteLDIF(&ldif, providers...); err != nil {
		return fmt.Errorf("indice dei gestori: %w", err)
	}
	tsaAddr, err := freeAddr()
	if err != nil {
		return err
	}
	for i, g := range []*gestore{h.a, h.b} {
		other := []*gestore{h.b, h.a}[i]
		// Each gestore's metrics on a port of its own: init's default
		// (127.0.0.1:9464) is the same for both.
		metricsAddr, err := freeAddr()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(g.data, "igpec.ldif"), ldif.Bytes(), 0o644); err != nil {
			return fmt.Errorf("indice dei gestori: %w", err)
		}
		err = editConfig(g.data, func(c map[string]any) {
			s := section(c, "server")
			s["submission"], s["ricezione"], s["imap"] = g.submission, g.ricezione, g.imap
			delete(s, "submissions")
			s["index"] = "igpec.ldif"
			s["routes"] = map[string]string{other.domain: other.ricezione}
			s["peer_cas"] = []string{other.ca()}
			s["password_iterations"] = 1000
			c["checkpoint_interval"] = "1s"
			c["api"] = map[string]any{"tokens": "api-tokens", "listen": g.api}
			c["metrics"] = map[string]any{"listen": metricsAddr}
			if g == h.a {
				c["tsa_url"] = "http://" + tsaAddr + "/"
				if h.minio != nil {
					c["archive"] = map[string]any{"s3_endpoint": h.minio.url, "s3_bucket": s3Bucket}
				}
			}
		})
		if err != nil {
			return err
		}
	}
	for i := range h.opts.Clients {
		if _, err := h.mustCLI(ctx, password+"\n", "mailbox", "add", "-data", h.a.data, "-quota", "0", sender(i)); err != nil {
			return err
		}
		if _, err := h.mustCLI(ctx, password+"\n", "mailbox", "add", "-data", h.b.data, "-quota", "0", recipient(i)); err != nil {
			return err
		}
	}
	h.a.clockFile = filepath.Join(h.dir, "a-clock-offset")
	h.a.proc = &process{name: "gestore A", bin: h.opts.Binary, env: h.s3Env, logPath: filepath.Join(h.dir, "a-serve.log"),
		args: []string{"serve", "-data", h.a.data, "-tsa-listen", "", "-clock-offset-file", h.a.clockFile}}
	h.b.proc = &process{name: "gestore B", bin: h.opts.Binary, env: h.s3Env, logPath: filepath.Join(h.dir, "b-serve.log"),
		args: []string{"serve", "-data", h.b.data, "-tsa-listen", ""}}
	h.tsa = &process{name: "TSA", bin: h.opts.Binary, logPath: filepath.Join(h.dir, "tsa.log"),
		args: []string{"tsa", "serve", "-data", h.a.data, "-listen", tsaAddr}}
	h.tsaAddr = tsaAddr
	return nil
}

// startAll starts whatever of the TSA and the gestori is not running, B
// first (A delivers to it), and waits until they listen.
func (h *harness) startAll(ctx context.Context) error {
	if h.tsa.pid() == 0 {
		if err := h.tsa.start(ctx); err != nil {
			return err
		}
		if err := waitListening(ctx, h.tsa, h.tsaAddr, startTimeout); err != nil {
			return err
		}
	}
	for _, g := range []*gestore{h.b, h.a} {
		if err := h.startGestore(ctx, g); err != nil {
			return err
		}
	}
	return nil
}

// startGestore starts g unless it runs, and waits for its points.
func (h *harness) startGestore(ctx context.Context, g *gestore) error {
	if g.proc.pid() != 0 {
		return nil
	}
	if err := g.proc.start(ctx); err != nil {
		return err
	}
	for _, addr := range []string{g.submission, g.ricezione, g.imap} {
		if err := waitListening(ctx, g.proc, addr, startTimeout); err != nil {
			return err
		}
	}
	return nil
}

// stopGestori stops both gestori as an operator would.
func (h *harness) stopGestori() error {
	errA := h.a.proc.stop(stopTimeout)
	errB := h.b.proc.stop(stopTimeout)
	if errA != nil {
		return errA
	}
	return errB
}

// minioServer is the run's own MinIO, which the S3 fault stops and starts.
type minioServer struct {
	proc *process
	addr string
	url  string
}

// startMinIO runs bin as a MinIO server on a free loopback port with its
// data in dir.
func startMinIO(ctx context.Context, bin, dir string) (*minioServer, error) {
	if bin == "" {
		return nil, fmt.Errorf("no MinIO binary (set CUSTODE_TEST_MINIO_BIN or run scripts/s3-servers.sh build)")
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("MinIO binary: %w (run scripts/s3-servers.sh build)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("minio: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m := &minioServer{addr: addr, url: "http://" + addr}
	m.proc = &process{name: "MinIO", bin: bin, logPath: dir + ".log",
		args: []string{"server", "--quiet", "--address", addr, dir},
		env:  []string{"MINIO_ROOT_USER=" + s3AccessKey, "MINIO_ROOT_PASSWORD=" + s3SecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off"}}
	if err := m.start(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// start starts the server and waits until it is live.
func (m *minioServer) start(ctx context.Context) error {
	if err := m.proc.start(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := http.Get(m.url + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if done, err := m.proc.exited(); done {
			return fmt.Errorf("minio exited (%v); see %s", err, m.proc.logPath)
		}
		if time.Now().After(deadline) {
			m.proc.kill()
			return fmt.Errorf("minio not live after %v; see %s", startTimeout, m.proc.logPath)
		}
		select {
		case <-ctx.Done():
			m.proc.kill()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *minioServer) close() { _ = m.proc.stop(10 * time.Second) }

// smallDisk is an ext4 filesystem in a file, loop-mounted: gestore A's data
// lives there, so that the disk fault can fill it without touching the
// machine's own filesystems.
type smallDisk struct {
	img, mnt string
}

// newSmallDisk makes and mounts a filesystem of size bytes (sparse: it
// takes only what is used). It needs root, mkfs.ext4 and loop devices.
func newSmallDisk(ctx context.Context, base string, size int64) (*smallDisk, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("mounting a filesystem needs root")
	}
	d := &smallDisk{img: base + ".img", mnt: base}
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(d.img)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	run := func(name string, args ...string) error {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	// -m 0: no blocks reserved for root, who runs the gestore here.
	if err := run("mkfs.ext4", "-q", "-F", "-m", "0", d.img); err != nil {
		os.Remove(d.img)
		return nil, err
	}
	if err := run("mount", "-o", "loop", d.img, d.mnt); err != nil {
		os.Remove(d.img)
		return nil, err
	}
	return d, nil
}

// fill takes every free block of the filesystem with a file, which it
// returns.
func (d *smallDisk) fill() (string, int64, error) {
	path := filepath.Join(d.mnt, "filler")
	f, err := os.Create(path)
	if err != nil {
		return path, 0, err
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.mnt, &st); err != nil {
		return path, 0, err
	}
	free := int64(st.Bavail) * st.Bsize
	var total int64
	// fallocate what statfs says is free, then write until ENOSPC to take
	// the last blocks.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free); err == nil {
		total = free
	}
	buf := make([]byte, 64<<10)
	if _, err := f.Seek(total, 0); err != nil {
		return path, total, err
	}
	for {
		n, err := f.Write(buf)
		total += int64(n)
		if err != nil {
			break
		}
	}
	_ = f.Sync()
	return path, total, nil
}

// close unmounts the filesystem and removes its file.
func (d *smallDisk) close() error {
	var err error
	for range 20 {
		if err = syscall.Unmount(d.mnt, 0); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		// Lazily, so that the run ends; the kernel detaches it when
		// nothing uses it any more.
		err = syscall.Unmount(d.mnt, syscall.MNT_DETACH)
	}
	os.Remove(d.img)
	os.Remove(d.mnt)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", d.mnt, err)
	}
	return nil
}
