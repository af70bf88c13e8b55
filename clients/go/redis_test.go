package statefulroute

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A private redis-server for the tests, on a free loopback port, removed after; the tests that
// need it are skipped when redis-server is not on PATH.
var (
	testRedisAddr string
	prefixes      atomic.Int64
)

func TestMain(m *testing.M) {
	stop := startRedis()
	code := m.Run()
	stop()
	os.Exit(code)
}

func startRedis() func() {
	addr, _, stop, err := runRedis()
	if err != nil {
		return func() {}
	}
	testRedisAddr = addr
	return stop
}

// connectedRedis is testRedis, connected as Connect connects: go-redis's socket deadlines
// follow the contexts'.
func connectedRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	_, prefix := testRedis(t)
	client, err := Connect("redis://" + testRedisAddr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client.(*redis.Client), prefix
}

// runRedis starts a redis-server on a free loopback port and waits until it answers; stop
// kills it and removes its directory.
func runRedis() (addr string, proc *os.Process, stop func(), err error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	dir, err := os.MkdirTemp("", "sr-go-redis-")
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, nil, err
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if client.Ping(context.Background()).Err() == nil {
			return addr, cmd.Process, stop, nil
		}
	}
	stop()
	return "", nil, nil, fmt.Errorf("redis-server on %s did not answer within 10 s", addr)
}

// frozenRedis is a redis-server of the test's own, connected as Connect connects (the
// go-redis socket deadlines follow the contexts'), and freeze, which stops the server
// (SIGSTOP: connections stay open, nothing answers) until thaw or the test's end.
func frozenRedis(t *testing.T) (rdb *redis.Client, freeze, thaw func()) {
	t.Helper()
	if testRedisAddr == "" {
		t.Skip("redis-server is not on PATH")
	}
	addr, proc, stop, err := runRedis()
	if err != nil {
		t.Fatal(err)
	}
	signal := func(sig syscall.Signal) func() {
		return func() {
			if err := proc.Signal(sig); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	t.Cleanup(signal(syscall.SIGCONT)) // cleanups run last-in first-out: before stop
	client, err := Connect("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client.(*redis.Client), signal(syscall.SIGSTOP), signal(syscall.SIGCONT)
}

// testRedis is a client of the private server and a key prefix no other test uses.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	if testRedisAddr == "" {
		t.Skip("redis-server is not on PATH")
	}
	client := redis.NewClient(&redis.Options{Addr: testRedisAddr})
	t.Cleanup(func() { client.Close() })
	return client, fmt.Sprintf("srgo%d", prefixes.Add(1))
}
