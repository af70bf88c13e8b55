// Package harness is what the commands the Python tests drive (interop, podsim, replay) share:
// their common flags and Redis connection, the drivers they make, the names they print for the
// client's errors, and the clock they stamp answers with.
package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	statefulroute "github.com/stateful-route/stateful-route/clients/go"
)

// Env is what the common flags give a command: Redis (-url), the key prefix (-prefix) and the
// namespace it works in (-namespace).
type Env struct {
	Redis     redis.UniversalClient
	Prefix    string
	Namespace string
}

// Main defines the common flags beside those the command defined before it, parses them,
// connects to Redis and calls run; an error is printed as "<name>: <error>" and exits with 1.
func Main(name string, run func(ctx context.Context, env Env) error) {
	url := flag.String("url", "redis://127.0.0.1:6379/0", "Redis URL")
	prefix := flag.String("prefix", "sr", "key prefix")
	namespace := flag.String("namespace", "games", "namespace")
	flag.Parse()
	if err := connected(*url, *prefix, *namespace, run); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// connected runs run with Redis open, and closes it before Main may exit.
func connected(url, prefix, namespace string, run func(ctx context.Context, env Env) error) error {
	rdb, err := statefulroute.Connect(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return run(context.Background(), Env{Redis: rdb, Prefix: prefix, Namespace: namespace})
}

// NewClientDriver is a ClientDriver of the namespace under the prefix; timeout 0 takes the
// driver's default. The caller closes it.
func (e Env) NewClientDriver(timeout time.Duration) (*statefulroute.ClientDriver, error) {
	return statefulroute.NewClientDriver(e.Redis, statefulroute.Options{
		Namespaces: []string{e.Namespace}, Prefix: e.Prefix, Timeout: timeout})
}

// Servers makes one ServerDriver per service and pod of the namespace on first use, with opts
// (their Prefix is the Env's), and keeps it. Safe for concurrent use.
type Servers struct {
	env     Env
	opts    statefulroute.ServerOptions
	mu      sync.Mutex
	drivers map[server]*statefulroute.ServerDriver
}

type server struct {
	service string
	pod     int
}

// Servers is an empty set of ServerDrivers made with opts.
func (e Env) Servers(opts statefulroute.ServerOptions) *Servers {
	opts.Prefix = e.Prefix
	return &Servers{env: e, opts: opts, drivers: map[server]*statefulroute.ServerDriver{}}
}

// Get is the ServerDriver of the pod of service, made now if it is the first call for it (one
// that failed to be made is not kept).
func (s *Servers) Get(service string, pod int) (*statefulroute.ServerDriver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := server{service, pod}
	if d, ok := s.drivers[key]; ok {
		return d, nil
	}
	d, err := statefulroute.NewServerDriver(s.env.Redis, s.env.Namespace, service, pod, s.opts)
	if err == nil {
		s.drivers[key] = d
	}
	return d, err
}

// Kind is one of the client's errors as the Python tests name it (tests/go_replay.py: kind).
type Kind struct {
	Name string
	Err  error
}

// The kinds, narrowest first: a PodPendingError also matches ErrNoAvailablePod, and an
// unavailable store's error ErrStore.
var (
	InvalidInput     = Kind{"InvalidInput", statefulroute.ErrInvalidInput}
	PodPending       = Kind{"PodPending", statefulroute.ErrPodPending}
	NoAvailablePod   = Kind{"NoAvailablePod", statefulroute.ErrNoAvailablePod}
	StoreUnavailable = Kind{"StoreUnavailable", statefulroute.ErrStoreUnavailable}
	StoreError       = Kind{"StoreError", statefulroute.ErrStore}
	// Kinds is every kind, in the order to test them.
	Kinds = []Kind{InvalidInput, PodPending, NoAvailablePod, StoreUnavailable, StoreError}
)

// Unexpected names an error that matches none of the kinds a command tests.
const Unexpected = "Unexpected"

// Name is the name of the first of kinds that err matches (errors.Is), else Unexpected. Each
// command passes the kinds its output documents, narrowest first.
func Name(err error, kinds ...Kind) string {
	for _, k := range kinds {
		if errors.Is(err, k.Err) {
			return k.Name
		}
	}
	return Unexpected
}

// Field is err's message as one field of a line of space-separated fields.
func Field(err error) string { return strings.ReplaceAll(err.Error(), " ", "_") }

// Now is the wall clock in Unix seconds, as Python's time.time() stamps the same calls.
func Now() float64 { return float64(time.Now().UnixNano()) / 1e9 }
