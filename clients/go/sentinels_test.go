package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The choice among the Sentinels' answers, as Python's max() by config epoch: the highest
// epoch, the first of equals. Randomized; the seed is printed.
func TestLatestPrimaryIsTheHighestEpochFirstOfEquals(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 1000 {
		answers := make([]primaryAnswer, 1+rng.IntN(5))
		for i := range answers {
			answers[i] = primaryAnswer{addr: fmt.Sprintf("10.0.0.%d:6379", i), epoch: rng.Int64N(3)}
		}
		got := latestPrimary(answers)
		for i, a := range answers {
			if a.epoch > got.epoch || (a.epoch == got.epoch && a.addr != got.addr && i < indexOf(answers, got)) {
				t.Fatalf("latestPrimary(%v) = %v", answers, got)
			}
		}
	}
}

func indexOf(answers []primaryAnswer, a primaryAnswer) int {
	for i, each := range answers {
		if each == a {
			return i
		}
	}
	return -1
}

func TestReadPrimaryTakesOnlyAPrimaryThatIsUp(t *testing.T) {
	state := func(flags string) map[string]string {
		return map[string]string{"ip": "127.0.0.1", "port": "7000", "flags": flags, "config-epoch": "4"}
	}
	if got, err := readPrimary(state("master")); err != nil || got != (primaryAnswer{"127.0.0.1:7000", 4}) {
		t.Fatalf("master: %v %v", got, err)
	}
	for _, flags := range []string{"master,s_down", "master,o_down,s_down", "slave", ""} {
		if _, err := readPrimary(state(flags)); err == nil {
			t.Errorf("flags %q: usable", flags)
		}
	}
	if _, err := readPrimary(map[string]string{"flags": "master", "port": "x"}); err == nil {
		t.Error("no address: usable")
	}
	if got, err := readPrimary(map[string]string{"ip": "::1", "port": "1", "flags": "master"}); err != nil || got.addr != "[::1]:1" || got.epoch != 0 {
		t.Errorf("no epoch: %v %v", got, err)
	}
}

// No Sentinel answers (nothing listens on their ports, or one accepts and never answers): a
// call fails within its timeout, typed both as the store being unavailable and as no primary
// found, and no password is in the message.
func TestNoSentinelAnsweringIsATypedErrorWithoutThePassword(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts (the kernel's backlog), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	const password = "s3cret/pa@ss"
	rdb, err := Connect(fmt.Sprintf("redis+sentinel://:%s@%s,%s/mymaster/0",
		url.QueryEscape(password), closedPort(t), silent.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	// Two rounds of asking (a dial and its one retry) take 0.6 s; the rest is room for a loaded machine.
	client, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	start := time.Now()
	_, err = client.ComputeLinkedPod(context.Background(), "games", "u", "room")
	took := time.Since(start)
	var notFound *PrimaryNotFoundError
	if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, ErrPrimaryNotFound) || !errors.As(err, &notFound) {
		t.Fatalf("err = %v", err)
	}
	if took > 2500*time.Millisecond {
		t.Errorf("took %s, more than the call's timeout", took)
	}
	if len(notFound.Problems) != 2 || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v (%d problems)", err, len(notFound.Problems))
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A wrong password is StoreUnavailable (redis-py's AuthenticationError is a ConnectionError),
// not StoreError, and the message does not hold it.
func TestAWrongPasswordIsStoreUnavailable(t *testing.T) {
	admin, prefix := testRedis(t)
	ctx := context.Background()
	user := prefix + "-user"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">right-pa55", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(ctx, "ACL", "DELUSER", user)
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr, Username: user, Password: "Wr0ng-pa55"})
	defer rdb.Close()
	client, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, _, err = client.GetLinkedPodNotCache(ctx, "games", "u", "room")
	if !errors.Is(err, ErrStoreUnavailable) || strings.Contains(err.Error(), "Wr0ng") {
		t.Fatalf("err = %v", err)
	}
}
