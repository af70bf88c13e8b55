package statefulroute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// errorReply is an error reply of Redis, as go-redis returns one.
type errorReply string

func (e errorReply) Error() string { return string(e) }
func (errorReply) RedisError()     {}

func TestLayoutTooNewIsTypedAndMatchesItsSentinels(t *testing.T) {
	err := fault(context.Background(), "place",
		errorReply("LAYOUT_TOO_NEW route layout 99, this release knows 2 script: 1a2b, on @user_script:12."))
	var tooNew *LayoutTooNewError
	if !errors.As(err, &tooNew) || tooNew.Found != 99 || tooNew.Known != 2 || tooNew.Op != "place" {
		t.Fatalf("got %#v", err)
	}
	if !errors.Is(err, ErrLayoutTooNew) || !errors.Is(err, ErrStore) || errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("sentinels: %v", err)
	}
	if !strings.Contains(err.Error(), "layout is 99, newer than layout 2") {
		t.Errorf("message: %v", err)
	}
	if other := fault(context.Background(), "place", errorReply("ERR something else")); errors.Is(other, ErrLayoutTooNew) {
		t.Errorf("another reply: %v", other)
	}
}

// The Go constant, the Lua scripts and Python's core.constants.LAYOUT name the same layout.
func TestLayoutIsTheScriptsLayout(t *testing.T) {
	want := fmt.Sprintf("local LAYOUT = %d\n", Layout)
	for name := range ScriptSHA1s() {
		if !strings.Contains(scriptSource(name), want) {
			t.Errorf("%s.lua does not say %q", name, strings.TrimSpace(want))
		}
	}
	if data, err := os.ReadFile("../../operator/stateful_route/core/constants.py"); err == nil &&
		!strings.Contains(string(data), fmt.Sprintf("\nLAYOUT = %d\n", Layout)) {
		t.Errorf("core/constants.py names another layout than %d", Layout)
	}
}

// keysUnder is every key under prefix with its type, serialized value and remaining TTL class:
// enough to tell that nothing was written.
func keysUnder(t *testing.T, rdb *redis.Client, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for key := range rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator().Vals(ctx) {
		dump, err := rdb.Dump(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[key] = fmt.Sprintf("%s %q ttl=%v", rdb.Type(ctx, key).Val(), dump, rdb.PTTL(ctx, key).Val() > 0)
	}
	return out
}

// A route whose config names a newer layout (99): every operation that reads Redis returns
// *LayoutTooNewError naming both layouts, and nothing under the prefix changes.
func TestARouteOfANewerLayoutIsRefusedAndLeftUntouched(t *testing.T) {
	rdb, prefix := testRedis(t)
	defer deletePrefix(rdb, prefix)
	ctx := context.Background()
	k := newRouteKeys(prefix, "games", "room")
	writeTable(t, rdb, k, step{Pods: []podSpec{{Index: 0}, {Index: 1}}})
	if err := rdb.Set(ctx, k.link("u0"), "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, k.config, "layout", 99).Err(); err != nil {
		t.Fatal(err)
	}
	before := keysUnder(t, rdb, prefix)
	d, err := NewClientDriver(rdb, Options{Namespaces: []string{"games"}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	drop := func(_ any, err error) error { return err }
	drop3 := func(_ int, _ bool, err error) error { return err }
	for name, call := range map[string]func() error{
		"ComputeLinkedPod":               func() error { return drop(d.ComputeLinkedPod(ctx, "games", "new-user", "room")) },
		"GetLinkedPod":                   func() error { return drop3(d.GetLinkedPod(ctx, "games", "u0", "room")) },
		"GetLinkedPodNotCache":           func() error { return drop3(d.GetLinkedPodNotCache(ctx, "games", "u0", "room")) },
		"GetLinkedPodInCacheOrIfPersist": func() error { return drop3(d.GetLinkedPodInCacheOrIfPersist(ctx, "games", "u0", "room")) },
		"GetLinkService":                 func() error { return drop(d.GetLinkService(ctx, "games", "u0")) },
		"BatchGetLinkedPod":              func() error { return drop(d.BatchGetLinkedPod(ctx, "games", []string{"u0", "x"}, "room")) },
		"SetLinkedPodIfAbsent":           func() error { return drop(d.SetLinkedPodIfAbsent(ctx, "games", "new-user", "room", 0)) },
		"IsPodRoutable":                  func() error { return drop(d.IsPodRoutable(ctx, "games", "room", 0)) },
		"IsPodAvailable":                 func() error { return drop(d.IsPodAvailable(ctx, "games", "room", 0)) },
		"RoutablePods":                   func() error { return drop(d.RoutablePods(ctx, "games", "room")) },
		"BestPod":                        func() error { return drop3(d.BestPod(ctx, "games", "room")) },
	} {
		err := call()
		var tooNew *LayoutTooNewError
		if !errors.As(err, &tooNew) || tooNew.Found != 99 || tooNew.Known != Layout || !errors.Is(err, ErrLayoutTooNew) {
			t.Errorf("%s: got %v, want LayoutTooNew 99/%d", name, err, Layout)
		}
	}
	if after := keysUnder(t, rdb, prefix); !reflect.DeepEqual(after, before) {
		t.Errorf("keys changed:\nbefore %v\nafter  %v", before, after)
	}
}
