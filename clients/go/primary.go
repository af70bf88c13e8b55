package statefulroute

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// PrimaryClient is a go-redis client of the primary Redis Sentinel names (Connect of a
// redis[s]+sentinel:// URL). It asks every Sentinel at once (see AskWithin) whenever it
// connects, and again at least every RecheckPrimary while it is used; when the answer changes
// it closes every connection it made to the old primary, pub/sub included, so all of them move
// to the new one: a primary that comes back after Sentinel promoted a replica still acts as one
// until Sentinel demotes it (about 8 s later), and what is written to it meanwhile is lost.
// A call made when no Sentinel names a primary fails with *PrimaryNotFoundError.
type PrimaryClient struct {
	*redis.Client
	primary *sentinelPrimary
}

// Primary is the primary's address ("host:port") as the Sentinels last named it, "" before
// the first connection.
func (c *PrimaryClient) Primary() string {
	c.primary.mu.Lock()
	defer c.primary.mu.Unlock()
	return c.primary.addr
}

// Close closes the client, then its connections to the Sentinels (after the asks still
// running, each within AskWithin).
func (c *PrimaryClient) Close() error {
	return errors.Join(c.Client.Close(), c.primary.sentinels.close())
}

// newPrimaryClient is the client for opts (Addr unused) of the primary of master, found
// through the Sentinels at addrs.
func newPrimaryClient(master string, addrs []string, opts *redis.Options) *PrimaryClient {
	p := &sentinelPrimary{
		sentinels: newSentinels(master, addrs, opts),
		dial:      redis.NewDialer(opts), // TLS and the dial timeout as go-redis would
		conns:     map[*primaryConn]struct{}{},
	}
	opts.Addr = "sentinel:" + master
	opts.Dialer = p.dialPrimary
	// A failed dial is tried once more, as Python retries a connection error once: go-redis's
	// five attempts, each asking the Sentinels, would outlast a call's timeout when none
	// answers, hiding *PrimaryNotFoundError behind the deadline.
	opts.DialerRetries = 2
	client := redis.NewClient(opts)
	client.AddHook(recheckHook{p})
	return &PrimaryClient{Client: client, primary: p}
}

// sentinelPrimary follows the primary's address and the connections made to it.
type sentinelPrimary struct {
	sentinels *sentinels
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	checked   atomic.Int64 // when the Sentinels were last asked (UnixNano)

	mu    sync.Mutex
	addr  string
	conns map[*primaryConn]struct{}
}

// errPrimaryMoved: the primary changed while a connection to the former one was made; the
// pool dials again.
var errPrimaryMoved = errors.New("statefulroute: the primary moved while connecting")

func (p *sentinelPrimary) dialPrimary(ctx context.Context, network, _ string) (net.Conn, error) {
	addr, err := p.find(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := p.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tracked := &primaryConn{Conn: conn, owner: p}
	p.mu.Lock()
	moved := p.addr != addr
	if !moved {
		p.conns[tracked] = struct{}{}
	}
	p.mu.Unlock()
	if moved {
		_ = conn.Close()
		return nil, errPrimaryMoved
	}
	return tracked, nil
}

// find asks the Sentinels; when they name another primary, every connection to the former one
// is closed (calls in flight on them fail, then reconnect to the new one).
func (p *sentinelPrimary) find(ctx context.Context) (string, error) {
	p.checked.Store(time.Now().UnixNano())
	addr, err := p.sentinels.discover(ctx)
	if err != nil {
		return "", err
	}
	var stale []*primaryConn
	p.mu.Lock()
	if addr != p.addr {
		p.addr = addr
		for conn := range p.conns {
			stale = append(stale, conn)
		}
		clear(p.conns)
	}
	p.mu.Unlock()
	for _, conn := range stale {
		conn.moved()
	}
	return addr, nil
}

// recheck asks the Sentinels when nobody did for RecheckPrimary; the calls made meanwhile
// go on at once (one asks, as Python's pool lets one checkout ask).
func (p *sentinelPrimary) recheck(ctx context.Context) error {
	last := p.checked.Load()
	now := time.Now().UnixNano()
	if now-last < int64(RecheckPrimary) || !p.checked.CompareAndSwap(last, now) {
		return nil
	}
	_, err := p.find(ctx)
	return err
}

// primaryConn is a connection to the primary, forgotten when closed.
type primaryConn struct {
	net.Conn
	owner  *sentinelPrimary
	closed atomic.Bool // closed because the primary moved
}

func (c *primaryConn) Close() error {
	c.owner.mu.Lock()
	delete(c.owner.conns, c)
	c.owner.mu.Unlock()
	return c.Conn.Close()
}

// moved closes the connection because the primary moved.
func (c *primaryConn) moved() {
	c.closed.Store(true)
	_ = c.Conn.Close()
}

// SyscallConn serves go-redis's pool, which checks an idle connection this way before handing
// it out: one closed because the primary moved is then dropped and replaced, rather than
// failing the call that would have used it. A plain TCP connection is checked as go-redis
// checks one; a TLS one, as go-redis does, is not.
func (c *primaryConn) SyscallConn() (syscall.RawConn, error) {
	if c.closed.Load() {
		return nil, net.ErrClosed
	}
	if conn, ok := c.Conn.(syscall.Conn); ok {
		return conn.SyscallConn()
	}
	return uncheckedConn{}, nil
}

// uncheckedConn is a syscall.RawConn that reports nothing.
type uncheckedConn struct{}

func (uncheckedConn) Control(func(fd uintptr)) error    { return nil }
func (uncheckedConn) Read(func(fd uintptr) bool) error  { return nil }
func (uncheckedConn) Write(func(fd uintptr) bool) error { return nil }

// recheckHook re-checks the primary before a command or pipeline when it is due.
type recheckHook struct{ p *sentinelPrimary }

func (h recheckHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h recheckHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.p.recheck(ctx); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h recheckHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if err := h.p.recheck(ctx); err != nil {
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}
