package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Finding the primary behind Redis Sentinel as the Python client does (store/sentinels.py):
// every Sentinel is asked at once, each without retries, and the round ends as soon as a
// majority named a usable primary, else when all answered or AskWithin passed; of the primaries
// named, the one of the highest config epoch (the latest failover) wins. go-redis's
// FailoverClient instead asks one Sentinel at a time and trusts the first answer, and a
// Sentinel that is hung costs every call its timeout; its discovery cannot be replaced, so the
// primary's client is a plain go-redis client whose dialer asks the Sentinels (sentinelPrimary).

const (
	// AskWithin bounds one round of asking the Sentinels (and each Sentinel's socket timeouts),
	// well under a call's timeout (Python's ASK_WITHIN).
	AskWithin = 300 * time.Millisecond
	// RecheckPrimary: while the client is used, the Sentinels are asked again at least this
	// often (Python's RECHECK_PRIMARY).
	RecheckPrimary = 500 * time.Millisecond
)

// ErrPrimaryNotFound: no Sentinel named a usable primary within AskWithin
// (*PrimaryNotFoundError). Through a ClientDriver or ServerDriver it arrives wrapped in a
// *StoreError that matches ErrStoreUnavailable, as Python's MasterNotFoundError is
// StoreUnavailable.
var ErrPrimaryNotFound = errors.New("statefulroute: no primary found")

// PrimaryNotFoundError is ErrPrimaryNotFound for Master, with what each Sentinel said
// (Problems, one per Sentinel that gave no usable answer; no password is ever in them: the
// Sentinels are asked without credentials).
type PrimaryNotFoundError struct {
	Master   string
	Problems []string
}

func (e *PrimaryNotFoundError) Error() string {
	return fmt.Sprintf("no Sentinel named a primary for %q: %s", e.Master, RedactText(strings.Join(e.Problems, "; ")))
}

// Is reports whether target is ErrPrimaryNotFound.
func (e *PrimaryNotFoundError) Is(target error) bool { return target == ErrPrimaryNotFound }

// primaryAnswer is what one Sentinel said about the primary: its address and config epoch.
type primaryAnswer struct {
	addr  string
	epoch int64
}

// latestPrimary is the answer of the highest config epoch (the latest failover); of equal
// epochs the first, as Python's max() picks. answers is not empty.
func latestPrimary(answers []primaryAnswer) primaryAnswer {
	latest := answers[0]
	for _, a := range answers[1:] {
		if a.epoch > latest.epoch {
			latest = a
		}
	}
	return latest
}

// readPrimary turns a SENTINEL MASTER reply into an answer, or says why it is not usable
// (redis-py's check_master_state: flagged master, neither subjectively nor objectively down).
func readPrimary(state map[string]string) (primaryAnswer, error) {
	flags := map[string]bool{}
	for _, flag := range strings.Split(state["flags"], ",") {
		flags[flag] = true
	}
	if !flags["master"] || flags["s_down"] || flags["o_down"] {
		return primaryAnswer{}, fmt.Errorf("names a primary that is down (flags %q)", state["flags"])
	}
	port, err := strconv.Atoi(state["port"])
	if err != nil || state["ip"] == "" {
		return primaryAnswer{}, errors.New("names no address")
	}
	epoch, _ := strconv.ParseInt(state["config-epoch"], 10, 64) // absent: 0, as Python
	return primaryAnswer{addr: net.JoinHostPort(state["ip"], strconv.Itoa(port)), epoch: epoch}, nil
}

// sentinels asks a set of Sentinels where the primary of master is.
type sentinels struct {
	master  string
	addrs   []string
	clients []*redis.SentinelClient

	mu     sync.Mutex     // guards closed and the start of an ask
	closed bool           // no more asks
	asks   sync.WaitGroup // asks still running: close waits for them (each ends within AskWithin)
}

// newSentinels reaches each Sentinel with opts' TLS and its socket timeouts capped at
// AskWithin, without credentials or retries (the other Sentinels, then the next round, are
// the retry).
func newSentinels(master string, addrs []string, opts *redis.Options) *sentinels {
	capped := func(d time.Duration) time.Duration {
		if d <= 0 || d > AskWithin {
			return AskWithin
		}
		return d
	}
	s := &sentinels{master: master, addrs: addrs}
	for _, addr := range addrs {
		s.clients = append(s.clients, redis.NewSentinelClient(&redis.Options{
			Addr:                  addr,
			TLSConfig:             opts.TLSConfig,
			DialTimeout:           capped(opts.DialTimeout),
			ReadTimeout:           capped(opts.ReadTimeout),
			WriteTimeout:          capped(opts.WriteTimeout),
			MaxRetries:            -1,
			DialerRetries:         1,
			Protocol:              2,
			PoolSize:              2,
			ContextTimeoutEnabled: true,
		}))
	}
	return s
}

type askResult struct {
	answer primaryAnswer
	err    error
}

// discover asks every Sentinel at once and returns the primary's address: as soon as a
// majority named a usable one, else once all answered or AskWithin (or ctx) ended, the one of
// the highest config epoch among those named. *PrimaryNotFoundError when none named one.
func (s *sentinels) discover(ctx context.Context) (string, error) {
	round, cancel := context.WithTimeout(ctx, AskWithin)
	defer cancel()
	results := make(chan askResult, len(s.clients))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", redis.ErrClosed
	}
	for i, client := range s.clients {
		s.asks.Add(1)
		go func() {
			defer s.asks.Done()
			results <- s.ask(i, client)
		}()
	}
	s.mu.Unlock()
	majority := len(s.clients)/2 + 1
	var answers []primaryAnswer
	var problems []string
collect:
	for range s.clients {
		select {
		case r := <-results:
			if r.err != nil {
				problems = append(problems, r.err.Error())
				continue
			}
			if answers = append(answers, r.answer); len(answers) >= majority {
				break collect
			}
		case <-round.Done():
			if err := callerErr(ctx); err != nil {
				return "", fmt.Errorf("statefulroute: asking the Sentinels: %w", err)
			}
			problems = append(problems, fmt.Sprintf("the others did not answer within %s", AskWithin))
			break collect // the asks left end by themselves
		}
	}
	if len(answers) == 0 {
		return "", &PrimaryNotFoundError{Master: s.master, Problems: problems}
	}
	return latestPrimary(answers).addr, nil
}

// ask is what Sentinel i says, within its own AskWithin: an ask the round no longer waits for
// is not cancelled, it ends by itself and its answer is dropped (as in Python).
func (s *sentinels) ask(i int, client *redis.SentinelClient) askResult {
	ctx, cancel := context.WithTimeout(context.Background(), AskWithin)
	defer cancel()
	state, err := client.Master(ctx, s.master).Result()
	if err != nil {
		return askResult{err: fmt.Errorf("%s: %w", s.addrs[i], err)}
	}
	answer, err := readPrimary(state)
	if err != nil {
		return askResult{err: fmt.Errorf("%s: %w", s.addrs[i], err)}
	}
	return askResult{answer: answer}
}

// close waits for the asks still running, then closes the connections to every Sentinel.
func (s *sentinels) close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.asks.Wait()
	var errs []error
	for _, client := range s.clients {
		errs = append(errs, client.Close())
	}
	return errors.Join(errs...)
}
