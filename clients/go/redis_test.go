package statefulroute

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
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
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return func() {}
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return func() {}
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	dir, _ := os.MkdirTemp("", "sr-go-redis-")
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return func() {}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		if client.Ping(context.Background()).Err() == nil {
			testRedisAddr = addr
			break
		}
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
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
