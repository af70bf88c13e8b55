package statefulroute

import (
	"context"
	"sort"
	"sync"
	"time"
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

// routeView is one route's table read at one instant (the SNAPSHOT script), trusted until
// validUntil: MaxAge after the moment before the read was sent.
type routeView struct {
	pods       []podState // by index
	routable   map[int]bool
	available  map[int]bool
	best       int // -1: none
	version    int64
	validUntil time.Time
}

// views keeps the route views this client has used. Without the change channel (not yet in
// this client) a view is simply read again once MaxAge has passed.
type views struct {
	mu     sync.RWMutex
	byName map[[2]string]*routeView
}

func (v *views) fresh(ns, service string, now time.Time) *routeView {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if view := v.byName[[2]string{ns, service}]; view != nil && view.validUntil.After(now) {
		return view
	}
	return nil
}

func (v *views) store(ns, service string, view *routeView) {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := [2]string{ns, service}
	if old := v.byName[key]; old == nil || !old.validUntil.After(view.validUntil) {
		v.byName[key] = view
	}
}

// view returns a fresh view of the route, reading it if the one held is older than MaxAge.
func (d *ClientDriver) view(ctx context.Context, k routeKeys) (*routeView, error) {
	if view := d.views.fresh(k.namespace, k.service, time.Now()); view != nil {
		return view, nil
	}
	sent := time.Now()
	reply, err := within(ctx, d.opts.Timeout, "route view", func(ctx context.Context) (any, error) {
		keys := []string{k.pods, k.reports, k.config, k.version, k.available}
		return scriptSnapshot.Run(ctx, d.rdb, keys, k.podLinks).Result()
	})
	if err != nil {
		return nil, err
	}
	view, err := decodeSnapshot(reply)
	if err != nil {
		return nil, err
	}
	view.validUntil = sent.Add(d.opts.MaxAge)
	d.views.store(k.namespace, k.service, view)
	return view, nil
}

func decodeSnapshot(reply any) (*routeView, error) {
	items, ok := reply.([]any)
	if !ok || len(items) < 3 || (len(items)-3)%7 != 0 {
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
	view := &routeView{best: int(ints[0]), version: ints[1], routable: map[int]bool{}, available: map[int]bool{}}
	for i := 3; i < len(ints); i += 7 {
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
