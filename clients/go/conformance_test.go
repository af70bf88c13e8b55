package statefulroute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The conformance vectors of the repository's conformance/ folder (format: its README.md),
// played against a real Redis; tests/store/test_conformance.py plays the same in Python.

const vectorsDir = "../../conformance"

type text string // a JSON string, or {"repeat": s, "times": n}

func (t *text) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*t = text(s)
		return nil
	}
	var r struct {
		Repeat string `json:"repeat"`
		Times  int    `json:"times"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	*t = text(strings.Repeat(r.Repeat, r.Times))
	return nil
}

type podSpec struct {
	Index       int    `json:"index"`
	Ready       *bool  `json:"ready"`
	Terminating bool   `json:"terminating"`
	Routing     string `json:"routing"`
	Load        int    `json:"load"`
}

type step struct {
	Do        string    `json:"do"`
	Namespace *text     `json:"namespace"`
	Service   text      `json:"service"`
	UID       text      `json:"uid"`
	UIDs      []text    `json:"uids"`
	Pod       *int      `json:"pod"`
	Pods      []podSpec `json:"pods"`
	Policy    *struct {
		MaxLinksPerPod     int      `json:"max_links_per_pod"`
		LinkTTLSeconds     *float64 `json:"link_ttl_seconds"`
		RolloutWaitSeconds *float64 `json:"rollout_wait_seconds"`
	} `json:"policy"`
	Seconds     float64                    `json:"seconds"`      // sleep
	Value       string                     `json:"value"`        // raw
	Outdated    []int                      `json:"outdated"`     // phases
	Rebind      bool                       `json:"rebind"`       // evict
	HoldSeconds float64                    `json:"hold_seconds"` // evict
	Expect      map[string]json.RawMessage `json:"expect"`
}

type vector struct {
	Name      string `json:"name"`
	About     string `json:"about"`
	Namespace string `json:"namespace"`
	Steps     []step `json:"steps"`
}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectorsDir, "*.json"))
	if err != nil || len(files) == 0 {
		if _, repo := os.Stat("../../pyproject.toml"); repo == nil {
			t.Fatalf("no conformance vectors in %s", vectorsDir)
		}
		t.Skip("not inside the stateful-route repository")
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Run(v.Name, func(t *testing.T) { play(t, v) })
	}
}

var routing = map[string]int{"": routingReady, "Ready": routingReady, "DenyNewCall": routingDenyNewCall, "Shutdown": routingShutdown}

func play(t *testing.T, v vector) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	ns := v.Namespace
	if ns == "" {
		ns = "conf"
	}
	t.Cleanup(func() { deletePrefix(rdb, prefix) })
	var client *ClientDriver
	newClient := func() *ClientDriver {
		if client != nil {
			client.Close()
		}
		d, err := NewClientDriver(rdb, Options{Namespaces: []string{ns}, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	client = newClient()
	defer func() { client.Close() }()
	for i, s := range v.Steps {
		where := fmt.Sprintf("step %d (%s)", i+1, s.Do)
		service := string(s.Service)
		opNS := ns
		if s.Namespace != nil {
			opNS = string(*s.Namespace)
		}
		k := newRouteKeys(prefix, ns, service)
		switch s.Do {
		case "table":
			writeTable(t, rdb, k, s)
			client = newClient()
			continue
		case "persist":
			if _, _, err := serverDriver(t, rdb, prefix, ns, service, *s.Pod).SetLinkedPod(ctx, string(s.UID)); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			client = newClient()
			continue
		case "new_client":
			client = newClient()
			continue
		case "sleep":
			time.Sleep(time.Duration(s.Seconds * float64(time.Second)))
			continue
		case "raw":
			if err := rdb.Set(ctx, k.link(string(s.UID)), s.Value, 0).Err(); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			client = newClient()
			continue
		case "phases":
			args := []any{}
			for _, p := range s.Outdated {
				args = append(args, strconv.Itoa(p), ",1") // core.state.PodPhase(outdated=True).encode()
			}
			if err := testScriptPutPhases.Run(ctx, rdb, []string{k.phases, k.config}, args...).Err(); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			client = newClient()
			continue
		case "evict":
			removed, rebound := evictPod(t, rdb, k, *s.Pod, s.Rebind, s.HoldSeconds)
			var want struct{ Removed, Rebound int }
			raw, _ := json.Marshal(s.Expect)
			_ = json.Unmarshal(raw, &want)
			if removed != want.Removed || rebound != want.Rebound {
				t.Errorf("%s: removed %d, rebound %d; want %+v", where, removed, rebound, want)
			}
			client = newClient()
			continue
		case "hand_off":
			var got any
			moved, ok, err := serverDriver(t, rdb, prefix, ns, service, *s.Pod).HandOff(ctx, string(s.UID))
			if ok {
				got = moved
			}
			checkAnswer(t, where, s.Expect, got, err)
			client = newClient()
			continue
		case "state":
			checkState(t, where, rdb, k, s.Expect)
			continue
		}
		var got any
		var err error
		pod := func(p int, found bool, e error) {
			err = e
			if e == nil && found {
				got = p
			}
		}
		switch s.Do {
		case "compute_linked_pod":
			p, e := client.ComputeLinkedPod(ctx, opNS, string(s.UID), service)
			pod(p, true, e)
		case "get_linked_pod":
			pod(client.GetLinkedPod(ctx, opNS, string(s.UID), service))
		case "get_linked_pod_not_cache":
			pod(client.GetLinkedPodNotCache(ctx, opNS, string(s.UID), service))
		case "get_linked_pod_in_cache_or_if_persist":
			pod(client.GetLinkedPodInCacheOrIfPersist(ctx, opNS, string(s.UID), service))
		case "get_linked_in_cache":
			pod(client.GetLinkedInCache(ctx, opNS, string(s.UID), service))
		case "set_linked_pod_if_absent":
			p, e := client.SetLinkedPodIfAbsent(ctx, opNS, string(s.UID), service, *s.Pod)
			pod(p, true, e)
		case "set_cache":
			err = client.SetCache(ctx, opNS, string(s.UID), service, *s.Pod)
		case "cache_expired":
			err = client.CacheExpired(ctx, opNS, string(s.UID), service)
		case "batch_get_linked_pod":
			uids := make([]string, len(s.UIDs))
			for i, u := range s.UIDs {
				uids[i] = string(u)
			}
			var groups map[int][]string
			groups, err = client.BatchGetLinkedPod(ctx, opNS, uids, service)
			got = groups
		case "get_link_service":
			got, err = client.GetLinkService(ctx, opNS, string(s.UID))
		default:
			t.Fatalf("%s: unknown step", where)
		}
		checkAnswer(t, where, s.Expect, got, err)
	}
}

func checkAnswer(t *testing.T, where string, expect map[string]json.RawMessage, got any, err error) {
	t.Helper()
	if raw, ok := expect["error"]; ok {
		var kind string
		_ = json.Unmarshal(raw, &kind)
		var bad *InvalidInputError
		var none *NoAvailablePodError
		var pending *PodPendingError
		switch {
		case kind == "InvalidInput" && errors.As(err, &bad) && errors.Is(err, ErrInvalidInput):
			var field string
			_ = json.Unmarshal(expect["field"], &field)
			if bad.Field != field {
				t.Errorf("%s: InvalidInput names %q, want %q (%v)", where, bad.Field, field, err)
			}
		case kind == "NoAvailablePod" && errors.As(err, &none) && errors.Is(err, ErrNoAvailablePod):
			if raw, ok := expect["pod"]; ok {
				var p int
				_ = json.Unmarshal(raw, &p)
				if !none.HasPod || none.Pod != p {
					t.Errorf("%s: NoAvailablePod for pod %v, want %d", where, none, p)
				}
			} else if none.HasPod {
				t.Errorf("%s: NoAvailablePod names pod %d, want none", where, none.Pod)
			}
		case kind == "PodPending" && errors.As(err, &pending) && errors.Is(err, ErrNoAvailablePod):
		case kind == "StoreError" && errors.Is(err, ErrStore) && !errors.Is(err, ErrStoreUnavailable):
		default:
			t.Errorf("%s: want %s, got %v (answer %v)", where, kind, err, got)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	switch {
	case expect["pod"] != nil:
		var want *int
		_ = json.Unmarshal(expect["pod"], &want)
		if (want == nil) != (got == nil) || (want != nil && got != *want) {
			t.Errorf("%s: got pod %v, want %s", where, got, expect["pod"])
		}
	case expect["groups"] != nil:
		var want map[string][]string
		_ = json.Unmarshal(expect["groups"], &want)
		gotText := map[string][]string{}
		for pod, uids := range got.(map[int][]string) {
			gotText[strconv.Itoa(pod)] = uids
		}
		if !reflect.DeepEqual(gotText, want) {
			t.Errorf("%s: got %v, want %v", where, gotText, want)
		}
	case expect["services"] != nil:
		var want map[string]int
		_ = json.Unmarshal(expect["services"], &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", where, got, want)
		}
	}
}

// writeTable writes a route table as RouteTable.put_pods does (the service joins its
// namespace's set, then WRITE_TABLE replaces the table), and the policy as configure does.
func writeTable(t testing.TB, rdb *redis.Client, k routeKeys, s step) {
	t.Helper()
	writeTableOn(t, rdb, k, s, k.channel)
}

// writeTableOn is writeTable announcing the change on channel (another channel: a lost message).
func writeTableOn(t testing.TB, rdb *redis.Client, k routeKeys, s step, channel string) {
	t.Helper()
	ctx := context.Background()
	if err := rdb.SAdd(ctx, servicesKey(strings.Split(k.base, ":")[0], k.namespace), k.service).Err(); err != nil {
		t.Fatal(err)
	}
	args := []any{"replace", channel, tableChangedPrefix(k.service), k.podLinks, ""}
	for _, p := range s.Pods {
		ready := p.Ready == nil || *p.Ready
		state := fmt.Sprintf("%d,%d,%d,%d", b2i(ready), b2i(p.Terminating), routing[p.Routing], p.Load)
		args = append(args, strconv.Itoa(p.Index), state, "", "")
	}
	keys := []string{k.pods, k.reports, k.config, k.version, k.available, k.instances}
	if err := scriptWriteTable.Run(ctx, rdb, keys, args...).Err(); err != nil {
		t.Fatal(err)
	}
	if s.Policy != nil {
		ttl := ""
		if s.Policy.LinkTTLSeconds != nil {
			ttl = strconv.Itoa(int(*s.Policy.LinkTTLSeconds * 1000))
		}
		wait := ""
		if s.Policy.RolloutWaitSeconds != nil {
			wait = strconv.Itoa(int(*s.Policy.RolloutWaitSeconds * 1000))
		}
		if err := scriptConfigure.Run(ctx, rdb, k.route(), k.podLinks, s.Policy.MaxLinksPerPod, ttl, "", wait).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkState compares the stored links (value and kind: a temporary one has a TTL, a
// persistent one none), every pod's live link count and the best pod (the SNAPSHOT script).
func checkState(t *testing.T, where string, rdb *redis.Client, k routeKeys, expect map[string]json.RawMessage) {
	t.Helper()
	ctx := context.Background()
	if raw, ok := expect["links"]; ok {
		var links map[string]*struct {
			Pod        int   `json:"pod"`
			Persistent *bool `json:"persistent"`
		}
		_ = json.Unmarshal(raw, &links)
		for uid, want := range links {
			value, err := rdb.Get(ctx, k.link(uid)).Result()
			if want == nil {
				if err != redis.Nil {
					t.Errorf("%s: %s has link %q, want none", where, uid, value)
				}
				continue
			}
			pttl := rdb.PTTL(ctx, k.link(uid)).Val()
			pod, persistent, ok := decodeLink(value)
			if err != nil || !ok || pod != want.Pod || (want.Persistent != nil && persistent != *want.Persistent) ||
				persistent != (pttl < 0) {
				t.Errorf("%s: %s has link %q (ttl %v, %v), want %d persistent=%v", where, uid, value, pttl, err, want.Pod, want.Persistent)
			}
		}
	}
	keys := []string{k.pods, k.reports, k.config, k.version, k.available}
	reply, err := scriptSnapshot.Run(ctx, rdb, keys, k.podLinks).Result()
	if err != nil {
		t.Fatal(err)
	}
	view, err := decodeSnapshot(reply)
	if err != nil {
		t.Fatal(err)
	}
	if raw, ok := expect["pod_links"]; ok {
		var want map[string]int
		_ = json.Unmarshal(raw, &want)
		got := map[string]int{}
		for _, p := range view.pods {
			got[strconv.Itoa(p.index)] = p.links
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: pod links %v, want %v", where, got, want)
		}
	}
	if raw, ok := expect["best"]; ok {
		var want *int
		_ = json.Unmarshal(raw, &want)
		if (want == nil) != (view.best < 0) || (want != nil && *want != view.best) {
			t.Errorf("%s: best pod %d, want %s", where, view.best, raw)
		}
	}
}

func deletePrefix(rdb *redis.Client, prefix string) {
	ctx := context.Background()
	var keys []string
	for key := range rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator().Vals(ctx) {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

// serverDriver is the pod pod's ServerDriver, for the vectors' pod steps.
func serverDriver(t *testing.T, rdb *redis.Client, prefix, ns, service string, pod int) *ServerDriver {
	t.Helper()
	s, err := NewServerDriver(rdb, ns, service, pod, ServerOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The operator's scripts, for the vectors' setup steps (the operator is Python's alone).
var (
	testScriptEvict     = newScript("evict")
	testScriptPlaceMany = newScript("place_many")
	testScriptPutPhases = newScript("put_phases")
)

// evictPod evicts a pod as store/eviction.evict does: EVICT in batches (compare-and-delete,
// with hold: the users unlinked wait for an updated pod), with rebind PLACE_MANY of the users
// unlinked (never on the pod), then the e message. Returns (removed, rebound).
func evictPod(t *testing.T, rdb *redis.Client, k routeKeys, pod int, rebind bool, hold float64) (int, int) {
	t.Helper()
	ctx := context.Background()
	holdMs := 0
	if hold > 0 {
		holdMs = int(hold * 1000)
	}
	removed, rebound := 0, 0
	for {
		keys := append([]string{k.podLinks + strconv.Itoa(pod)}, k.route()...)
		reply, err := testScriptEvict.Run(ctx, rdb, keys, pod, k.links, batchSize, k.podLinks, holdMs, k.base+"w:").Slice()
		if err != nil {
			t.Fatal(err)
		}
		left, uids := reply[0].(int64), reply[1].([]any)
		removed += len(uids)
		if rebind && len(uids) > 0 {
			args := []any{k.podLinks, k.links, ms(DefaultLinkTTL), strconv.Itoa(pod)}
			args = append(args, uids...)
			placed, err := testScriptPlaceMany.Run(ctx, rdb, k.route(), args...).Slice()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range placed {
				if p != nil {
					rebound++
				}
			}
		}
		if left == 0 {
			break
		}
	}
	if err := rdb.Publish(ctx, k.channel, "e|"+k.service+"|"+strconv.Itoa(pod)).Err(); err != nil {
		t.Fatal(err)
	}
	return removed, rebound
}
