// Command replay plays calls of the Go client read on stdin, one JSON object a line, and
// prints one JSON answer a line, in order; the tests of tests/e2e/test_go_*.py play the same
// calls through the Python client (tests/go_replay.py) and compare, against Redis Cluster,
// Sentinel, TLS and AUTH deployments. A call:
//
//	{"op": "compute_linked_pod", "uid": "u", "service": "room"}   ClientDriver operations by
//	                                                               their Python names
//	{"op": "server.set_load_state", "service": "room", "pod": 2, "load": 5}   a ServerDriver's
//	{"op": "primary"}                                             the Sentinels' primary now
//	{"op": "sleep", "seconds": 0.1}                               a pause
//
// An answer: {"value": ..., "start": s, "end": s} or {"error": Kind, "message": ..., "start",
// "end"}; Kind is InvalidInput, NoAvailablePod, PodPending, StoreUnavailable, StoreError or
// Unexpected; start and end are Unix seconds. It prints {"ready": true, "subscribed": bool}
// first (subscribed: the change channels were followed within the timeout) and exits at the
// end of its input.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	statefulroute "github.com/stateful-route/stateful-route/clients/go"
	"github.com/stateful-route/stateful-route/clients/go/internal/harness"
)

type call struct {
	Op      string   `json:"op"`
	UID     string   `json:"uid"`
	UIDs    []string `json:"uids"`
	Service string   `json:"service"`
	Pod     int      `json:"pod"`
	Index   int      `json:"index"`
	Load    int      `json:"load"`
	State   string   `json:"state"`
	Seconds float64  `json:"seconds"`
}

type answer struct {
	Value   any     `json:"value"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Start   float64 `json:"start"`
	End     float64 `json:"end"`
}

func main() {
	timeout := flag.Duration("timeout", time.Second, "timeout of each call")
	harness.Main("replay", func(ctx context.Context, env harness.Env) error { return run(ctx, env, *timeout) })
}

type player struct {
	env     harness.Env
	client  *statefulroute.ClientDriver
	timeout time.Duration
	servers *harness.Servers
}

func run(ctx context.Context, env harness.Env, timeout time.Duration) error {
	client, err := env.NewClientDriver(timeout)
	if err != nil {
		return err
	}
	defer client.Close()
	p := &player{env: env, client: client, timeout: timeout,
		servers: env.Servers(statefulroute.ServerOptions{Timeout: timeout})}
	out := json.NewEncoder(os.Stdout)
	waited, cancel := context.WithTimeout(ctx, timeout)
	subscribed := client.Subscribed(waited) == nil
	cancel()
	if err := out.Encode(map[string]bool{"ready": true, "subscribed": subscribed}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var c call
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			return err
		}
		start := harness.Now()
		value, err := p.play(ctx, c)
		a := answer{Value: value, Start: start, End: harness.Now()}
		if err != nil {
			a.Value, a.Error, a.Message = nil, harness.Name(err, harness.Kinds...), err.Error()
		}
		if err := out.Encode(a); err != nil {
			return err
		}
	}
	return in.Err()
}

// found is a pod, or nil when there is none (Python's None).
func found(pod int, ok bool, err error) (any, error) {
	if err != nil || !ok {
		return nil, err
	}
	return pod, nil
}

func (p *player) play(ctx context.Context, c call) (any, error) {
	d, ns := p.client, p.env.Namespace
	switch c.Op {
	case "compute_linked_pod":
		return d.ComputeLinkedPod(ctx, ns, c.UID, c.Service)
	case "get_linked_pod":
		return found(d.GetLinkedPod(ctx, ns, c.UID, c.Service))
	case "get_linked_pod_not_cache":
		return found(d.GetLinkedPodNotCache(ctx, ns, c.UID, c.Service))
	case "get_linked_pod_in_cache_or_if_persist":
		return found(d.GetLinkedPodInCacheOrIfPersist(ctx, ns, c.UID, c.Service))
	case "get_linked_in_cache":
		return found(d.GetLinkedInCache(ctx, ns, c.UID, c.Service))
	case "get_link_service":
		services, err := d.GetLinkService(ctx, ns, c.UID)
		if services == nil && err == nil {
			services = map[string]int{}
		}
		return services, err
	case "batch_get_linked_pod":
		grouped, err := d.BatchGetLinkedPod(ctx, ns, c.UIDs, c.Service)
		for _, uids := range grouped {
			slices.Sort(uids)
		}
		return grouped, err
	case "set_linked_pod_if_absent":
		return d.SetLinkedPodIfAbsent(ctx, ns, c.UID, c.Service, c.Pod)
	case "set_cache":
		return nil, d.SetCache(ctx, ns, c.UID, c.Service, c.Pod)
	case "cache_expired":
		return nil, d.CacheExpired(ctx, ns, c.UID, c.Service)
	case "is_pod_routable":
		return d.IsPodRoutable(ctx, ns, c.Service, c.Index)
	case "is_pod_available":
		return d.IsPodAvailable(ctx, ns, c.Service, c.Index)
	case "routable_pods":
		pods, err := d.RoutablePods(ctx, ns, c.Service)
		if pods == nil && err == nil {
			pods = []int{}
		}
		return pods, err
	case "best_pod":
		return found(d.BestPod(ctx, ns, c.Service))
	case "primary":
		return p.primary(ctx)
	case "sleep":
		time.Sleep(time.Duration(c.Seconds * float64(time.Second)))
		return nil, nil
	}
	return p.playServer(ctx, c)
}

func (p *player) playServer(ctx context.Context, c call) (any, error) {
	s, err := p.servers.Get(c.Service, c.Pod)
	if err != nil {
		return nil, err
	}
	switch c.Op {
	case "server.set_load_state":
		return nil, s.SetLoadState(ctx, c.Load)
	case "server.set_routing_state":
		states := map[string]statefulroute.RoutingState{"READY": statefulroute.RoutingReady,
			"DENY_NEW_CALL": statefulroute.RoutingDenyNewCall, "SHUTDOWN": statefulroute.RoutingShutdown}
		state, ok := states[c.State]
		if !ok {
			return nil, fmt.Errorf("unknown state %q", c.State)
		}
		return nil, s.SetRoutingState(ctx, state)
	case "server.set_linked_pod":
		return found(s.SetLinkedPod(ctx, c.UID))
	case "server.remove_linked_pod":
		return s.RemoveLinkedPod(ctx, c.UID, 0)
	}
	return nil, fmt.Errorf("unknown op %q", c.Op)
}

// primary is the address the Sentinels name now, once the client reached it.
func (p *player) primary(ctx context.Context) (any, error) {
	client, ok := p.env.Redis.(*statefulroute.PrimaryClient)
	if !ok {
		return nil, errors.New("not a Sentinel URL")
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, err
	}
	return client.Primary(), nil
}
