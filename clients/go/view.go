package statefulroute

import (
	"context"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Routing states, as the route table stores them (core/state.py RoutingState).
const (
	routingReady       = 0
	routingDenyNewCall = 1
	routingShutdown    = 2
)

// podState is one pod of a snapshot.
type podState struct {
	index                int
	ready, terminating   bool
	routing, load, links int
	available            bool
}

func (p podState) routable() bool {
	return p.ready && !p.terminating && p.routing != routingShutdown
}

// routeView is one route as the client sees it: a snapshot (the SNAPSHOT script), trusted until
// validUntil (MaxAge after the moment before the read was sent), and its routability, which a
// change message may have made newer than the rest (partial) until the snapshot is read again.
// A routeView is never modified once installed: a change installs a new one.
type routeView struct {
	pods       []podState // by index
	routable   map[int]bool
	available  map[int]bool
	best       int // -1: none
	version    int64
	born       int64 // when the table was first written (its config's 'born'; 0: no table)
	validUntil time.Time
	until      int64  // validUntil on the monotonic clock (mono), for the cache-hit path
	ticket     uint64 // when the mirror learnt it, in the order of its own reads and messages
	partial    bool
}

// exists reports whether the snapshot shows a route table: pods, or the mark of its first
// write (which a table of no pods has too; a deleted table has neither, its version survives).
func (v *routeView) exists() bool { return len(v.pods) > 0 || v.born != 0 }

// withRoutability is the view with the routability and version a change message announced.
func (v *routeView) withRoutability(routable map[int]bool, version int64, ticket uint64) *routeView {
	learnt := *v
	learnt.routable, learnt.version, learnt.ticket, learnt.partial = routable, version, ticket, true
	return &learnt
}

// view returns a trustworthy view of the route: the mirrored one while under MaxAge, else one
// read now (see routeMirror.view).
func (d *ClientDriver) view(ctx context.Context, k routeKeys, whole bool) (*routeView, error) {
	return d.mirror.view(ctx, k, whole)
}

// readSnapshots reads the routes' snapshots in one round trip (a pipeline of EVALSHA; the
// script is loaded first if Redis does not know it). errs[i] is route i's fault, untyped.
func readSnapshots(ctx context.Context, rdb redis.UniversalClient, routes []routeKeys) (views []*routeView, errs []error) {
	run := func() []*redis.Cmd {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(routes))
		for i, k := range routes {
			keys := []string{k.pods, k.reports, k.config, k.version, k.available}
			cmds[i] = scriptSnapshot.EvalSha(ctx, pipe, keys, k.podLinks)
		}
		_, _ = pipe.Exec(ctx) // each command keeps its own error
		return cmds
	}
	cmds := run()
	for _, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			if err := scriptSnapshot.Load(ctx, rdb).Err(); err != nil {
				errs = make([]error, len(routes))
				for i := range errs {
					errs[i] = err
				}
				return make([]*routeView, len(routes)), errs
			}
			cmds = run()
			break
		}
	}
	views, errs = make([]*routeView, len(routes)), make([]error, len(routes))
	for i, cmd := range cmds {
		if errs[i] = cmd.Err(); errs[i] == nil {
			views[i], errs[i] = decodeSnapshot(cmd.Val())
		}
	}
	return views, errs
}

// snapshotHead is the number of fields before the pods in the SNAPSHOT script's reply.
const snapshotHead = 4

func decodeSnapshot(reply any) (*routeView, error) {
	items, ok := reply.([]any)
	// The head is best, version, born, exact (whether the counts are exact: the gateway uses none).
	if !ok || len(items) < snapshotHead || (len(items)-snapshotHead)%7 != 0 {
		return nil, corrupt("route view", "unexpected snapshot reply %T", reply)
	}
	ints := make([]int64, len(items))
	for i, item := range items {
		n, ok := item.(int64)
		if !ok {
			return nil, corrupt("route view", "unexpected snapshot field %T", item)
		}
		ints[i] = n
	}
	view := &routeView{best: int(ints[0]), version: ints[1], born: ints[2], routable: map[int]bool{}, available: map[int]bool{}}
	for i := snapshotHead; i < len(ints); i += 7 {
		p := podState{
			index: int(ints[i]), ready: ints[i+1] == 1, terminating: ints[i+2] == 1,
			routing: int(ints[i+3]), load: int(ints[i+4]), links: int(ints[i+5]), available: ints[i+6] == 1,
		}
		view.pods = append(view.pods, p)
		if p.routable() {
			view.routable[p.index] = true
		}
		if p.available {
			view.available[p.index] = true
		}
	}
	if view.best < 0 {
		view.best = -1
	}
	return view, nil
}

func (v *routeView) routableSorted() []int {
	out := make([]int, 0, len(v.routable))
	for pod := range v.routable {
		out = append(out, pod)
	}
	sort.Ints(out)
	return out
}
