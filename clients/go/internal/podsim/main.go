// Command podsim is Go pods driven by tests/e2e/test_mixed_pods.py: one ServerDriver per pod
// ordinal of one route, each command read on stdin run at once (concurrently with the others),
// one answer line per command, in the order they finish:
//
//	<id> <pod> load <n>                       -> <id> ok
//	<id> <pod> routing <Ready|DenyNewCall|Shutdown>  -> <id> ok
//	<id> <pod> persist <uid>                  -> <id> ok <previous pod or ->
//	<id> <pod> try <uid>                      -> <id> ok <1|0> <this pod or the holder>
//	<id> <pod> remove <uid> <keep ms>         -> <id> ok <1|0>
//	<id> <pod> remove_id <uid> <pod> <keep ms> -> <id> ok <1|0>
//	<id> <pod> handoff <uid>                  -> <id> ok <new pod or ->
//	<id> <pod> handoff_all <within ms> <fail> -> <id> ok <moved> <failed> <left> <waiting>
//	                                             (Before fails for uids ending in <fail>; - none)
//	<id> <pod> linked                         -> <id> ok <users linked to the pod>
//
// An error is "<id> !<Kind> <message>" (NoAvailablePod, StoreUnavailable, InvalidInput,
// Unexpected). It prints "ready" first, and exits at the end of its input once every command
// has answered.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	statefulroute "github.com/stateful-route/stateful-route/clients/go"
	"github.com/stateful-route/stateful-route/clients/go/internal/harness"
)

func main() {
	service := flag.String("service", "room", "service")
	harness.Main("podsim", func(ctx context.Context, env harness.Env) error { return run(ctx, env, *service) })
}

type sim struct {
	servers *harness.Servers
	service string

	mu  sync.Mutex
	out *bufio.Writer
}

func run(ctx context.Context, env harness.Env, service string) error {
	s := &sim{service: service, out: bufio.NewWriter(os.Stdout), servers: env.Servers(statefulroute.ServerOptions{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})}
	s.answer("ready")
	in := bufio.NewScanner(os.Stdin)
	var wg sync.WaitGroup
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) < 3 {
			continue
		}
		wg.Go(func() { s.answer(fields[0] + " " + s.do(ctx, fields[1], fields[2], fields[3:])) })
	}
	wg.Wait()
	return in.Err()
}

func (s *sim) answer(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.out, line)
	_ = s.out.Flush()
}

var states = map[string]statefulroute.RoutingState{
	"Ready": statefulroute.RoutingReady, "DenyNewCall": statefulroute.RoutingDenyNewCall,
	"Shutdown": statefulroute.RoutingShutdown,
}

func (s *sim) do(ctx context.Context, podArg, op string, args []string) string {
	pod, err := strconv.Atoi(podArg)
	if err != nil {
		return "!InvalidInput pod"
	}
	d, err := s.servers.Get(s.service, pod)
	if err != nil {
		return fail(err)
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	num := func(i int) int { n, _ := strconv.Atoi(arg(i)); return n }
	switch op {
	case "load":
		err = d.SetLoadState(ctx, num(0))
		return result(err, "ok")
	case "routing":
		state, ok := states[arg(0)]
		if !ok {
			return "!InvalidInput state"
		}
		return result(d.SetRoutingState(ctx, state), "ok")
	case "persist":
		prev, found, err := d.SetLinkedPod(ctx, arg(0))
		return result(err, "ok "+podOrDash(prev, found))
	case "try":
		stored, holder, err := d.TrySetLinkedPod(ctx, arg(0))
		return result(err, fmt.Sprintf("ok %d %d", b2i(stored), holder))
	case "remove":
		removed, err := d.RemoveLinkedPod(ctx, arg(0), time.Duration(num(1))*time.Millisecond)
		return result(err, fmt.Sprintf("ok %d", b2i(removed)))
	case "remove_id":
		removed, err := d.RemoveLinkedPodWithID(ctx, arg(0), num(1), time.Duration(num(2))*time.Millisecond)
		return result(err, fmt.Sprintf("ok %d", b2i(removed)))
	case "handoff":
		to, moved, err := d.HandOff(ctx, arg(0))
		return result(err, "ok "+podOrDash(to, moved))
	case "handoff_all":
		suffix := arg(1)
		r, err := d.HandOffAll(ctx, statefulroute.HandOffOptions{
			Within:     time.Duration(num(0)) * time.Millisecond,
			RetryEvery: 50 * time.Millisecond,
			Before: func(ctx context.Context, uid string) error {
				if suffix != "-" && strings.HasSuffix(uid, suffix) {
					return errors.New("cannot save")
				}
				return nil
			},
		})
		return result(err, fmt.Sprintf("ok %d %d %d %d", r.Moved, r.Failed, r.Left, r.Waiting))
	case "linked":
		n := 0
		for _, err := range d.LinkedUsers(ctx) {
			if err != nil {
				return fail(err)
			}
			n++
		}
		return fmt.Sprintf("ok %d", n)
	}
	return "!InvalidInput op"
}

func result(err error, ok string) string {
	if err != nil {
		return fail(err)
	}
	return ok
}

func fail(err error) string {
	kind := harness.Name(err, harness.NoAvailablePod, harness.StoreUnavailable, harness.InvalidInput)
	return "!" + kind + " " + harness.Field(err)
}

func podOrDash(pod int, found bool) string {
	if !found {
		return "-"
	}
	return strconv.Itoa(pod)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
